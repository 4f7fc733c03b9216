"""Bearer tokens: trade Basic credentials for a token, revoke it."""
from __future__ import annotations

from flask import request

from ..auth import basic, bearer
from . import bp
from .common import errors, services
from .schemas import RateLimitHeaders, Token


@bp.post("/tokens")
@bp.auth_required(basic)
@bp.output(Token, status_code=201, headers=RateLimitHeaders)
@bp.doc(summary="Trade Basic credentials for a bearer token",
        description="A user gets at most `auth.tokens_per_minute` new tokens a minute; the "
                    "RateLimit headers say how many are left, and a 429 says when to retry.",
        responses=errors())
def create_token():
    user = basic.current_user
    token, expires_at, quota = services().accounts.issue_token(user)
    return ({"token": token, "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
             "user": user.name, "role": user.role}, 201, quota.headers())


@bp.delete("/tokens/current")
@bp.auth_required(bearer)
@bp.output({}, status_code=204)
@bp.doc(summary="Revoke the bearer token used for this request", responses=errors())
def revoke_token():
    services().accounts.revoke_token(request.authorization.token)
    return ""
