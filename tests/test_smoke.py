import datetime as dt
import re


def test_health_is_public_and_ok(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json["status"] == "ok"


def test_health_gives_the_last_capture_time_in_iso_8601(client, admin_headers):
    assert client.get("/api/v1/health").json["camera"]["last_capture_at"] is None
    before = dt.datetime.now(dt.timezone.utc)
    assert client.get("/api/v1/snapshot.jpg", headers=admin_headers).status_code == 200
    stamp = client.get("/api/v1/health").json["camera"]["last_capture_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), stamp
    assert dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")) >= before - dt.timedelta(seconds=1)
