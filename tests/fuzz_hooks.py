"""schemathesis hooks for tests/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

Every request signs in as the test's operator (PICAM_FUZZ_USER and _PASSWORD)
with HTTP Basic, except DELETE /api/v1/tokens/current: it takes a bearer token
only and revokes the one it is sent with, so each of its requests gets a token
of its own, fresh from POST /api/v1/tokens.
"""
import base64
import os

import requests
import schemathesis

TOKEN_PATH = "/api/v1/tokens/current"


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


@schemathesis.auth(refresh_interval=None).apply_to(path=TOKEN_PATH)
class FreshToken:
    def get(self, case, context):
        response = requests.post(os.environ["PICAM_FUZZ_URL"] + "/api/v1/tokens",
                                 auth=_credentials(), timeout=10)
        response.raise_for_status()
        return response.json()["token"]

    def set(self, case, data, context):
        _set_authorization(case, f"Bearer {data}")
