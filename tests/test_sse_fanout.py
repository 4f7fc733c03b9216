"""GET /api/v1/events with many real clients against ``picam-api serve``: the bus's
writer writes each event to every caught-up client itself, so an event wakes none
of the threads that hold the streams (it woke each of them, five context switches
apiece, and the server's CPU per event with 50 clients was 4-7 times that with 1)."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from conftest import ADMIN_PASSWORD, ServerProcess, basic
from sse import SseClient

ADMIN = basic("admin", ADMIN_PASSWORD)
CLIENTS = 24
EVENTS = 30
FANOUT_TOML = f"""
[events]
max_clients = {CLIENTS}
keepalive_s = 3600
[[gpio.devices]]
name = "led"
pin = 17
kind = "led"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("sse-fanout"), FANOUT_TOML,
                            threads=CLIENTS + 12).start()
    yield process
    process.stop()


def wakeups(pid: int) -> dict[int, int]:
    """Each of the server's threads: how many times it has waited and been woken so far."""
    counts = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                counts[int(task.name)] = int(line.split()[1])
    return counts


def test_an_event_reaches_every_client_without_waking_their_threads(server):
    clients = [SseClient(server.port, "/api/v1/events?types=gpio.changed", ADMIN)
               for _ in range(CLIENTS)]
    with requests.Session() as session:
        def toggle() -> None:
            assert session.patch(server.url + "/api/v1/gpio/led", headers=ADMIN,
                                 json={"toggle": True}, timeout=10).status_code == 200

        toggle()  # every stream is open and has caught up
        first = [client.next() for client in clients]
        before = wakeups(server.proc.pid)
        for _ in range(EVENTS):
            toggle()
            clients[0].next()  # one event at a time: none shares a wake-up with the next
        after = wakeups(server.proc.pid)
    for client, seen in zip(clients[1:], first[1:]):
        ids = [int(event["id"]) for event in client.events(EVENTS)]
        assert ids == list(range(int(seen["id"]) + 1, int(seen["id"]) + 1 + EVENTS))
    # The HTTP loop and the bus's writer wake for each event, and the threads that
    # answer the PATCHes take turns; none of the 24 that hold the streams may.
    woken = [tid for tid, count in after.items() if count - before.get(tid, 0) >= EVENTS // 2]
    assert len(woken) < CLIENTS // 4, f"{len(woken)} threads woke for most of {EVENTS} events"
    for client in clients:
        client.close()
