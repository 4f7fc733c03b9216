"""picam-api: a REST service that owns a Raspberry Pi's camera and GPIO."""

__version__ = "0.1.0"


def create_app(config=None):
    """Build the Flask app; see ``picam_api.app.create_app``."""
    from .app import create_app as _create_app
    return _create_app(config)
