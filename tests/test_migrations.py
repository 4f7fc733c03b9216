"""Upgrades keep data: a database made by the first release opens with this code."""
from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from pathlib import Path

import pytest
from PIL import Image
from werkzeug.security import generate_password_hash

from conftest import basic
from picam_api.db import MIGRATIONS, Database, SchemaTooNew

PASSWORD = "first-release-password"
TOKEN = "a-token-issued-by-the-first-release-0123456789abcdef"
PHOTO_ID = "20250102T030405000006Z-0a1b2c3d"


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 120, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


JPEG = _jpeg()


@pytest.fixture
def first_release_data(tmp_path) -> Path:
    """A data dir as the first release (schema version 1) left it: a user, a
    token and a photo with its file."""
    data_dir = tmp_path / "data"
    relative = Path("photos", "2025", "01", "02", f"{PHOTO_ID}.jpg")
    (data_dir / relative).parent.mkdir(parents=True)
    (data_dir / relative).write_bytes(JPEG)
    conn = sqlite3.connect(data_dir / "picam.db", isolation_level=None)
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO users VALUES ('alice', 'operator', ?, '2025-01-01T00:00:00+00:00')",
                 (generate_password_hash(PASSWORD),))
    conn.execute("INSERT INTO tokens VALUES (?, 'alice', 1735689600.0, 4102444800.0)",
                 (hashlib.sha256(TOKEN.encode()).hexdigest(),))
    conn.execute(
        "INSERT INTO photos VALUES (?, '2025-01-02T03:04:05.000006Z', ?, 32, 24, 'jpeg', ?, ?, ?, ?, "
        "'api', NULL, NULL, NULL)",
        (PHOTO_ID, str(relative), len(JPEG), hashlib.sha256(JPEG).hexdigest()[:32],
         json.dumps({"width": 32, "height": 24, "format": "jpeg", "quality": 90, "hflip": False,
                     "vflip": False, "controls": {}}),
         json.dumps({"FrameNumber": 1})))
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    return data_dir


def test_first_release_database_opens_with_everything_in_it(make_app, config, first_release_data):
    config["storage"]["data_dir"] = str(first_release_data)
    client = make_app(config).test_client()
    alice = basic("alice", PASSWORD)

    photos = client.get("/api/v1/photos", headers=alice)
    assert photos.status_code == 200, photos.json
    assert [p["id"] for p in photos.json["items"]] == [PHOTO_ID]
    photo = photos.json["items"][0]
    assert photo["taken_at"] == "2025-01-02T03:04:05.000006Z"
    assert photo["source"] == "api" and photo["timelapse_id"] is None
    image = client.get(photo["links"]["image"], headers=alice)
    assert image.status_code == 200 and image.data == JPEG
    assert client.get(photo["links"]["thumbnail"], headers=alice).status_code == 200

    # The token the first release issued still works, and alice may still act.
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/v1/info", headers=bearer).status_code == 200
    assert client.post("/api/v1/photos", headers=bearer, json={"width": 64, "height": 48}
                       ).status_code == 201
    # No admin was made beside the existing user.
    assert client.get("/api/v1/info", headers=basic("admin", "anything")).status_code == 401

    # The newer tables are there and work.
    assert client.get("/api/v1/timelapses", headers=alice).json["items"] == []
    assert _schema_version(first_release_data) == len(MIGRATIONS)


def test_migration_is_idempotent_and_refuses_a_newer_schema(first_release_data):
    db = Database(first_release_data / "picam.db")
    try:
        assert db.migrate() == len(MIGRATIONS)
        assert db.migrate() == len(MIGRATIONS)
        db.conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
        with pytest.raises(SchemaTooNew):
            db.migrate()
    finally:
        db.close()


def _schema_version(data_dir: Path) -> int:
    conn = sqlite3.connect(data_dir / "picam.db")
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()
