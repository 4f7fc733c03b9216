"""Time-lapse windows that follow the sun, at several latitudes, with an injected clock.

Expected times come from astral directly, in each place's own time zone; the
window code works from local days and epoch seconds, so the two paths meet
only in the numbers.
"""
from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest
from astral import Observer, sun

from conftest import ADMIN_PASSWORD, assert_problem, basic
from picam_api.clock import Clock
from picam_api.timelapse.schedule import Schedule, Window
from picam_api.timelapse.sun import Location, SunTime

BERLIN = (Location(52.52, 13.405, 34), ZoneInfo("Europe/Berlin"))
QUITO = (Location(-0.18, -78.47, 2850), ZoneInfo("America/Guayaquil"))
SYDNEY = (Location(-33.87, 151.21), ZoneInfo("Australia/Sydney"))
TROMSO = (Location(69.65, 18.96), ZoneInfo("Europe/Oslo"))
MINUTE = 60


def astral_time(event: str, place, day: dt.date) -> float:
    location, tz = place
    observer = Observer(location.latitude, location.longitude, location.elevation)
    return getattr(sun, event)(observer, day, tzinfo=tz).timestamp()


def local(day: dt.date, hour: int, tz) -> float:
    return dt.datetime.combine(day, dt.time(hour), tz).timestamp()


@pytest.mark.parametrize("place", [BERLIN, QUITO, SYDNEY], ids=["berlin", "quito", "sydney"])
@pytest.mark.parametrize("day", [dt.date(2026, 6, 21), dt.date(2026, 12, 21)], ids=["june", "dec"])
def test_sunrise_to_sunset_with_offsets_matches_the_almanac(place, day):
    location, tz = place
    window = Window.parse("sunrise-30m", "sunset+15m", location)
    opens, closes = window.day_span(day, tz)
    assert opens == pytest.approx(astral_time("sunrise", place, day) - 30 * MINUTE, abs=1)
    assert closes == pytest.approx(astral_time("sunset", place, day) + 15 * MINUTE, abs=1)
    # A schedule from midnight takes its first frame at the opening, not before.
    schedule = Schedule(local(day, 0, tz), 60.0, window=window, tz=tz)
    first = schedule.time_of(schedule.next_active(0))
    assert opens <= first < opens + 60
    per_day = schedule.count_active(0, 24 * 60)
    assert per_day == pytest.approx((closes - opens) / 60, abs=1)


def test_dawn_dusk_and_noon():
    day = dt.date(2026, 3, 20)
    window = Window.parse("dawn", "noon+1h30m", BERLIN[0])
    opens, closes = window.day_span(day, BERLIN[1])
    assert opens == pytest.approx(astral_time("dawn", BERLIN, day), abs=1)
    assert closes == pytest.approx(astral_time("noon", BERLIN, day) + 90 * MINUTE, abs=1)
    dusk = Window.parse("12:00", "dusk", BERLIN[0]).day_span(day, BERLIN[1])[1]
    assert dusk == pytest.approx(astral_time("dusk", BERLIN, day), abs=1)


def test_the_window_follows_the_sun_across_a_dst_change():
    location, tz = BERLIN
    window = Window.parse("sunrise", "sunset", location)
    before, after = dt.date(2026, 3, 28), dt.date(2026, 3, 29)  # CET, then CEST
    for day in (before, after):
        opens, _ = window.day_span(day, tz)
        assert opens == pytest.approx(astral_time("sunrise", BERLIN, day), abs=1)
    wall = [dt.datetime.fromtimestamp(window.day_span(d, tz)[0], tz) for d in (before, after)]
    # On the wall clock sunrise jumps by an hour less the two minutes the day grew.
    jump = (wall[1] - wall[0].replace(day=29)).total_seconds() / 60
    assert 55 < jump < 60


def test_polar_day_above_the_arctic_circle_is_open_all_day():
    location, tz = TROMSO
    day = dt.date(2026, 6, 21)
    window = Window.parse("sunrise-30m", "sunset+15m", location)
    assert window.day_span(day, tz) == (local(day, 0, tz), local(day + dt.timedelta(days=1), 0, tz))
    schedule = Schedule(local(day, 0, tz), 3600.0, window=window, tz=tz)
    assert schedule.count_active(0, 48) == 48  # every hour of two days
    # A night window (sunset to sunrise) never opens while the sun stays up.
    night = Window.parse("sunset", "sunrise", location)
    assert night.day_span(day, tz) is None


def test_polar_night_waits_for_the_sun_to_come_back():
    location, tz = TROMSO
    december = dt.date(2026, 12, 10)
    window = Window.parse("sunrise", "sunset", location)
    assert window.day_span(december, tz) is None
    schedule = Schedule(local(december, 0, tz), 600.0, window=window, tz=tz)
    first = schedule.time_of(schedule.next_active(0))
    # The first sunrise after the polar night, found by asking astral day by day.
    day = december
    while True:
        try:
            expected = astral_time("sunrise", TROMSO, day)
            break
        except ValueError:
            day += dt.timedelta(days=1)
    assert dt.date(2027, 1, 10) <= day <= dt.date(2027, 1, 20)
    assert expected <= first < expected + 600
    # Civil twilight still comes at midday, so dawn to dusk is open then ...
    twilight = Window.parse("dawn", "dusk", location).day_span(december, tz)
    assert twilight is not None and local(december, 9, tz) < twilight[0] < twilight[1] < \
        local(december, 15, tz)
    # ... and a night window is open all day.
    night = Window.parse("sunset", "sunrise", location)
    assert night.day_span(december, tz) == (local(december, 0, tz),
                                            local(december + dt.timedelta(days=1), 0, tz))


def test_a_window_that_never_opens_ends_the_schedule():
    # At the pole, "sunrise+11h" to "sunrise+11h30m" has no sunrise for months, then
    # the whole-day rule leaves no room between the two offsets: no slot, ever.
    location = Location(89.9, 0.0)
    window = Window(SunTime("sunrise", 3600), SunTime("sunrise", 3600), location)
    schedule = Schedule(local(dt.date(2026, 12, 1), 0, dt.timezone.utc), 600.0,
                        window=window, tz=dt.timezone.utc)
    assert schedule.next_active(0) is None


def test_sun_times_parse_and_refuse():
    assert SunTime.parse("sunrise-30m") == SunTime("sunrise", -1800)
    assert SunTime.parse("sunset+1h15m") == SunTime("sunset", 4500)
    assert SunTime.parse("noon") == SunTime("noon", 0)
    for bad in ("sunrise-", "sunrise+13h", "moonrise", "sunset+30", "SUNRISE"):
        with pytest.raises(ValueError):
            SunTime.parse(bad)


class FixedClock(Clock):
    """Wall time fixed at a chosen moment plus the time since the test began."""

    def __init__(self, at: float):
        self.offset = at - time.time()

    def time(self) -> float:
        return super().time() + self.offset


@pytest.fixture
def utc(monkeypatch):
    """The process's local time is UTC for the test (the schedule uses local days)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def sun_app(make_app, config, monkeypatch, place, at: dt.datetime):
    config["location"] = {"latitude": place[0].latitude, "longitude": place[0].longitude}
    clock = FixedClock(at.timestamp())
    monkeypatch.setattr("picam_api.timelapse.service.Clock", lambda: clock)
    return make_app(config).test_client(), basic("admin", ADMIN_PASSWORD)


def post_job(client, headers, start="sunrise-30m", end="sunset+15m"):
    return client.post("/api/v1/timelapses", headers=headers, json={
        "interval_s": 600, "width": 64, "height": 48,
        "active_hours": {"start": start, "end": end}})


def test_the_job_shows_todays_computed_window(make_app, config, monkeypatch, utc):
    day = dt.date(2026, 6, 21)
    client, headers = sun_app(make_app, config, monkeypatch, BERLIN,
                              dt.datetime(2026, 6, 21, 1, 0, tzinfo=dt.timezone.utc))
    job = post_job(client, headers)
    assert job.status_code == 201, job.json
    today = job.json["active_hours"]["today"]
    utc_place = (Location(52.52, 13.405), dt.timezone.utc)  # no elevation in the config
    opens = dt.datetime.fromisoformat(today["start"]).timestamp()
    closes = dt.datetime.fromisoformat(today["end"]).timestamp()
    assert opens == pytest.approx(astral_time("sunrise", utc_place, day) - 1800, abs=1)
    assert closes == pytest.approx(astral_time("sunset", utc_place, day) + 900, abs=1)
    next_frame = dt.datetime.fromisoformat(job.json["next_frame_at"]).timestamp()
    assert opens <= next_frame < opens + 600
    assert job.json["active_hours"]["start"] == "sunrise-30m"


def test_polar_night_job_shows_no_window_today_and_waits_for_january(make_app, config,
                                                                      monkeypatch, utc):
    client, headers = sun_app(make_app, config, monkeypatch, TROMSO,
                              dt.datetime(2026, 12, 10, 12, 0, tzinfo=dt.timezone.utc))
    job = post_job(client, headers).json
    assert job["active_hours"]["today"] is None
    assert job["next_frame_at"].startswith("2027-01-1")
    assert job["frames_captured"] == 0 and job["state"] == "running"


def test_polar_day_job_is_open_all_day(make_app, config, monkeypatch, utc):
    client, headers = sun_app(make_app, config, monkeypatch, TROMSO,
                              dt.datetime(2026, 6, 21, 12, 0, tzinfo=dt.timezone.utc))
    job = post_job(client, headers).json
    assert job["active_hours"]["today"] == {"start": "2026-06-21T00:00:00.000000Z",
                                            "end": "2026-06-22T00:00:00.000000Z"}


def test_a_sun_window_without_a_location_is_a_422_naming_the_key(client, admin_headers):
    response = post_job(client, admin_headers, "sunrise", "17:00")
    body = assert_problem(response, 422, "active_hours.start")
    assert "location.latitude" in body["detail"]
    assert_problem(post_job(client, admin_headers, "sunrise+", "17:00"), 422, "active_hours.start")
    assert_problem(post_job(client, admin_headers, "07:00", "moonset"), 422, "active_hours.end")


def test_a_stored_sun_job_fails_when_the_location_is_removed(make_app, config, monkeypatch):
    config["location"] = {"latitude": 52.5, "longitude": 13.4}
    app = make_app(config)
    client, headers = app.test_client(), basic("admin", ADMIN_PASSWORD)
    job = post_job(client, headers).json
    app.extensions["picam"].shutdown()
    del config["location"]
    restarted = make_app(config).test_client()
    body = restarted.get(job["links"]["self"], headers=headers).json
    assert body["state"] == "failed" and "location.latitude" in body["last_error"]
