"""Bearer tokens: trade Basic credentials for a token, revoke it."""
from __future__ import annotations

from flask import request

from ..auth import basic, bearer
from . import bp
from .common import errors, services
from .schemas import Token


@bp.post("/tokens")
@bp.auth_required(basic)
@bp.output(Token, status_code=201)
@bp.doc(summary="Trade Basic credentials for a bearer token", responses=errors())
def create_token():
    user = basic.current_user
    token, expires_at = services().accounts.issue_token(user)
    return {"token": token, "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
            "user": user.name, "role": user.role}


@bp.delete("/tokens/current")
@bp.auth_required(bearer)
@bp.output({}, status_code=204)
@bp.doc(summary="Revoke the bearer token used for this request", responses=errors())
def revoke_token():
    services().accounts.revoke_token(request.authorization.token)
    return ""
