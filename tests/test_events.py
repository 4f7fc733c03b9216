"""The event bus and its publishers, in process: ids, the log, coalescing, slow
subscribers, and each service's events published after its change is committed."""
from __future__ import annotations

import json
import threading

import pytest

from conftest import ADMIN_PASSWORD, basic, wait_for
from picam_api.config import from_mapping
from picam_api.db import Database
from picam_api.errors import ConfigError, InvalidInput
from picam_api.events import EventBus, Gap, TypeFilter, parse_filter
from picam_api.storage_watch import StorageWatch

ADMIN = basic("admin", ADMIN_PASSWORD)
SMALL = {"width": 160, "height": 120}


@pytest.fixture
def bus(tmp_path):
    db = Database(tmp_path / "events.db")
    db.migrate()
    bus = EventBus(db, keep=100)
    yield bus
    bus.stop()
    db.close()


def logged(bus, types=None) -> list:
    accept = TypeFilter(tuple(types or ()))
    return [e for e in bus.since(0, 100_000) if accept(e.type)]


def test_ids_grow_and_the_log_keeps_the_newest(bus):
    bus.start()
    subscription = bus.subscribe()
    for n in range(150):
        bus.publish("gpio.changed", {"n": n})
    seen = []
    while len(seen) < 150:
        seen += subscription.get(5)
    assert [e.data["n"] for e in seen] == list(range(150))
    assert [e.id for e in seen] == list(range(seen[0].id, seen[0].id + 150))
    wait_for(lambda: bus.latest_id == seen[-1].id)
    assert [e.id for e in bus.since(0, 1000)] == [e.id for e in seen[-100:]]  # keep = 100
    assert bus.oldest_id() == seen[-100].id


def test_ids_go_on_after_a_restart(make_app, config, client):
    services = client.application.extensions["picam"]
    client.post("/api/v1/photos", headers=ADMIN, json=SMALL)
    services.shutdown()  # writes what is still queued
    before = services.events.latest_id
    assert before >= 1
    again = make_app(config).extensions["picam"]
    assert again.events.latest_id == before
    again.events.publish("gpio.changed", {})
    wait_for(lambda: again.events.latest_id == before + 1)


def test_queued_progress_is_coalesced_per_key(bus):
    for n in range(5):  # the writer is not running yet: all five wait in the queue
        bus.publish("timelapse.progress", {"n": n}, coalesce="job-a")
    bus.publish("timelapse.progress", {"n": 0}, coalesce="job-b")
    bus.publish("photo.created", {"id": "p"})
    bus.start()
    wait_for(lambda: len(logged(bus)) == 3)
    assert [(e.type, e.data) for e in logged(bus)] == [
        ("timelapse.progress", {"n": 4}), ("timelapse.progress", {"n": 0}),
        ("photo.created", {"id": "p"})]


def test_a_slow_subscriber_catches_up_from_the_log(bus):
    bus.start()
    slow = bus.subscribe(size=5)
    for n in range(40):
        bus.publish("gpio.changed", {"n": n})
    wait_for(lambda: bus.latest_id >= 40)
    seen = []
    while len(seen) < 40:
        seen += slow.get(5)
    assert [e.data["n"] for e in seen] == list(range(40))  # none lost, none twice


def test_a_subscriber_behind_the_log_is_told(bus):
    bus.start()
    for n in range(130):
        bus.publish("gpio.changed", {"n": n})
    wait_for(lambda: bus.latest_id == 130)
    late = bus.subscribe(after=3)
    with pytest.raises(Gap) as gap:
        late.get(1)
    assert gap.value.latest == 130
    bus.publish("gpio.changed", {"n": "next"})
    assert late.get(5)[0].data == {"n": "next"}  # then it goes on from the newest


def test_a_handed_off_subscriber_reads_what_a_refused_push_missed_from_the_log(bus):
    bus.start()
    pushed, refuse = [], threading.Event()

    def push(data: bytes) -> bool:  # as a client's connection would: taken, or not at all
        if refuse.is_set():
            return False
        pushed.append(data)
        return True

    def numbers(events) -> list:
        return [e.data["n"] for e in events]

    late = bus.subscribe(TypeFilter(("gpio.changed",)), after=0)
    assert not late.hand_off(push)  # it has the log to read first
    subscription = bus.subscribe(TypeFilter(("gpio.changed",)))
    assert subscription.hand_off(push)
    for n in range(5):
        bus.publish("gpio.changed", {"n": n})
        bus.publish("photo.created", {"n": "filtered out"})
    wait_for(lambda: len(b"".join(pushed).split(b"\n\n")) > 5, what="five events pushed")
    frames = b"".join(pushed).split(b"\n\n")[:-1]
    assert [json.loads(f.split(b"data: ")[1])["data"]["n"] for f in frames] == list(range(5))
    assert subscription.get(0.05) == []  # nothing was queued for it as well
    refuse.set()
    bus.publish("gpio.changed", {"n": 5})
    assert not subscription.handed_off(5)  # the refusal ended the hand-off
    refuse.clear()
    bus.publish("gpio.changed", {"n": 6})
    wait_for(lambda: bus.latest_id == 12)
    assert numbers(subscription.get(5)) == [5, 6]  # from the log, none lost, none twice
    assert subscription.hand_off(push)  # caught up again
    bus.publish("gpio.changed", {"n": 7})
    wait_for(lambda: b'"n":7' in pushed[-1], what="the next event pushed")
    assert numbers(late.get(5)) == list(range(8))
    subscription.close()
    assert not subscription.hand_off(push)


def test_type_filters():
    assert parse_filter("photo.*,gpio.changed") == TypeFilter(("photo.*", "gpio.changed"))
    accept = parse_filter(["photo.*"])
    assert accept("photo.created") and accept("photo.deleted") and not accept("photographs")
    assert parse_filter(None)("anything") and parse_filter("*")("gpio.triggered")
    for bad in ("photo", "photos.*", "PHOTO.created", "gpio.changed,", "a" * 70):
        with pytest.raises(InvalidInput):
            parse_filter(bad)


def collect(services, types=None):
    """Events of ``types`` as they are published, from now on, in a list kept current."""
    subscription = services.events.subscribe(TypeFilter(tuple(types or ())))
    seen: list = []

    def run():
        while not subscription.closed:
            seen.extend(subscription.get(0.2))
    threading.Thread(target=run, daemon=True).start()
    return seen


def test_photo_created_is_published_after_the_row_is_committed(services, client):
    found = []
    subscription = services.events.subscribe(TypeFilter(("photo.created",)))

    def check():
        while not (events := subscription.get(10)):
            pass
        for event in events:
            # Another connection, so it sees only what is committed.
            row = services.db.conn.execute("SELECT id FROM photos WHERE id = ?",
                                           (event.data["id"],)).fetchone()
            found.append(row is not None)

    thread = threading.Thread(target=check)
    thread.start()
    photo = client.post("/api/v1/photos", headers=ADMIN, json=SMALL).json
    thread.join(10)
    assert found == [True]
    event = services.events.since(0)[-1]
    assert event.type == "photo.created" and event.data == photo


def test_photo_deleted_by_the_api_and_by_retention(make_app, config):
    config["storage"].update(max_photos=2, retention_interval_s=0.1)
    app = make_app(config)
    services, client = app.extensions["picam"], app.test_client()
    seen = collect(services, ["photo.*"])
    ids = [client.post("/api/v1/photos", headers=ADMIN, json=SMALL).json["id"] for _ in range(3)]
    wait_for(lambda: any(e.type == "photo.deleted" for e in seen), what="retention")
    client.delete(f"/api/v1/photos/{ids[2]}", headers=ADMIN, content_type="application/json")
    wait_for(lambda: len([e for e in seen if e.type == "photo.deleted"]) == 2)
    deleted = [e.data for e in seen if e.type == "photo.deleted"]
    assert deleted == [{"id": ids[0], "timelapse_id": None, "reason": "retention"},
                       {"id": ids[2], "timelapse_id": None, "reason": "api"}]


def test_timelapse_state_and_progress(services, client):
    seen = collect(services, ["timelapse.*"])
    job = client.post("/api/v1/timelapses", headers=ADMIN,
                      json={"interval_s": 0.5, "frames": 3, **SMALL}).json
    wait_for(lambda: any(e.data["state"] == "completed" for e in seen), timeout=15)
    states = [e.data["state"] for e in seen if e.type == "timelapse.state"]
    assert states == ["running", "completed"]
    progress = [e.data["frames_captured"] for e in seen if e.type == "timelapse.progress"]
    assert progress == [1, 2, 3]
    assert all(e.data["id"] == job["id"] for e in seen)
    assert seen[-1].data == client.get(job["links"]["self"], headers=ADMIN).json
    other = client.post("/api/v1/timelapses", headers=ADMIN,
                        json={"name": "n", "interval_s": 60, **SMALL}).json
    for state in ("paused", "running", "cancelled"):
        client.patch(other["links"]["self"], headers=ADMIN, json={"state": state})
    client.delete(other["links"]["self"], headers=ADMIN, content_type="application/json")
    wait_for(lambda: any(e.type == "timelapse.deleted" for e in seen))
    assert [(e.type, e.data.get("state")) for e in seen
            if e.data["id"] == other["id"] and e.type != "timelapse.progress"] == [
        ("timelapse.state", "running"), ("timelapse.state", "paused"),
        ("timelapse.state", "running"), ("timelapse.state", "cancelled"),
        ("timelapse.deleted", None)]


def test_video_created_state_and_ready(services, client):
    seen = collect(services, ["video.*"])
    clip = client.post("/api/v1/videos", headers=ADMIN,
                       json={"duration_s": 0.5, "width": 160, "height": 120, "fps": 10}).json
    wait_for(lambda: any(e.type == "video.ready" for e in seen), timeout=20)
    assert seen[0].type == "video.created" and seen[0].data["state"] == "recording"
    assert all(e.data["id"] == clip["id"] for e in seen)
    assert [e.data["state"] for e in seen if e.type == "video.state"][-1] == "ready"
    assert seen[-1].data == client.get(clip["links"]["self"], headers=ADMIN).json


def test_gpio_changed_and_triggered(make_app, config, monkeypatch):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    config["gpio"] = {"devices": [
        {"name": "led", "pin": 17, "kind": "led"},
        {"name": "pir", "pin": 27, "kind": "input", "min_interval_s": 60,
         "on_active": {"action": "output", "device": "led", "value": 1}}]}
    app = make_app(config)
    services, client = app.extensions["picam"], app.test_client()
    seen = collect(services, ["gpio.*"])
    client.patch("/api/v1/gpio/led", headers=ADMIN, json={"value": 1})
    pin = services.gpio.factory.pin("GPIO27")
    pin.drive_high()
    pin.drive_low()
    pin.drive_high()  # inside min_interval_s: suppressed
    wait_for(lambda: len([e for e in seen if e.type == "gpio.triggered"]) == 3)
    triggered = [e.data for e in seen if e.type == "gpio.triggered"]
    assert [(t["event"], t["result"]) for t in triggered] == [
        ("on_active", "fired"), ("on_inactive", "none"), ("on_active", "suppressed")]
    changed = [e.data for e in seen if e.type == "gpio.changed"]
    assert changed[0]["name"] == "led" and changed[0]["value"] == 1
    pir = [c for c in changed if c["name"] == "pir"]
    assert [c["edges"] for c in pir] == [1, 2, 3] and pir[0]["links"]["self"] == "/api/v1/gpio/pir"


def test_camera_health(make_app, config):
    config["camera"]["mock"]["missing"] = True
    services = make_app(config).extensions["picam"]
    services.owner.health()
    wait_for(lambda: services.events.since(0))
    event = services.events.since(0)[-1]
    assert event.type == "camera.health" and event.data["usable"] is False
    assert event.data["reason"] and event.data["backend"] == "mock"
    services.backend.missing = False
    services.owner.reopen_backoff = 0
    services.owner.health()
    wait_for(lambda: services.events.since(0)[-1].data["usable"] is True)


def test_storage_low_and_ok(bus, tmp_path):
    bus.start()
    watch = StorageWatch(tmp_path, low_bytes=2**62, reserve_bytes=0, events=bus)
    watch.tick()
    watch.tick()  # still low: said once
    watch.threshold = 1
    watch.margin = 1
    watch.tick()
    wait_for(lambda: len(logged(bus)) == 2)
    assert [e.type for e in logged(bus)] == ["storage.low", "storage.ok"]
    assert logged(bus)[0].data["free_bytes"] > 0
    fine = StorageWatch(tmp_path, low_bytes=0, reserve_bytes=0, events=bus)
    fine.tick()  # a disk that starts fine says nothing
    assert len(logged(bus)) == 2


@pytest.mark.parametrize("threads, ok", [(12, True), (11, False)])
def test_server_threads_count_the_event_streams(threads, ok):
    mapping = {"server": {"threads": threads}, "stream": {"max_clients": 4},
               "events": {"max_clients": 4}}
    if ok:
        from_mapping(mapping)
        return
    with pytest.raises(ConfigError) as error:
        from_mapping(mapping)
    assert "events.max_clients" in error.value.detail
