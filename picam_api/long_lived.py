"""Responses that stay open (the MJPEG stream, Server-Sent Events) tell the server so.

A WSGI server cannot tell a photo from an endless stream, and buffers both the
same way: seconds of old frames for a viewer that paused, and a thread held for
as long as a client that stopped reading stays connected. So ``picam-api serve``
puts a callable in every request's WSGI environ under ``ENVIRON_KEY``, and a view
that returns a long-lived response calls ``hold_open(environ, buffer_bytes)``
before it returns. For the rest of that response the server then:

- sizes the connection's kernel send buffer (``SO_SNDBUF``) to ``buffer_bytes``
  (clamped to 16 KiB-4 MiB) and lets a write wait in the server only until the
  previous one reached the kernel, so a client that pauses finds at most about
  ``buffer_bytes`` of old data when it reads again: one frame for MJPEG;
- drops a client that has taken no data for ``http_server.WRITE_TIMEOUT_S`` (5 s)
  while a write waits: one warning line, no traceback; the write raises, so the
  response's iterator is closed (its ``finally`` and ``call_on_close`` run) and
  the thread is free;
- closes the connection when the response ends (``Connection: close``).

Any write the server cannot pass on within that time drops the client, long-lived
or not. Elsewhere (Flask's test client, another WSGI server) the key is absent
and ``hold_open`` does nothing.
"""
from __future__ import annotations

from typing import MutableMapping

ENVIRON_KEY = "picam.hold_open"


def hold_open(environ: MutableMapping, buffer_bytes: int) -> None:
    """Tell the server that this request's response is long-lived; see the module docstring."""
    hook = environ.get(ENVIRON_KEY)
    if hook is not None:
        hook(buffer_bytes)
