"""GET /api/v1/events with a real client against ``picam-api serve``: order, resume with
Last-Event-ID, the reset past the log, the types filter, keepalives, the client cap
and the slot a client frees when it goes."""
from __future__ import annotations

import pytest
import requests

from conftest import ADMIN_PASSWORD, ServerProcess, assert_problem, basic, wait_for
from sse import SseClient

ADMIN = basic("admin", ADMIN_PASSWORD)
SMALL = {"width": 160, "height": 120}
SSE_TOML = """
[events]
keep = 100
max_clients = 2
keepalive_s = 0.3
[[gpio.devices]]
name = "led"
pin = 17
kind = "led"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("sse"), SSE_TOML).start()
    yield process
    process.stop()


@pytest.fixture
def stream(server):
    """Open event streams (as admin); each is closed, and its slot freed, after the test."""
    opened = []

    def open_stream(query: str = "", headers: dict | None = None) -> SseClient:
        client = SseClient(server.port, "/api/v1/events" + query, {**ADMIN, **(headers or {})})
        opened.append(client)
        return client

    yield open_stream
    for client in opened:
        client.close()
    wait_for(lambda: info(server)["events"]["sse"]["clients"] == 0, what="the slots freed")


def info(server) -> dict:
    return requests.get(server.url + "/api/v1/info", headers=ADMIN, timeout=10).json()


def photo(server) -> dict:
    response = requests.post(server.url + "/api/v1/photos", headers=ADMIN, json=SMALL, timeout=10)
    assert response.status_code == 201
    return response.json()


def toggle(server, times: int = 1) -> None:
    with requests.Session() as session:
        for _ in range(times):
            assert session.patch(server.url + "/api/v1/gpio/led", headers=ADMIN,
                                 json={"toggle": True}, timeout=10).status_code == 200


def test_events_arrive_in_order_with_their_ids(server, stream):
    client = stream("?types=photo.created")
    assert client.status == 200
    assert client.headers["content-type"].startswith("text/event-stream")
    assert client.headers["cache-control"] == "no-store"
    taken = [photo(server)["id"] for _ in range(4)]
    events = client.events(4)
    assert [e["data"]["data"]["id"] for e in events] == taken
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 4
    for event in events:
        assert event["event"] == "photo.created" == event["data"]["type"]
        assert event["data"]["id"] == int(event["id"])
        assert event["data"]["time"].endswith("Z")
        assert event["data"]["data"]["links"]["self"] == f"/api/v1/photos/{event['data']['data']['id']}"
    assert client.retry == 3000


def test_resume_from_last_event_id_replays_the_log_then_goes_live(server, stream):
    first = stream("?types=photo.created")
    taken = [photo(server)["id"] for _ in range(3)]
    seen = first.events(3)
    first.close()
    missed = [photo(server)["id"] for _ in range(2)]  # while nobody listens
    resumed = stream("?types=photo.created", {"Last-Event-ID": seen[0]["id"]})
    replayed = resumed.events(4)
    assert [e["data"]["data"]["id"] for e in replayed] == taken[1:] + missed
    live = photo(server)["id"]
    assert resumed.next()["data"]["data"]["id"] == live
    # A client that cannot send the header can say it in the query.
    by_query = stream(f"?types=photo.created&last_event_id={replayed[-1]['id']}")
    assert by_query.next()["data"]["data"]["id"] == live


def test_a_gap_older_than_the_log_gets_a_reset(server, stream):
    toggle(server, 110)  # events.keep is 100
    newest = info(server)["events"]["latest_id"]
    assert info(server)["events"]["oldest_id"] > 1
    client = stream("", {"Last-Event-ID": "1"})
    reset = client.next()
    assert reset["event"] == "reset" and int(reset["id"]) == newest
    assert reset["data"]["last_event_id"] == newest and "fetch" in reset["data"]["reason"]
    toggle(server)
    assert client.next()["event"] == "gpio.changed"  # and then it goes on live
    future = stream("", {"Last-Event-ID": str(newest + 1000)})  # another server's ids
    assert future.next()["event"] == "reset"


def test_the_types_filter(server, stream):
    client = stream("?types=gpio.*")
    photo(server)
    toggle(server)
    event = client.next()
    assert event["event"] == "gpio.changed" and event["data"]["data"]["name"] == "led"
    for query in ("?types=photo.createdd", "?types=video", "?types=*,nope", "?types=" + "x" * 3000):
        response = requests.get(server.url + "/api/v1/events" + query, headers=ADMIN, timeout=10)
        assert_problem(response, 422, "types")
    response = requests.get(server.url + "/api/v1/events", timeout=10,
                            headers={**ADMIN, "Last-Event-ID": "yesterday"})
    assert_problem(response, 422, "Last-Event-ID")
    assert requests.get(server.url + "/api/v1/events", timeout=10).status_code == 401


def test_keepalive_comments_on_an_idle_stream(server, stream):
    client = stream("?types=storage.low")
    with pytest.raises(OSError):  # no event comes, only comments, until the read times out
        client.next(timeout=1.0)
    assert client.comments.count("keepalive") >= 2


def test_the_cap_answers_503_and_a_client_that_leaves_frees_its_slot(server, stream):
    first, second = stream(), stream()
    assert first.status == second.status == 200
    third = stream()
    assert third.status == 503 and int(third.headers["retry-after"]) > 0
    assert b"events.max_clients" in third.body()
    assert info(server)["events"]["sse"] == {"clients": 2, "max_clients": 2}
    first.close()  # the server finds out at its next write, a keepalive at most 0.3 s away
    wait_for(lambda: info(server)["events"]["sse"]["clients"] == 1, what="the slot freed")
    fourth = stream()
    assert fourth.status == 200
    toggle(server)
    assert fourth.next()["event"] == "gpio.changed"


def test_a_viewer_may_read_events(client, viewer_headers):
    response = client.get("/api/v1/events", headers=viewer_headers, buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert next(response.response).startswith(b"retry: ")
    response.close()
