"""GPIO devices named in the config: gpiozero devices on the app's own pin factory."""
from .service import GpioService

__all__ = ["GpioService"]
