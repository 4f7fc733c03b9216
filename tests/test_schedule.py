import datetime as dt
from zoneinfo import ZoneInfo

from picam_api.timelapse.schedule import Schedule, Window

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, tz=BERLIN) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def test_slots_are_fixed_multiples_of_the_interval():
    schedule = Schedule(start=1000.0, interval=2.5)
    assert [schedule.time_of(k) for k in range(3)] == [1000.0, 1002.5, 1005.0]
    assert schedule.slot_at_or_after(1000.0) == 0
    assert schedule.slot_at_or_after(1000.1) == 1
    assert schedule.slot_at_or_after(900.0) == 0
    assert schedule.slot_at_or_after(1005.0) == 2


def test_end_stops_the_schedule():
    schedule = Schedule(start=0.0, interval=10.0, end=30.0)
    assert schedule.next_active(2) == 2
    assert schedule.next_active(3) is None  # due at 30, which is the end


def test_window_skips_to_the_next_opening():
    window = Window.parse("08:00", "10:00")
    start = at("2026-03-02T07:00:00")
    schedule = Schedule(start=start, interval=600.0, window=window, tz=BERLIN)
    first = schedule.next_active(0)
    assert schedule.time_of(first) == at("2026-03-02T08:00:00")
    last_today = schedule.next_active(schedule.slot_at_or_after(at("2026-03-02T09:55:00")))
    # 09:55 is no slot; 10:00 is outside (end exclusive); tomorrow 08:00 is next.
    assert schedule.time_of(last_today) == at("2026-03-03T08:00:00")


def test_window_across_midnight():
    window = Window.parse("22:00", "02:00")
    assert window.crosses_midnight
    assert window.contains(dt.datetime(2026, 1, 1, 23, 30))
    assert window.contains(dt.datetime(2026, 1, 1, 1, 59))
    assert not window.contains(dt.datetime(2026, 1, 1, 2, 0))
    assert not window.contains(dt.datetime(2026, 1, 1, 12, 0))
    schedule = Schedule(start=at("2026-03-02T12:00:00"), interval=3600.0, window=window, tz=BERLIN)
    slots = []
    slot = schedule.next_active(0)
    for _ in range(5):
        slots.append(dt.datetime.fromtimestamp(schedule.time_of(slot), BERLIN).strftime("%d %H:%M"))
        slot = schedule.next_active(slot + 1)
    assert slots == ["02 22:00", "02 23:00", "03 00:00", "03 01:00", "03 22:00"]


def test_count_active_counts_only_slots_in_the_window():
    window = Window.parse("08:00", "10:00")
    start = at("2026-03-02T00:00:00")
    schedule = Schedule(start=start, interval=1800.0, window=window, tz=BERLIN)
    # Two days of half-hour slots: 4 per day fall in 08:00-10:00.
    assert schedule.count_active(0, 96) == 8
    assert Schedule(start=start, interval=1800.0).count_active(0, 96) == 96
    assert schedule.count_active(5, 5) == 0


def test_window_follows_local_time_across_dst():
    # Europe/Berlin springs forward on 2026-03-29: the day has 23 hours.
    window = Window.parse("12:00", "12:30")
    schedule = Schedule(start=at("2026-03-28T12:00:00"), interval=86400.0 / 48, window=window,
                        tz=BERLIN)
    slot = schedule.next_active(schedule.slot_at_or_after(at("2026-03-28T13:00:00")))
    local = dt.datetime.fromtimestamp(schedule.time_of(slot), BERLIN)
    assert (local.day, local.hour, local.minute) == (29, 12, 0)


def test_a_window_no_slot_can_hit_gives_none():
    # Daily frames at midnight never fall in a noon window.
    schedule = Schedule(start=at("2026-03-02T00:00:00"), interval=86400.0,
                        window=Window.parse("12:00", "13:00"), tz=BERLIN)
    assert schedule.next_active(0) is None
