"""GPIO devices named in the config: live state, and actions on outputs."""
from __future__ import annotations

from ..resources import gpio_device as device_body
from . import bp
from .common import errors, operator, services, viewer
from .schemas import GpioChange, GpioDevice, GpioPage


@bp.get("/gpio")
@viewer
@bp.output(GpioPage)
@bp.doc(summary="Every configured GPIO device with its live state", responses=errors())
def list_gpio():
    return {"items": [device_body(d) for d in services().gpio.devices.values()], "next": None}


@bp.get("/gpio/<name>")
@viewer
@bp.output(GpioDevice)
@bp.doc(summary="One GPIO device with its live state", responses=errors(404))
def get_gpio(name: str):
    return device_body(services().gpio.get(name))


@bp.patch("/gpio/<name>")
@operator
@bp.input(GpioChange, arg_name="change", example={"value": 1})
@bp.output(GpioDevice)
@bp.doc(summary="Set, toggle, blink or pulse an output device",
        description="The body holds exactly one action. A blink or pulse runs in the "
                    "background until the next change; inputs answer 409.",
        responses=errors(400, 403, 404, 409, 413, 415, 422))
def patch_gpio(name: str, change: dict):
    return device_body(services().gpio.apply(name, change))
