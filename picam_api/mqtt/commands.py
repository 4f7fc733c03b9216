"""MQTT commands on ``<base>/<node>/cmd/...``: each validated and carried out exactly as its
HTTP route does (the same request schema, the same service call), and answered on
``cmd/result`` with what that route would have answered: ok with the resource, or
its problem+json.

A command may carry a ``request_id`` (a string): only then is it answered, and a
command whose id was seen within ``mqtt.dedupe_s`` is not carried out again (a
QoS 1 message can arrive twice); its first answer is sent again instead.

To add a command, ``register(name, handler)``: ``cmd/<name>[/<arg>]`` calls
``handler(arg, body)``, which returns (HTTP status, result) or raises what the
HTTP route would raise.
"""
from __future__ import annotations

import collections
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from marshmallow import ValidationError
from werkzeug.http import HTTP_STATUS_CODES

from .. import resources
from ..api.schemas import CaptureRequest, GpioChange, TimelapsePatch, VideoCreate
from ..errors import PicamError
from ..problems import error_body, problem_body, validation_body

if TYPE_CHECKING:
    from ..app import Services

log = logging.getLogger(__name__)

Handler = Callable[[str | None, Any], tuple[int, dict]]
MAX_REMEMBERED = 10_000


class Commands:
    """The command table and the request ids seen lately."""

    def __init__(self, services: Services, max_bytes: int, dedupe_s: float):
        self.services = services
        self.max_bytes = max_bytes
        self.dedupe_s = dedupe_s
        self.handled = 0
        self._seen: collections.OrderedDict[str, tuple[float, dict | None]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.table: dict[str, Handler] = {}
        self.register("photo", self._photo)
        self.register("video", self._video)
        self.register("timelapse", self._timelapse)
        self.register("gpio", self._gpio)

    def register(self, name: str, handler: Handler) -> None:
        self.table[name] = handler

    def handle(self, command: str, payload: bytes) -> dict | None:
        """Carry out ``cmd/<command>``; the answer to publish, or None (no request_id, or a repeat in flight)."""
        name, _, arg = command.partition("/")
        request_id, body = None, None
        try:
            body = self._parse(payload)
            if isinstance(body, dict) and "request_id" in body:
                request_id = body.pop("request_id")
                if not isinstance(request_id, str) or not 1 <= len(request_id) <= 128:
                    request_id = None
                    raise ValidationError({"request_id": ["must be a string of 1-128 characters"]})
        except ValidationError as exc:
            return self._answer(None, command, {"ok": False, "problem": validation_body(exc.messages)})
        except PicamError as exc:
            return self._answer(None, command, {"ok": False, "problem": error_body(exc)})
        if request_id is not None:
            repeat = self._remember(request_id)
            if repeat is not False:
                log.info("MQTT command %s with request_id %r seen before; not run again", command,
                         request_id[:64])
                return repeat  # the first answer again, or None while it still runs
        outcome = self._run(name, arg or None, body)
        self.handled += 1
        if request_id is None:
            if not outcome["ok"]:
                log.info("MQTT command %s refused: %s", command, outcome["problem"]["detail"])
            return None
        answer = self._answer(request_id, command, outcome)
        with self._lock:
            self._seen[request_id] = (time.monotonic() + self.dedupe_s, answer)
        return answer

    def _run(self, name: str, arg: str | None, body: Any) -> dict:
        handler = self.table.get(name)
        try:
            if handler is None:
                raise _not_found(f"there is no command {name[:64]!r}; the commands are "
                                 f"{', '.join(sorted(self.table))}")
            status, result = handler(arg, body)
        except ValidationError as exc:
            return {"ok": False, "problem": validation_body(exc.messages)}
        except PicamError as exc:
            return {"ok": False, "problem": error_body(exc)}
        except Exception:  # what the HTTP API answers with a 500, and logs
            log.exception("MQTT command %s failed", name)
            return {"ok": False, "problem": problem_body(500, "The server failed; the error is in "
                                                              "its log.")}
        return {"ok": True, "status": status, "result": result}

    def _parse(self, payload: bytes) -> Any:
        if len(payload) > self.max_bytes:
            raise _Problem(413, f"The command is larger than server.max_body_bytes "
                                f"({self.max_bytes} bytes).")
        if not payload.strip():
            return {}
        try:
            return json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise _Problem(400, "The request could not be read, such as a body that is not "
                                "valid JSON.") from None

    def _remember(self, request_id: str) -> dict | None | bool:
        """False for a new id (now marked as running); else its answer (None while running)."""
        now = time.monotonic()
        with self._lock:
            while self._seen and (next(iter(self._seen.values()))[0] < now
                                  or len(self._seen) > MAX_REMEMBERED):
                self._seen.popitem(last=False)
            if request_id in self._seen:
                return self._seen[request_id][1]
            self._seen[request_id] = (now + self.dedupe_s, None)
        return False

    @staticmethod
    def _answer(request_id: str | None, command: str, outcome: dict) -> dict:
        return {"request_id": request_id, "command": command, **outcome}

    # -- the commands (each as its HTTP route) ---------------------------------------

    def _photo(self, arg: str | None, body: Any) -> tuple[int, dict]:
        if arg is not None:
            raise _not_found("cmd/photo takes no more topic levels")
        photo = self.services.capture.take_photo(CaptureRequest().load(body))
        return 201, {"photo": resources.photo(photo)}

    def _video(self, arg: str | None, body: Any) -> tuple[int, dict]:
        if arg is not None:
            raise _not_found("cmd/video takes no more topic levels")
        video = self.services.videos.create(VideoCreate().load(body))
        return 202, {"video": resources.video(video)}

    def _timelapse(self, ref: str | None, body: Any) -> tuple[int, dict]:
        if ref is None:
            raise _not_found("name the time-lapse: cmd/timelapse/<name or id>")
        job = self.services.timelapses.set_state(ref, TimelapsePatch().load(body)["state"])
        return 200, {"timelapse": resources.timelapse(job)}

    def _gpio(self, name: str | None, body: Any) -> tuple[int, dict]:
        if name is None:
            raise _not_found("name the device: cmd/gpio/<name>")
        device = self.services.gpio.apply(name, GpioChange().load(body))
        return 200, {"gpio": resources.gpio_device(device)}


class _Problem(PicamError):
    """A status the HTTP layer gives without a domain error (400, 404, 413)."""

    def __init__(self, status: int, detail: str, title: str | None = None):
        super().__init__(detail)
        self.status = status
        self.title = title or HTTP_STATUS_CODES.get(status, "Error")


def _not_found(detail: str) -> _Problem:
    return _Problem(404, detail)
