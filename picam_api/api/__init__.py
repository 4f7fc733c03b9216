"""The HTTP API, under /api/v1. Views are thin: services hold the logic."""
from apiflask import APIBlueprint

bp = APIBlueprint("api", __name__, url_prefix="/api/v1", tag="api")
# "/" itself, outside the API prefix: mjpg-streamer's ?action= aliases.
root = APIBlueprint("root", __name__)

from . import camera, events, gpio, home, index, photos, stream, system, timelapses, tokens, videos, webhooks  # noqa: E402,F401  (they register the routes)
