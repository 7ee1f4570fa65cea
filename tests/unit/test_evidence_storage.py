"""The storage interface on the local folder backend, and the one-pass reader."""
from __future__ import annotations

import hashlib
import io
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from taskforce.errors import Invalid, Unavailable
from taskforce.evidence.service import detect_content_type
from taskforce.evidence.storage import (
    EvidenceStore,
    HashingReader,
    LocalFolderStore,
    ObjectMissing,
    S3Store,
    TooLarge,
    UploadInterrupted,
    hash_chunks,
    key_for,
    store_from_config,
)


class Trickle(io.RawIOBase):
    """Returns at most `step` bytes per read, as a socket does."""

    def __init__(self, data: bytes, step: int = 1000):
        self.data, self.pos, self.step = data, 0, step

    def read(self, n: int = -1) -> bytes:
        n = min(self.step, n if n and n > 0 else self.step)
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def test_both_backends_implement_the_interface(tmp_path):
    assert isinstance(LocalFolderStore(tmp_path), EvidenceStore)
    s3 = S3Store(endpoint="127.0.0.1:9", access_key="a", secret_key="b", bucket="evidence")
    assert isinstance(s3, EvidenceStore)
    assert isinstance(store_from_config({"S3_ENDPOINT": "", "EVIDENCE_DIR": str(tmp_path)}),
                      LocalFolderStore)
    assert isinstance(store_from_config({"S3_ENDPOINT": "127.0.0.1:9", "S3_BUCKET": "b",
                                         "EVIDENCE_DIR": str(tmp_path)}), S3Store)


def test_key_layout():
    h = hashlib.sha256(b"x").hexdigest()
    assert key_for(h) == f"sha256/{h[:2]}/{h[2:4]}/{h}"
    with pytest.raises(Invalid):
        key_for("../../etc/passwd")


def test_reader_returns_whole_parts_and_hashes_once():
    data = secrets.token_bytes(100_000)
    reader = HashingReader(Trickle(data), chunk=4096)
    reader.prime()
    parts = []
    while part := reader.read(30_000):
        parts.append(part)
    assert [len(p) for p in parts] == [30_000, 30_000, 30_000, 10_000]
    assert b"".join(parts) == data
    assert reader.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    assert reader.md5.hexdigest() == hashlib.md5(data).hexdigest()
    assert reader.size == len(data)


@pytest.mark.parametrize("extra, refused", [(0, False), (1, True)])
def test_size_limit_is_exact(tmp_path, extra, refused):
    store = LocalFolderStore(tmp_path)
    data = secrets.token_bytes(50_000 + extra)
    if refused:
        with pytest.raises(TooLarge):
            store.put_stream(Trickle(data, 777), max_bytes=50_000)
        assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    else:
        assert store.put_stream(Trickle(data, 777), max_bytes=50_000).size == 50_000


def test_put_open_exists_and_no_overwrite(tmp_path):
    store = LocalFolderStore(tmp_path)
    data = secrets.token_bytes(20_000)
    first = store.put_stream(io.BytesIO(data))
    assert not first.deduplicated and store.exists(first.sha256)
    path = tmp_path / first.key
    inode = path.stat().st_ino
    second = store.put_stream(io.BytesIO(data))
    assert second.deduplicated and second.key == first.key
    assert path.stat().st_ino == inode  # the file was not replaced
    assert b"".join(store.open_stream(first.sha256)) == data
    assert hash_chunks(store.open_stream(first.sha256)).sha256 == first.sha256
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert not store.exists(missing)
    with pytest.raises(ObjectMissing):
        store.open_stream(missing)


def test_broken_source_is_the_callers_fault(tmp_path):
    class Broken(io.RawIOBase):
        def __init__(self):
            self.calls = 0

        def read(self, n=-1):
            self.calls += 1
            if self.calls > 2:
                raise ConnectionResetError("gone")
            return b"y" * 1000

    with pytest.raises(UploadInterrupted) as interrupted:
        LocalFolderStore(tmp_path).put_stream(Broken())
    assert interrupted.value.status == 400
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_unwritable_folder_is_unavailable(tmp_path):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    with pytest.raises(Unavailable):
        LocalFolderStore(blocker).put_stream(io.BytesIO(b"data"))


def test_local_lock_is_recorded_not_enforced(tmp_path):
    store = LocalFolderStore(tmp_path, retention_days=30)
    stored = store.put_stream(io.BytesIO(b"held"))
    status = store.lock_status(stored.sha256)
    assert status.mode == "GOVERNANCE" and not status.enforced and not status.legal_hold
    assert status.retain_until > datetime.now(UTC) + timedelta(days=29)
    store.set_legal_hold(stored.sha256, True)
    assert store.lock_status(stored.sha256).legal_hold
    earlier = datetime.now(UTC) + timedelta(days=1)
    store.set_retention(stored.sha256, earlier)  # never shortened
    assert store.lock_status(stored.sha256).retain_until > earlier


@pytest.mark.parametrize("head, expected", [
    (b"%PDF-1.7\n%\xe2\xe3", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
    (b"PK\x03\x04\x14\x00", "application/zip"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio/wav"),
    (b"\x00\x00\x00\x18ftypmp42", "video/mp4"),
    (b"EVF\x09\x0d\x0a\xff\x00\x01", "application/x-ewf"),
    (b"SQLite format 3\x00", "application/vnd.sqlite3"),
    ("Call log 2024-01-01, caf\u00e9\n".encode(), "text/plain"),
    (b"\x00\x01\x02\x03garbage", "application/octet-stream"),
])
def test_content_type_from_the_bytes(head, expected):
    assert detect_content_type(head) == expected


def test_orphaned_staging_files_removed_after_their_grace(tmp_path):
    import os
    import time

    store = LocalFolderStore(tmp_path)
    store.put_stream(io.BytesIO(b"kept"))
    store.staging.mkdir(parents=True, exist_ok=True)
    old, fresh = store.staging / "upload-old", store.staging / "upload-new"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    assert store.remove_orphans(older_than=timedelta(minutes=30)) == ["staging/upload-old"]
    assert fresh.exists() and not old.exists()
    assert store.exists(hashlib.sha256(b"kept").hexdigest())


def test_payload_signing_skipped_only_where_no_one_can_sit_between():
    from minio import Minio

    from taskforce.evidence import storage

    assert storage._is_loopback("127.0.0.1:9000") and storage._is_loopback("localhost:9000")
    assert not storage._is_loopback("minio.internal:9000")
    local = S3Store(endpoint="127.0.0.1:9", access_key="a", secret_key="b", bucket="e")
    remote = S3Store(endpoint="minio.internal:9", access_key="a", secret_key="b", bucket="e")
    assert type(local.client) is not Minio and type(remote.client) is Minio
    creds = local.client._provider.retrieve()
    headers, _ = local.client._build_headers("h", {}, b"x" * (2 * 1024 * 1024), creds)
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert headers["Content-Length"] == str(2 * 1024 * 1024)
    small, _ = local.client._build_headers("h", {}, b"<xml/>", creds)
    assert small["x-amz-content-sha256"] == hashlib.sha256(b"<xml/>").hexdigest()
    signed, _ = remote.client._build_headers("h", {}, b"x" * (2 * 1024 * 1024), creds)
    assert signed["x-amz-content-sha256"] == hashlib.sha256(b"x" * (2 * 1024 * 1024)).hexdigest()
