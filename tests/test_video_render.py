"""Time-lapse renders through /api/v1/videos: real frames, real PyAV, checked with ffprobe.

Frames that carry the mock's machine-readable stamp (their sequence number) are
put into the library through the photo store, so the decoded video says which
frames it holds and in what order.
"""
from __future__ import annotations

import datetime as dt
import io
import os
import threading
import time

import av
import pytest
from PIL import Image

from conftest import assert_problem, ffprobe, mp4_boxes, wait_for
from picam_api.camera import Capture, CaptureSettings
from picam_api.camera.mock_video import read_stamp, stamp

SIZE = (320, 240)


def stamped_jpeg(sequence: int, size=SIZE, brightness: int = 128) -> bytes:
    image = Image.new("RGB", size, (brightness, brightness, brightness))
    stamp(image, sequence, sequence * 1000)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def future_job(client, headers) -> str:
    """A time-lapse that has not started: its frames are the ones a test adds."""
    start = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()
    response = client.post("/api/v1/timelapses", headers=headers,
                           json={"interval_s": 3600, "start_at": start, "width": 320, "height": 240})
    assert response.status_code == 201, response.json
    return response.json["id"]


def add_frames(services, job_id: str, sequences, size=SIZE, brightness=lambda s: 128) -> dict:
    """Store stamped frames as the time-lapse's; return the photos by sequence."""
    settings = CaptureSettings(width=size[0], height=size[1])
    photos = {}
    for sequence in sequences:
        data = stamped_jpeg(sequence, size, brightness(sequence))
        photos[sequence] = services.photos.add(Capture(data, size[0], size[1], "jpeg"), settings,
                                               source="timelapse", timelapse_id=job_id,
                                               sequence=sequence)
    return photos


def render(client, headers, **body) -> dict:
    response = client.post("/api/v1/videos", headers=headers, json=body)
    assert response.status_code == 202, response.json
    assert response.headers["Location"] == response.json["links"]["self"]
    return response.json


def finished(client, headers, video: dict, timeout: float = 60) -> dict:
    def done():
        body = client.get(video["links"]["self"], headers=headers).json
        return body if body["state"] not in ("queued", "rendering", "recording") else None
    return wait_for(done, timeout, "the video to finish")


def download(client, headers, video: dict, tmp_path) -> tuple[bytes, os.PathLike]:
    response = client.get(video["links"]["video"], headers=headers)
    assert response.status_code == 200 and response.mimetype == "video/mp4"
    path = tmp_path / f"{video['id']}.mp4"
    path.write_bytes(response.data)
    return response.data, path


def stamps(path) -> list[int]:
    with av.open(str(path)) as container:
        return [read_stamp(frame.to_ndarray(format="gray"))[0] for frame in container.decode(video=0)]


def keyframes(path) -> int:
    with av.open(str(path)) as container:
        return sum(packet.is_keyframe for packet in container.demux(video=0) if packet.size)


def test_render_is_h264_yuv420p_faststart_with_the_frames_in_order(client, admin_headers,
                                                                    services, tmp_path):
    job = future_job(client, admin_headers)
    add_frames(services, job, range(1, 31))
    video = finished(client, admin_headers, render(client, admin_headers, timelapse=job, fps=10))
    assert video["state"] == "ready", video
    assert (video["frames"], video["frames_skipped"], video["progress"]) == (30, 0, 1.0)
    assert (video["width"], video["height"], video["fps"], video["codec"]) == (320, 240, 10.0, "h264")
    assert video["duration_s"] == pytest.approx(3.0)
    data, path = download(client, admin_headers, video, tmp_path)
    assert video["bytes"] == len(data)
    assert mp4_boxes(data).index("moov") < mp4_boxes(data).index("mdat")
    probe = ffprobe(path)
    assert (probe["codec_name"], probe["pix_fmt"], probe["width"], probe["height"]) == \
        ("h264", "yuv420p", 320, 240)
    assert probe["frames"] == 30 and probe["fps"] == pytest.approx(10.0)
    assert (probe["color_range"], probe["color_space"]) == ("tv", "bt470bg")
    assert probe["duration"] == pytest.approx(3.0, abs=0.01)
    assert stamps(path) == list(range(1, 31))
    # Decoded JPEGs are I pictures; passed on as such, every frame would be a keyframe.
    assert keyframes(path) == 1
    thumbnail = client.get(video["links"]["thumbnail"], headers=admin_headers)
    assert thumbnail.status_code == 200 and thumbnail.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(thumbnail.data)).size == (320, 240)


def test_gaps_missing_and_unreadable_frames_are_skipped_and_counted(client, admin_headers,
                                                                    services, tmp_path):
    job = future_job(client, admin_headers)
    photos = add_frames(services, job, [*range(1, 5), *range(8, 25)])  # 5-7: a gap
    (services.data_dir / photos[10].path).unlink()  # gone from disk, still indexed
    (services.data_dir / photos[12].path).write_bytes(b"not a jpeg at all")
    data = (services.data_dir / photos[15].path).read_bytes()
    (services.data_dir / photos[15].path).write_bytes(data[:len(data) // 2])  # torn
    (services.data_dir / photos[18].path).write_bytes(b"")
    video = finished(client, admin_headers, render(client, admin_headers, timelapse=job, fps=5))
    assert video["state"] == "ready", video
    assert (video["frames"], video["frames_skipped"]) == (17, 4)
    _, path = download(client, admin_headers, video, tmp_path)
    assert stamps(path) == [1, 2, 3, 4, 8, 9, 11, 13, 14, 16, 17, 19, 20, 21, 22, 23, 24]
    assert ffprobe(path)["frames"] == 17


def test_frame_range_size_and_aspect(client, admin_headers, services, tmp_path):
    job = future_job(client, admin_headers)
    add_frames(services, job, range(1, 21), size=(640, 480))
    video = finished(client, admin_headers, render(client, admin_headers, timelapse=job,
                                                   first_frame=5, last_frame=14, width=320))
    assert video["state"] == "ready", video
    assert (video["width"], video["height"], video["frames"]) == (320, 240, 10)
    _, path = download(client, admin_headers, video, tmp_path)
    assert stamps(path) == list(range(5, 15))
    assert ffprobe(path)["fps"] == pytest.approx(25.0)  # video.render_fps


def test_the_longest_side_never_exceeds_max_render_px(make_app, config, admin_headers, tmp_path):
    config["video"] = {"max_render_px": 400}
    app = make_app(config)
    client, services = app.test_client(), app.extensions["picam"]
    job = future_job(client, admin_headers)
    add_frames(services, job, range(1, 4), size=(1280, 960))
    video = finished(client, admin_headers, render(client, admin_headers, timelapse=job,
                                                   width=1280))
    assert (video["width"], video["height"]) == (400, 300)
    _, path = download(client, admin_headers, video, tmp_path)
    assert (ffprobe(path)["width"], stamps(path)) == (400, [1, 2, 3])


def test_deflicker_evens_out_brightness_and_timestamp_burns_in(client, admin_headers, services,
                                                               tmp_path):
    job = future_job(client, admin_headers)
    # Alternately bright and dark frames: deflicker pulls each toward the rolling mean.
    add_frames(services, job, range(1, 21), brightness=lambda s: 170 if s % 2 else 90)

    def lumas(body) -> list[float]:
        video = finished(client, admin_headers, render(client, admin_headers, timelapse=job,
                                                       **body))
        assert video["state"] == "ready", video
        _, path = download(client, admin_headers, video, tmp_path)
        with av.open(str(path)) as container:
            return [float(f.to_ndarray(format="gray")[20:120, :].mean())
                    for f in container.decode(video=0)]

    plain = lumas({})
    even = lumas({"deflicker": 9})
    swing = max(plain) - min(plain)
    assert swing > 60
    assert max(even[4:-4]) - min(even[4:-4]) < swing / 4
    def corner(body):
        video = finished(client, admin_headers, render(client, admin_headers, timelapse=job,
                                                       last_frame=1, **body))
        _, path = download(client, admin_headers, video, tmp_path)
        with av.open(str(path)) as container:
            # The bottom-left corner, where frame 1's stamp has only black blocks.
            return next(container.decode(video=0)).to_ndarray(format="gray")[220:240, 5:150]

    assert corner({}).max() < 50
    assert corner({"timestamp": True}).max() > 200  # the white text of the capture time


def test_a_render_while_the_job_still_captures_takes_the_frames_so_far(make_app, config,
                                                                       admin_headers, tmp_path):
    config["timelapse"] = {"min_interval_s": 0.05}
    client = make_app(config).test_client()
    job = client.post("/api/v1/timelapses", headers=admin_headers,
                      json={"interval_s": 0.1, "width": 160, "height": 120}).json
    wait_for(lambda: client.get(job["links"]["self"], headers=admin_headers).json[
        "frames_captured"] >= 5, what="five frames")
    video = render(client, admin_headers, timelapse=job["id"], fps=10)
    so_far = video["options"]["last_frame"]
    assert so_far >= 5
    video = finished(client, admin_headers, video)
    assert video["state"] == "ready" and video["frames"] == so_far
    # The job went on capturing; the render took what there was when it was asked for.
    wait_for(lambda: client.get(job["links"]["self"], headers=admin_headers).json[
        "frames_captured"] > so_far, what="more frames")
    _, path = download(client, admin_headers, video, tmp_path)
    assert ffprobe(path)["frames"] == so_far
    client.patch(job["links"]["self"], headers=admin_headers, json={"state": "cancelled"})


def test_render_on_complete_queues_a_render(make_app, config, admin_headers, tmp_path):
    config["timelapse"] = {"min_interval_s": 0.05, "render_on_complete": True}
    app = make_app(config)
    client = app.test_client()
    job = client.post("/api/v1/timelapses", headers=admin_headers,
                      json={"interval_s": 0.05, "frames": 8, "width": 160, "height": 120}).json

    def rendered():
        items = client.get(f"/api/v1/videos?timelapse={job['id']}", headers=admin_headers).json["items"]
        return items[0] if items and items[0]["state"] == "ready" else None

    video = wait_for(rendered, 30, "the render of the completed job")
    captured = client.get(job["links"]["self"], headers=admin_headers).json["frames_captured"]
    assert video["source"] == "timelapse" and video["frames"] == captured > 0
    _, path = download(client, admin_headers, video, tmp_path)
    assert ffprobe(path)["frames"] == captured


def test_range_requests_etag_and_conditional_get(client, admin_headers, services):
    job = future_job(client, admin_headers)
    add_frames(services, job, range(1, 11))
    video = finished(client, admin_headers, render(client, admin_headers, timelapse=job))
    url = video["links"]["video"]
    whole = client.get(url, headers=admin_headers)
    assert whole.headers["Accept-Ranges"] == "bytes" and whole.headers["ETag"]
    assert whole.headers["Last-Modified"]
    size = len(whole.data)
    for start, end in ((0, 99), (size // 2, size // 2 + 1000), (size - 10, size - 1)):
        part = client.get(url, headers={**admin_headers, "Range": f"bytes={start}-{end}"})
        assert part.status_code == 206
        assert part.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
        assert part.data == whole.data[start:end + 1]
    tail = client.get(url, headers={**admin_headers, "Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.data == whole.data[-16:]
    beyond = client.get(url, headers={**admin_headers, "Range": f"bytes={size + 10}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{size}"
    several = client.get(url, headers={**admin_headers, "Range": "bytes=0-9,20-29"})
    assert several.status_code == 200 and several.data == whole.data
    cached = client.get(url, headers={**admin_headers, "If-None-Match": whole.headers["ETag"]})
    assert cached.status_code == 304
    stale = client.get(url, headers={**admin_headers, "Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.data == whole.data


def test_list_filters_pages_info_and_delete(client, admin_headers, services, viewer_headers):
    job = future_job(client, admin_headers)
    add_frames(services, job, range(1, 4))
    other = future_job(client, admin_headers)
    add_frames(services, other, range(1, 3))
    made = [finished(client, admin_headers, render(client, admin_headers, timelapse=j))
            for j in (job, job, other)]
    listing = client.get("/api/v1/videos?limit=2", headers=viewer_headers).json
    assert [v["id"] for v in listing["items"]] == [made[2]["id"], made[1]["id"]]
    rest = client.get(listing["next"], headers=viewer_headers).json
    assert [v["id"] for v in rest["items"]] == [made[0]["id"]] and rest["next"] is None
    mine = client.get(f"/api/v1/videos?timelapse={job}", headers=viewer_headers).json["items"]
    assert {v["id"] for v in mine} == {made[0]["id"], made[1]["id"]}
    assert client.get("/api/v1/videos?source=clip", headers=viewer_headers).json["items"] == []
    forged = client.get(f"/api/v1/videos?source=clip&cursor={listing['next'].split('cursor=')[1]}",
                        headers=viewer_headers)
    assert_problem(forged, 400)
    counts = client.get("/api/v1/info", headers=viewer_headers).json["counts"]
    assert counts["videos"] == 3 and counts["video_bytes"] == sum(v["bytes"] for v in made)
    assert_problem(client.delete(made[0]["links"]["self"], headers=viewer_headers,
                                content_type="application/json"), 403)
    path = services.videos.store.final_path(services.videos.get(made[0]["id"]))
    assert path.is_file()
    assert client.delete(made[0]["links"]["self"], headers=admin_headers,
                         content_type="application/json").status_code == 204
    assert not path.exists()
    assert_problem(client.get(made[0]["links"]["self"], headers=admin_headers), 404)
    assert client.get("/api/v1/info", headers=viewer_headers).json["counts"]["videos"] == 2


def test_bad_requests_name_the_field(client, admin_headers, services):
    job = future_job(client, admin_headers)
    assert_problem(client.post("/api/v1/videos", headers=admin_headers, json={}), 422)
    for body, field in (({"timelapse": job}, "timelapse"),  # no frames yet
                        ({"timelapse": job, "duration_s": 3}, "duration_s"),
                        ({"timelapse": job, "fps": 0}, "fps"),
                        ({"timelapse": job, "crf": 60}, "crf"),
                        ({"timelapse": job, "width": 321}, "width"),
                        ({"timelapse": job, "first_frame": 5, "last_frame": 2}, "last_frame"),
                        ({"duration_s": 5, "deflicker": 3}, "deflicker"),
                        ({"duration_s": 100_000}, "duration_s"),
                        ({"duration_s": 1000}, "duration_s")):  # above video.max_duration_s
        assert_problem(client.post("/api/v1/videos", headers=admin_headers, json=body), 422, field)
    unknown = {"timelapse": "20260101T000000000000Z-00000000"}
    assert_problem(client.post("/api/v1/videos", headers=admin_headers, json=unknown), 404)
    assert client.get("/api/v1/videos", headers=admin_headers).json["items"] == []


def test_cancel_a_render_keeps_nothing_and_is_idempotent(make_app, config, admin_headers):
    app = make_app(config)
    client, services = app.test_client(), app.extensions["picam"]
    job = future_job(client, admin_headers)
    add_frames(services, job, range(1, 200), size=(640, 480))
    video = render(client, admin_headers, timelapse=job, deflicker=9)
    wait_for(lambda: client.get(video["links"]["self"], headers=admin_headers).json["state"]
             == "rendering", what="the render to start")
    cancelled = client.patch(video["links"]["self"], headers=admin_headers,
                             json={"state": "cancelled"})
    assert cancelled.status_code == 200
    body = finished(client, admin_headers, video)
    assert body["state"] == "cancelled" and body["bytes"] is None
    again = client.patch(video["links"]["self"], headers=admin_headers, json={"state": "cancelled"})
    assert again.status_code == 200 and again.json["state"] == "cancelled"
    assert_problem(client.get(video["links"]["video"], headers=admin_headers), 409)
    assert not list((services.data_dir / "videos").rglob("*.mp4"))
    assert not list((services.data_dir / "videos").rglob("*.tmp"))
    assert_problem(client.patch(video["links"]["self"], headers=admin_headers,
                                json={"state": "ready"}), 422, "state")


def test_the_storage_reserve_refuses_and_stops_renders_leaving_nothing(make_app, config,
                                                                       admin_headers):
    app = make_app(config)
    client, services = app.test_client(), app.extensions["picam"]
    job = future_job(client, admin_headers)
    add_frames(services, job, range(1, 300), size=(640, 480))
    free = services.photos.reserve_bytes
    services.photos.reserve_bytes = 2**62
    assert_problem(client.post("/api/v1/videos", headers=admin_headers, json={"timelapse": job}), 507)
    assert client.get("/api/v1/videos", headers=admin_headers).json["items"] == []
    services.photos.reserve_bytes = free
    video = render(client, admin_headers, timelapse=job, deflicker=5)
    wait_for(lambda: client.get(video["links"]["self"], headers=admin_headers).json["state"]
             == "rendering", what="the render to start")
    services.photos.reserve_bytes = 2**62  # the disk "fills" while it renders
    body = finished(client, admin_headers, video)
    assert body["state"] == "failed" and "reserve" in body["last_error"]
    assert not list((services.data_dir / "videos").rglob("*.mp4"))
    assert not list((services.data_dir / "videos").rglob("*.tmp"))


def test_renders_run_one_at_a_time_at_low_priority_and_capture_keeps_its_schedule(
        make_app, config, admin_headers):
    config["timelapse"] = {"min_interval_s": 0.05}
    app = make_app(config)
    client, services = app.test_client(), app.extensions["picam"]
    job = future_job(client, admin_headers)
    add_frames(services, job, range(1, 150), size=(1280, 720))
    first = render(client, admin_headers, timelapse=job)
    second = render(client, admin_headers, timelapse=job)
    capture = client.post("/api/v1/timelapses", headers=admin_headers,
                          json={"interval_s": 0.25, "frames": 12, "width": 320, "height": 240}).json
    seen_running, nice_values = set(), set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = [client.get(v["links"]["self"], headers=admin_headers).json["state"]
                  for v in (first, second)]
        seen_running.add(states.count("rendering"))
        if "rendering" in states:
            nice_values |= {_nice(tid) for tid in os.listdir("/proc/self/task")}
        if states == ["ready", "ready"]:
            break
        time.sleep(0.05)
    assert seen_running <= {0, 1}  # video.max_concurrent_renders = 1
    assert 19 in nice_values and 0 in nice_values  # the render's threads, and everything else
    assert _nice(str(threading.main_thread().native_id)) == 0
    done = wait_for(lambda: (lambda j: j if j["state"] == "completed" else None)(
        client.get(capture["links"]["self"], headers=admin_headers).json), 20, "the time-lapse")
    assert done["frames_captured"] == 12 and done["frames_missed"] == 0


def _nice(tid: str) -> int:
    try:
        with open(f"/proc/self/task/{tid}/stat") as file:
            stat = file.read()
    except OSError:  # the thread ended meanwhile (ENOENT or ESRCH)
        return 0
    return int(stat[stat.rindex(")") + 2:].split()[16])  # field 19: nice


def test_retention_counts_videos_and_deletes_the_oldest_of_either_kind(make_app, config,
                                                                        admin_headers):
    config["storage"].update(max_videos=2, retention_interval_s=0.05)
    app = make_app(config)
    client, services = app.test_client(), app.extensions["picam"]
    job = future_job(client, admin_headers)
    old_frames = add_frames(services, job, range(1, 6))
    videos = [finished(client, admin_headers, render(client, admin_headers, timelapse=job))
              for _ in range(3)]
    # max_videos = 2: the oldest video goes, the frames stay.
    wait_for(lambda: client.get(videos[0]["links"]["self"], headers=admin_headers).status_code
             == 404, 5, "retention of the oldest video")
    assert client.get("/api/v1/info", headers=admin_headers).json["counts"]["videos"] == 2
    new_frames = add_frames(services, job, range(6, 9))
    # One byte budget for both: what the newest video and frames take. The old frames
    # are older than both videos and go first; then the older remaining video.
    keep = videos[2]["bytes"] + sum(p.bytes for p in new_frames.values())
    services.config["storage"]["max_bytes"] = keep
    wait_for(lambda: client.get(videos[1]["links"]["self"], headers=admin_headers).status_code
             == 404, 5, "retention by bytes")
    assert client.get(videos[2]["links"]["self"], headers=admin_headers).status_code == 200
    left = {p.id for p in services.photos.list(100).items}
    assert left == {p.id for p in new_frames.values()}
    assert not left & {p.id for p in old_frames.values()}
    gone = services.videos.store.final_path(services.videos.get(videos[2]["id"])) \
        .with_name(f"{videos[1]['id']}.mp4")
    wait_for(lambda: not gone.exists(), 5, "its file deleted after its row")
