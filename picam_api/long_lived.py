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

A long-lived response whose bytes are the same for many clients and come from
one thread (Server-Sent Events: the event bus's writer) may also ask for
``pusher(environ)``: a ``push(data)`` that appends ``data`` to the response from
any thread, without waiting. That thread then writes to every client in turn,
instead of waking each client's own thread to write, which cost the server
five context switches per client per event. ``push`` takes the data (and the
server's loop sends what the kernel did not take at once) only if the client
has taken everything before it; otherwise, or once the client is gone, it
returns False and writes nothing. The caller then goes back to writing through
its iterator, whose writes wait for a slow client, drop a stalled one and end
the response for a gone one, as above. ``push`` writes nothing before the
response's first chunk has gone through the iterator (its headers go with it).
Elsewhere ``pusher`` is None.
"""
from __future__ import annotations

from typing import Callable, MutableMapping

ENVIRON_KEY = "picam.hold_open"
PUSH_KEY = "picam.push"


def hold_open(environ: MutableMapping, buffer_bytes: int) -> None:
    """Tell the server that this request's response is long-lived; see the module docstring."""
    hook = environ.get(ENVIRON_KEY)
    if hook is not None:
        hook(buffer_bytes)


def pusher(environ: MutableMapping) -> Callable[[bytes], bool] | None:
    """The server's ``push(data) -> bool`` for this response, or None; see the module docstring."""
    return environ.get(PUSH_KEY)
