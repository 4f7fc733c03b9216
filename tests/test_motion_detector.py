"""The motion detector and its event rules against the mock's scripted scenes, frame by frame.

Frames come from ``picam_api.camera.mock_scene.Scene`` at chosen scene times
(5 fps, 320x240, the defaults), so every test knows where the object is.
"""
from __future__ import annotations

import numpy as np
import pytest

from picam_api.camera.mock_scene import Scene
from picam_api.motion.detector import Detector
from picam_api.motion.masks import rasterise
from picam_api.motion_rules import MaskError, check_masks
from picam_api.motion.tracker import Tracker

W, H, FPS = 320, 240, 5.0
CROSSING = [[-0.15, 0.55], [1.15, 0.55]]  # left to right, off frame at both ends


def run(scene: Scene, seconds: float, detector: Detector | None = None,
        tracker: Tracker | None = None, confirmed=lambda: True, start: float = 0.0):
    """Feed ``seconds`` of ``scene``; return (events with their frame index, observations)."""
    detector = detector or Detector(W, H, fps=FPS)
    tracker = tracker or Tracker()
    events, observations = [], []
    for index in range(int(seconds * FPS)):
        t = start + index / FPS
        obs = detector.feed(scene.luma(W, H, t))
        observations.append(obs)
        for kind, data in tracker.update(obs, t, confirmed):
            events.append((index, kind, data))
    return events, observations


def test_a_static_noisy_scene_makes_no_event():
    events, observations = run(Scene(noise=6.0, seed=1), 60)
    assert events == []
    assert max(obs.area_pct for obs in observations[10:]) < 0.5


def test_a_crossing_object_starts_within_two_frames_with_its_bbox_and_ends_after_it_leaves():
    scene = Scene(path=CROSSING, speed=0.5, size=0.2, start_s=3.0, noise=3.0, seed=2)
    events, _ = run(scene, 12)
    kinds = [kind for _, kind, _ in events]
    assert kinds == ["motion.start", "motion.end"], events
    (start_index, _, start), (end_index, _, end) = events
    # The first frame in which enough of the object is in view to be seen at all.
    entering = next(i for i in range(60) if (b := scene.object_box(i / FPS, W, H))
                    and b[2] * b[3] * 100 >= 0.5)
    assert entering <= start_index <= entering + 2
    truth = scene.object_box(start_index / FPS, W, H)
    bbox = start["bbox"]
    for got, want in zip((bbox["x"], bbox["y"], bbox["w"], bbox["h"]), truth):
        assert got == pytest.approx(want, abs=0.04), (bbox, truth)
    assert start["score"] >= 1 and start["area_pct"] >= 0.5
    leaves = next(i for i in range(start_index, 60) if scene.object_box(i / FPS, W, H) is None)
    # It ends end_after_s (2 s) after the last moving frame, not before it leaves.
    assert leaves + 2 * FPS - 2 <= end_index <= leaves + 2 * FPS + 1
    assert end["frames"] >= 5 and end["bbox"]["w"] > 0.8  # the union of the crossing


def test_an_object_inside_a_mask_is_ignored():
    scene = Scene(path=[[-0.15, 0.2], [1.15, 0.2]], speed=0.5, size=0.2, start_s=2.0, noise=3.0,
                  seed=3)
    mask = rasterise(check_masks([{"x": 0.0, "y": 0.0, "w": 1.0, "h": 0.35}]), W, H)
    events, observations = run(scene, 8, Detector(W, H, fps=FPS, mask=mask))
    assert events == [] and max(obs.area_pct for obs in observations) < 0.5
    # The same crossing unmasked is seen: the mask is what hid it.
    events, _ = run(scene, 8)
    assert [kind for _, kind, _ in events][:1] == ["motion.start"]


def test_a_polygon_mask_hides_what_it_covers():
    scene = Scene(path=[[0.2, 1.2], [0.2, -0.2]], speed=0.5, size=0.2, start_s=2.0, seed=4)
    masks = check_masks([{"points": [[0.0, 0.0], [0.45, 0.0], [0.45, 1.0], [0.0, 1.0]]}])
    assert run(scene, 8, Detector(W, H, fps=FPS, mask=rasterise(masks, W, H)))[0] == []
    assert run(scene, 8)[0]


def test_a_slow_brightness_ramp_is_not_motion():
    # 2 % a second: from full light to half in 25 s and back.
    events, _ = run(Scene(ramp=0.02, noise=3.0, seed=5), 60)
    assert events == []


def test_a_sudden_flicker_is_not_motion():
    events, observations = run(Scene(flicker=0.3, noise=3.0, seed=6), 30)
    assert events == []


def test_a_cloud_over_most_of_the_frame_is_a_light_change_not_motion():
    events, observations = run(Scene(cloud_s=6.0, cloud_area=0.8, noise=3.0, seed=7), 30)
    assert events == []
    assert sum(obs.light_change for obs in observations) >= 4  # each shadow coming and going


def test_an_object_seen_in_one_frame_only_is_a_glitch():
    scene = Scene(path=CROSSING, speed=0.5, size=0.2, noise=3.0, seed=8)
    glitch = scene.luma(W, H, 1.3)  # the object mid-frame
    still = Scene(noise=3.0, seed=9)
    for min_frames, expected in ((2, []), (1, ["motion.start"])):
        detector, tracker = Detector(W, H, fps=FPS), Tracker(min_frames=min_frames)
        kinds = []
        for index in range(20):
            frame = glitch if index == 10 else still.luma(W, H, index / FPS)
            kinds += [kind for kind, _ in tracker.update(detector.feed(frame), index / FPS)]
        assert kinds[:1] == expected


def test_cooldown_holds_back_a_second_event():
    # Two crossings 4 s apart; each takes 2.6 s and the event ends 2 s after it.
    scene = Scene(path=CROSSING, speed=0.5, size=0.2, start_s=2.0, repeat_s=7.0, noise=3.0, seed=10)
    events, _ = run(scene, 16, tracker=Tracker(cooldown_s=10.0))
    assert [kind for _, kind, _ in events] == ["motion.start", "motion.end"]
    tracker = Tracker(cooldown_s=0.0)
    events, _ = run(scene, 16, tracker=tracker)
    assert [kind for _, kind, _ in events] == ["motion.start", "motion.end"] * 2
    assert tracker.counters.suppressed == 0


def test_motion_without_confirmation_starts_no_event_until_confirmed():
    scene = Scene(path=CROSSING, speed=0.5, size=0.2, start_s=2.0, noise=3.0, seed=11)
    tracker = Tracker()
    events, _ = run(scene, 10, tracker=tracker, confirmed=lambda: False)
    assert events == [] and tracker.counters.unconfirmed == 1


def test_higher_sensitivity_sees_fainter_changes():
    # A grey object close to the background's level: only a sensitive detector sees it.
    scene = Scene(path=CROSSING, speed=0.5, size=0.3, start_s=2.0, noise=2.0, seed=12)
    faint = lambda frame: (frame.astype(int) * 0.1 + scene_background * 0.9).astype("uint8")  # noqa: E731
    scene_background = Scene().luma(W, H, 0).astype(int)
    results = {}
    for sensitivity in (1, 100):
        detector = Detector(W, H, fps=FPS, sensitivity=sensitivity)
        seen = [detector.feed(faint(scene.luma(W, H, i / FPS))).moving for i in range(40)]
        results[sensitivity] = any(seen)
    assert results == {1: False, 100: True}


@pytest.mark.parametrize("masks, where", [
    ("x", "masks"),
    ([{"x": 0.5, "y": 0, "w": 0.1, "h": -0.1}], "0.h"),
    ([{"x": 0, "y": 0, "w": 0, "h": 0.1}], "0.w"),
    ([{"x": -0.1, "y": 0, "w": 0.5, "h": 0.1}], "0.x"),
    ([{"points": [[0, 0], [1, 1]]}], "0.points"),
    ([{"points": [[0, 0], [1, 1], [2, 0]]}], "0.points.2"),
    ([{"x": 0, "y": 0, "w": 0.1}], "0"),
    ([{}] * 33, "masks"),
])
def test_bad_masks_name_what_is_wrong(masks, where):
    with pytest.raises(MaskError) as caught:
        check_masks(masks)
    assert caught.value.where == where


def test_an_object_moving_while_the_detector_learns_leaves_no_ghost():
    # In view from the first frame: the background is learnt while it crosses.
    scene = Scene(path=[[0.1, 0.5], [1.15, 0.5]], speed=0.5, size=0.2, noise=3.0, seed=13)
    events, observations = run(scene, 10)
    assert [kind for _, kind, _ in events] == ["motion.start", "motion.end"]
    gone = next(i for i in range(50) if scene.object_box(i / FPS, W, H) is None)
    assert max(obs.area_pct for obs in observations[gone + 1:]) < 0.5


@pytest.mark.parametrize("path", [
    [[1.15, 0.45], [-0.15, 0.45]],  # in from the dark right edge: half the stripes blend in
    [[-0.15, 0.45], [1.15, 0.45]],
])
def test_an_entering_object_starts_an_event_in_the_next_frame(path):
    # The bench's latency rule: from the first frame whose part of the object in view
    # covers min_area_pct, motion.start comes within one frame (< 2 frame intervals).
    for seed in range(14, 20):
        scene = Scene(path=path, speed=0.6, size=0.2, start_s=2.0, noise=4.0, flicker=0.1,
                      seed=seed)
        events, _ = run(scene, 5)
        seen = next(i for i in range(25) if (b := scene.object_box(i / FPS, W, H))
                    and b[2] * b[3] * 100 >= 0.5)
        start = next(index for index, kind, _ in events if kind == "motion.start")
        assert start <= seen + 1, (seed, seen, start)


def test_a_bright_object_that_clips_on_a_bright_frame_is_seen():
    # The frame is 10 % brighter than the background (flicker) and the object's white
    # stripes clip at 255: clipped in the frame is still a difference, and here the
    # object's black stripes are too close to the dark blue bar to count.
    still = Scene(noise=3.0, seed=21)
    detector = Detector(W, H, fps=FPS)
    for index in range(10):
        detector.feed(still.luma(W, H, index / FPS))
    scene = Scene(path=[[0.93, 0.3], [0.93, 0.31]], speed=0.01, size=0.2, noise=3.0, seed=22)
    frame = np.clip(scene.luma(W, H, 0.0).astype(float) * 1.1, 0, 255).astype(np.uint8)
    assert (frame == 255).sum() > 500
    obs = detector.feed(frame)
    assert obs.moving and obs.bbox[0] == pytest.approx(0.85, abs=0.05), obs


def test_a_lone_trace_of_change_is_no_event():
    # A change below min_area_pct counts towards a start only with motion right after it.
    from picam_api.motion.detector import Observation

    trace = Observation(0.2, 0.4, (0.9, 0.4, 0.1, 0.2), False, False, False)
    moving = Observation(1.5, 3.0, (0.8, 0.4, 0.2, 0.2), True, False, False)
    still = Observation(0.0, 0.0, None, False, False, False)
    tracker = Tracker()
    kinds = [kind for index, obs in enumerate([trace, still, trace, trace, still, moving, still])
             for kind, _ in tracker.update(obs, index / FPS)]
    assert kinds == []
    assert [kind for kind, _ in tracker.update(trace, 2.0) + tracker.update(moving, 2.2)] == \
        ["motion.start"]
