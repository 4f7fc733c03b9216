"""The HTTP API, under /api/v1. Views are thin: services hold the logic."""
from apiflask import APIBlueprint

bp = APIBlueprint("api", __name__, url_prefix="/api/v1", tag="api")

from . import camera, photos, system, tokens  # noqa: E402,F401  (they register routes on bp)
