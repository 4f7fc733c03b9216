"""The project's one error tree.

Every error a request can meet is a ``PicamError`` (or an HTTP error that
``problems.py`` turns into the same shape), so there is a single mapping to
problem+json. Leaves also subclass a builtin where one fits, as gpiozero does.
"""
from __future__ import annotations


class PicamError(Exception):
    """Root of the errors this service raises.

    ``retry_after`` (seconds), when set, becomes the response's Retry-After.
    """

    status = 500
    title = "Internal error"
    retry_after: int | None = None

    def __init__(self, detail: str | None = None, retry_after: int | None = None, **extra):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if retry_after is not None:
            self.retry_after = retry_after
        self.extra = extra

    @property
    def headers(self) -> dict[str, str]:
        """Retry-After, when set, and any ``headers`` the error was raised with."""
        retry = {"Retry-After": str(self.retry_after)} if self.retry_after else {}
        return {**retry, **self.extra.get("headers", {})}


class ConfigError(PicamError, ValueError):
    """The configuration is invalid; the message is one line naming the key."""


class InvalidInput(PicamError, ValueError):
    """A request field failed a check that a schema cannot express."""

    status = 422
    title = "Validation error"

    def __init__(self, errors: dict[str, list[str]], detail: str | None = None):
        super().__init__(detail or "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()),
                         errors=errors)


class BadRequest(PicamError, ValueError):
    """A malformed request outside a body schema, such as a tampered cursor."""

    status = 400
    title = "Bad request"


class UnsupportedMediaType(PicamError, ValueError):
    """A request body that is not JSON."""

    status = 415
    title = "Unsupported media type"


class NotFound(PicamError, LookupError):
    """No resource has that id."""

    status = 404
    title = "Not found"


class Conflict(PicamError):
    """The resource is in a state that forbids the action."""

    status = 409
    title = "Conflict"


class TooManyFailures(PicamError):
    """Too many failed logins from one client."""

    status = 429
    title = "Too many failed logins"


class RateLimited(PicamError):
    """A client asked for something faster than its limit allows."""

    status = 429
    title = "Too many requests"


class LoginsBusy(PicamError):
    """Every password-check slot is taken (a burst of logins); clients may retry."""

    status = 503
    title = "Too many logins at once"


class CrossSiteRequest(PicamError):
    """A state-changing request sent by a page of another site."""

    status = 403
    title = "Cross-site request refused"


class DamagedFile(PicamError):
    """A stored file cannot be read as what the index says it is."""

    title = "Damaged file"


class TooManyStreams(PicamError):
    """Every live-view slot (``stream.max_clients``) is taken."""

    status = 503
    title = "Too many streams"


class InsufficientStorage(PicamError, OSError):
    """The data dir is below its free-space reserve, or the disk is full."""

    status = 507
    title = "Insufficient storage"


class CameraError(PicamError):
    """The camera cannot serve the request now; clients may retry."""

    status = 503
    title = "Camera unavailable"
    retry_after = 5


class CameraUnavailable(CameraError):
    """No usable camera: none attached, or it failed to open."""


class CameraBusy(CameraError):
    """Another process, or a capture that has not finished, holds the camera."""

    title = "Camera busy"


class CaptureTimeout(CameraError, TimeoutError):
    """A capture did not finish in time; the camera will be reopened."""

    title = "Capture timed out"


class CaptureFailed(CameraError):
    """The camera returned an error for one capture."""

    title = "Capture failed"


class MisdirectedRequest(PicamError):
    """The request's Host is not one this server answers for (``server.allowed_hosts``)."""

    status = 421
    title = "Misdirected request"


class PreconditionFailed(PicamError):
    """An If-Match that the resource no longer matches: it changed since the client read it."""

    status = 412
    title = "Precondition failed"
