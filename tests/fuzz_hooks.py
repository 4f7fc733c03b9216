"""schemathesis hooks for tests/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

Every request signs in as the test's operator (PICAM_FUZZ_USER and _PASSWORD)
with HTTP Basic, except DELETE /api/v1/tokens/current: it takes a bearer token
only and revokes the one it is sent with, so each of its requests gets a token
of its own, fresh from POST /api/v1/tokens. A state-changing request says
Content-Type: application/json even with no body, as a Basic client must
(docs/security.md).

Seeds: ``before_call`` puts one of ``SEEDS`` (inputs that once made 500s or
killed threads: issue 16) into every ``SEED_EVERY``-th body that has a field of
that name. schemathesis validates the case again after the hook, so a seeded
case counts as negative and must be refused with a 4xx, like any other.
"""
import base64
import copy
import itertools
import os

import requests
import schemathesis

# The WHEP offer's body is SDP text (POST /api/v1/stream/whep): sent as text is.
schemathesis.serializer.alias("application/sdp", "text/plain")

TOKEN_PATH = "/api/v1/tokens/current"
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
SEED_EVERY = 3
# Field name -> hostile values: the calendar's edge with offsets, far futures,
# durations too small to wait on, integers too big for a float, deep nesting.
SEEDS = {
    "start_at": ["9999-12-31T23:59:59Z", "9999-12-31T23:59:59-23:59"],
    "end_at": ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"],
    "duration_s": [1e-300, 10**400],
    "interval_s": [1e-300, 10**400],
    "frames": [10**400],
    "width": [10**400, -(10**400)],
    "quality": [10**300],
    "on_time": [1e-9],
    "off_time": [1e-300],
    "fade_in_time": [1e-9],
    "controls": [{"Brightness": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}],
}
ABSENT_SEEDED = {("POST", "/api/v1/timelapses"): ("start_at", "end_at", "duration_s")}
_seeds = {name: itertools.cycle(values) for name, values in SEEDS.items()}
_bodies = itertools.count()


def _has_body(case) -> bool:
    return case.body is not None and type(case.body).__name__ != "NotSet"


def _fields(body: dict) -> list[tuple[dict, str]]:
    """Every (object, field name) in ``body``, nested objects too, that has seeds."""
    found = []
    for name, value in body.items():
        if name in _seeds:
            found.append((body, name))
        elif isinstance(value, dict):
            found += _fields(value)
    return found


def _seed(body: dict, turn: int, operation: tuple[str, str]) -> bool:
    """Put a seed into one of ``body``'s fields, a different one each turn.

    The fuzzer seldom sends the time fields, so they are seeded where absent too.
    """
    fields = _fields(body) + [(body, name) for name in ABSENT_SEEDED.get(operation, ())
                              if name not in body]
    if fields:
        container, name = fields[turn % len(fields)]
        container[name] = next(_seeds[name])
    return bool(fields)


@schemathesis.hook
def before_call(context, case, kwargs):
    # Not the examples phase: it takes a documented example as valid whatever is sent.
    if case.meta is None or case.meta.phase.name == "examples":
        return
    turn = next(_bodies)
    if isinstance(case.body, dict) and turn % SEED_EVERY == 0:
        body = copy.deepcopy(case.body)
        if _seed(body, turn // SEED_EVERY, (case.method.upper(), case.path)):
            case.body = body  # assigned, so that schemathesis validates the case again


def _credentials() -> tuple[str, str]:
    return os.environ["PICAM_FUZZ_USER"], os.environ["PICAM_FUZZ_PASSWORD"]


def _set_authorization(case, value: str) -> None:
    case.headers = {**(case.headers or {}), "Authorization": value}


@schemathesis.auth().skip_for(path=TOKEN_PATH)
class OperatorBasic:
    def get(self, case, context):
        return base64.b64encode(":".join(_credentials()).encode()).decode()

    def set(self, case, data, context):
        _set_authorization(case, f"Basic {data}")
        if case.method.upper() in MUTATING and not _has_body(case):
            case.headers = {**case.headers, "Content-Type": "application/json"}


@schemathesis.auth(refresh_interval=None).apply_to(path=TOKEN_PATH)
class FreshToken:
    def get(self, case, context):
        response = requests.post(os.environ["PICAM_FUZZ_URL"] + "/api/v1/tokens",
                                 auth=_credentials(), json={}, timeout=10)
        response.raise_for_status()
        return response.json()["token"]

    def set(self, case, data, context):
        _set_authorization(case, f"Bearer {data}")
