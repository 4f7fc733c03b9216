"""Webhooks: the routes and their limits, secrets shown once, and deliveries to a real
receiver (tests/receiver.py): signed, in order, retried until the receiver is back,
kept across a restart and delivered once, and never in the way of a capture."""
from __future__ import annotations

import base64
import json

import pytest
import requests

from conftest import ADMIN_PASSWORD, ServerProcess, assert_problem, basic, wait_for
from picam_api.webhooks import verify
from receiver import Receiver

ADMIN = basic("admin", ADMIN_PASSWORD)
SMALL = {"width": 160, "height": 120}
LOOPBACK = {"allowed_networks": ["127.0.0.0/8"], "denied_networks": []}


@pytest.fixture
def config(config):
    # The receivers live on this host, which the default denies.
    config["webhooks"] = {**LOOPBACK, "backoff_s": 0.1, "max_backoff_s": 0.3, "timeout_s": 2.0}
    return config


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def create(client, **body) -> dict:
    response = client.post("/api/v1/webhooks", headers=ADMIN, json=body)
    assert response.status_code == 201, response.json
    return response.json


def take(client, count: int = 1) -> list[str]:
    ids = []
    for _ in range(count):
        response = client.post("/api/v1/photos", headers=ADMIN, json=SMALL)
        assert response.status_code == 201
        ids.append(response.json["id"])
    return ids


def deliveries(client, hook: dict) -> list[dict]:
    return client.get(hook["links"]["deliveries"], headers=ADMIN).json["items"]


def first(client, hook: dict) -> dict:
    """The oldest delivery, once there is one (the outbox is filled after the commit)."""
    return wait_for(lambda: deliveries(client, hook)[-1:], what="a delivery")[0]


# -- the routes ------------------------------------------------------------------------


def test_create_list_change_delete(client, receiver):
    hook = create(client, url=receiver.url, types=["photo.created", "gpio.*"], description="door")
    assert hook["secret"].startswith("whsec_") and hook["enabled"] and not hook["snapshot"]
    assert hook["deliveries"] == {"pending": 0, "delivered": 0, "failed": 0, "dropped": 0}
    location = client.get(hook["links"]["self"], headers=ADMIN)
    assert location.status_code == 200 and "secret" not in location.json
    listed = client.get("/api/v1/webhooks", headers=ADMIN).json
    assert [h["id"] for h in listed["items"]] == [hook["id"]] and "secret" not in listed["items"][0]
    changed = client.patch(hook["links"]["self"], headers=ADMIN, json={"enabled": False}).json
    assert changed["enabled"] is False and "secret" not in changed
    rotated = client.patch(hook["links"]["self"], headers=ADMIN, json={"rotate_secret": True}).json
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != hook["secret"]
    assert client.delete(hook["links"]["self"], headers=ADMIN,
                         content_type="application/json").status_code == 204
    assert_problem(client.get(hook["links"]["self"], headers=ADMIN), 404)
    assert_problem(client.get(hook["links"]["deliveries"], headers=ADMIN), 404)


@pytest.mark.parametrize("body, field", [
    ({"url": "ftp://127.0.0.1/x", "types": ["*"]}, "url"),
    ({"url": "http:///nohost", "types": ["*"]}, "url"),
    ({"url": "http://127.0.0.1:99999/", "types": ["*"]}, "url"),
    ({"url": "http://127.0.0.1/" + "x" * 2100, "types": ["*"]}, "url"),
    ({"url": "http://10.1.2.3/x", "types": ["*"]}, "url"),  # outside allowed_networks here
    ({"url": "http://127.0.0.1/x", "types": ["photo.creatd"]}, "types"),
    ({"url": "http://127.0.0.1/x", "types": []}, "types"),
    ({"url": "http://127.0.0.1/x", "types": ["*"] * 33}, "types"),
    ({"url": "http://127.0.0.1/x"}, "types"),
    ({"types": ["*"]}, "url"),
    ({"url": "http://127.0.0.1/x", "types": ["*"], "snapshot": "yes"}, "snapshot"),
    ({"url": "http://127.0.0.1/x", "types": ["*"], "secret": "mine"}, "secret"),
])
def test_bad_webhooks_are_422_naming_the_field(client, body, field):
    assert_problem(client.post("/api/v1/webhooks", headers=ADMIN, json=body), 422, field)


def test_the_default_denies_this_host_and_link_local(make_app, tmp_path, monkeypatch):
    client = make_app({"storage": {"data_dir": str(tmp_path / "d"), "reserve_mb": 0},
                       "camera": {"backend": "mock"}}).test_client()
    for url in ("http://127.0.0.1:8000/", "http://[::1]/", "http://169.254.169.254/latest",
                "http://[::ffff:127.0.0.1]/"):
        body = assert_problem(client.post("/api/v1/webhooks", headers=ADMIN,
                                          json={"url": url, "types": ["*"]}), 422, "url")
        assert "denied_networks" in body["detail"]
    assert client.post("/api/v1/webhooks", headers=ADMIN,
                       json={"url": "http://192.168.1.20:1880/picam", "types": ["*"]}).status_code == 201


def test_hostnames_can_be_refused(make_app, config):
    config["webhooks"]["allow_hostnames"] = False
    client = make_app(config).test_client()
    body = assert_problem(client.post("/api/v1/webhooks", headers=ADMIN,
                                      json={"url": "http://receiver.lan/x", "types": ["*"]}), 422)
    assert "allow_hostnames" in body["detail"]


def test_the_number_of_webhooks_is_limited(make_app, config, receiver):
    config["webhooks"]["max_webhooks"] = 2
    client = make_app(config).test_client()
    create(client, url=receiver.url, types=["*"])
    create(client, url=receiver.url, types=["*"])
    assert_problem(client.post("/api/v1/webhooks", headers=ADMIN,
                               json={"url": receiver.url, "types": ["*"]}), 409)


def test_viewers_cannot_see_or_make_webhooks(client, viewer_headers, receiver):
    hook = create(client, url=receiver.url, types=["*"])
    for method, url in (("GET", "/api/v1/webhooks"), ("GET", hook["links"]["self"]),
                        ("GET", hook["links"]["deliveries"]), ("POST", "/api/v1/webhooks")):
        assert_problem(client.open(url, method=method, headers=viewer_headers,
                                   json={"url": receiver.url, "types": ["*"]}), 403)


# -- deliveries ------------------------------------------------------------------------


def test_deliveries_are_signed_in_order_and_logged(client, receiver):
    hook = create(client, url=receiver.url, types=["photo.created"], snapshot=True)
    ids = take(client, 5)
    wait_for(lambda: len(receiver.received) == 5)
    assert [e["data"]["id"] for e in receiver.events()] == ids
    for request in receiver.received:
        headers = request["headers"]
        assert verify(hook["secret"], headers["X-Picam-Signature"], request["body"])
        assert not verify(hook["secret"], headers["X-Picam-Signature"], request["body"] + b" ")
        assert not verify("whsec_other", headers["X-Picam-Signature"], request["body"])
        assert headers["X-Picam-Event"] == "photo.created"
        assert headers["Content-Type"] == "application/json"
        snapshot = request["json"]["snapshot"]
        assert snapshot["content_type"] == "image/jpeg"
        assert base64.b64decode(snapshot["data"])[:2] == b"\xff\xd8"
    event_ids = [e["id"] for e in receiver.events()]
    assert event_ids == sorted(event_ids)
    # The log says so once each answer is recorded, a moment after the receiver has it.
    log = wait_for(lambda: (d := deliveries(client, hook)) and
                   all(x["state"] == "delivered" for x in d) and d, what="the log")
    assert len({d["id"] for d in log}) == 5
    assert {d["id"] for d in log} == {r["headers"]["X-Picam-Delivery"] for r in receiver.received}
    assert all(d["state"] == "delivered" and d["response_code"] == 204 and d["attempts"] == 1
               for d in log)
    assert [d["event_id"] for d in log] == sorted(event_ids, reverse=True)  # newest first
    page = client.get(hook["links"]["deliveries"] + "?limit=2", headers=ADMIN).json
    assert len(page["items"]) == 2 and page["next"]
    assert client.get(page["next"], headers=ADMIN).json["items"][0]["id"] == log[2]["id"]


def test_a_receiver_that_is_down_gets_it_when_it_is_back(client):
    receiver = Receiver()  # its port is known, but nothing listens yet
    hook = create(client, url=receiver.url, types=["photo.created"])
    ids = take(client, 3)
    wait_for(lambda: first(client, hook)["attempts"] >= 2, what="retries")
    oldest = first(client, hook)
    assert oldest["state"] == "pending" and oldest["last_error"] == "connection refused"
    assert oldest["next_attempt_at"] and oldest["response_code"] is None
    receiver.start()
    try:
        wait_for(lambda: len(receiver.received) == 3, what="the deliveries")
        assert [e["data"]["id"] for e in receiver.events()] == ids  # in order, once each
        wait_for(lambda: all(d["state"] == "delivered" for d in deliveries(client, hook)))
    finally:
        receiver.stop()


def test_a_receiver_that_keeps_failing_ends_as_failed(make_app, config, receiver):
    config["webhooks"]["max_attempts"] = 3
    client = make_app(config).test_client()
    receiver.status = 500
    hook = create(client, url=receiver.url, types=["photo.created"])
    take(client)
    wait_for(lambda: first(client, hook)["state"] == "failed")
    failed = first(client, hook)
    assert failed["attempts"] == 3 and failed["response_code"] == 500
    assert failed["last_error"] == "HTTP 500" and len(receiver.received) == 3
    # Every attempt sends the same body under the same delivery id (signed anew each time).
    assert len({r["body"] for r in receiver.received}) == 1
    assert {r["headers"]["X-Picam-Delivery"] for r in receiver.received} == {failed["id"]}
    assert client.get(hook["links"]["self"], headers=ADMIN).json["deliveries"]["failed"] == 1


def test_the_outbox_is_bounded(make_app, config):
    config["webhooks"]["max_pending"] = 2
    client = make_app(config).test_client()
    hook = create(client, url=Receiver().url, types=["photo.created"])  # nobody listens
    take(client, 4)
    wait_for(lambda: len(deliveries(client, hook)) == 4)
    states = sorted(d["state"] for d in deliveries(client, hook))
    assert states == ["dropped", "dropped", "pending", "pending"]
    dropped = [d for d in deliveries(client, hook) if d["state"] == "dropped"]
    assert "webhooks.max_pending" in dropped[0]["last_error"]


def test_a_slow_receiver_delays_neither_captures_nor_other_webhooks(client):
    slow, fast = Receiver().start(), Receiver().start()
    try:
        slow.delay_s = 0.8
        create(client, url=slow.url, types=["photo.created"])
        create(client, url=fast.url, types=["photo.created"])
        ids = take(client, 4)  # each answers 201 at once
        wait_for(lambda: len(fast.received) == 4)
        assert len(slow.received) <= 1  # still on its first
        assert [e["data"]["id"] for e in fast.events()] == ids
        wait_for(lambda: len(slow.received) == 4, timeout=20)
        assert [e["data"]["id"] for e in slow.events()] == ids
    finally:
        slow.stop()
        fast.stop()


def test_pending_deliveries_survive_a_restart_and_arrive_once(tmp_path):
    receiver = Receiver()
    toml = ("[webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\ndenied_networks = []\n"
            "backoff_s = 0.2\nmax_backoff_s = 0.5\n")
    server = ServerProcess(tmp_path, toml).start()
    try:
        created = requests.post(server.url + "/api/v1/webhooks", headers=ADMIN, timeout=10,
                                json={"url": receiver.url, "types": ["photo.created"]}).json()
        ids = [requests.post(server.url + "/api/v1/photos", headers=ADMIN, json=SMALL,
                             timeout=10).json()["id"] for _ in range(3)]
        wait_for(lambda: [d for d in requests.get(server.url + created["links"]["deliveries"],
                                                  headers=ADMIN, timeout=10).json()["items"]
                          if d["attempts"] >= 1], what="a first attempt")
        assert server.stop() == 0
        receiver.start()
        server.start()
        wait_for(lambda: len(receiver.received) == 3, what="the deliveries after the restart")
        wait_for(lambda: all(d["state"] == "delivered" for d in requests.get(
            server.url + created["links"]["deliveries"], headers=ADMIN, timeout=10).json()["items"]))
        assert [e["data"]["id"] for e in receiver.events()] == ids
        assert len({r["headers"]["X-Picam-Delivery"] for r in receiver.received}) == 3
        listed = requests.get(server.url + "/api/v1/webhooks", headers=ADMIN, timeout=10).text
        assert created["secret"] not in listed
    finally:
        server.stop()
        receiver.stop()
    log = server.log.read_text()
    assert created["secret"] not in log and "/hook" not in log  # neither secret nor path logged
    assert "webhook" in log  # it did log the deliveries' fate, by host
