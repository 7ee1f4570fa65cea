"""Evidence against the real S3 server (versitygw, bucket with object lock), through
the real HTTP API, on SQLite and PostgreSQL.

What tampering means here: a locked version cannot be overwritten or deleted
through S3 (tested below). Two things can still change the bytes a reader
gets, and `verify` must catch both:
* a NEW VERSION put under the content key (S3 allows that on a locked key;
  the locked version stays, but a plain GET now returns the new one), and
* someone with access to the server's disk editing the file behind the S3
  API: we flip one byte in versitygw's posix data directory, where the
  current version of `sha256/ab/cd/<hex>` is a plain file.
"""
from __future__ import annotations

import hashlib
import io
import json
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from scripts import services
from taskforce.evidence.models import CustodyEvent, EvidenceItem
from taskforce.evidence.storage import S3_PART_SIZE, S3Store, get_store, key_for
from taskforce.extensions import db
from tests.factories_investigations import api_caller, ensure_registered, make_case, person
from tests.integration.test_evidence_ingest_pipeline import swept_after_the_server_settles

pytestmark = pytest.mark.integration

RAW = "application/octet-stream"


@pytest.fixture()
def app_environ(app_environ, s3_service):
    return {**app_environ, **s3_service.env()}


@pytest.fixture()
def ev_app(app):
    from taskforce import evidence

    ensure_registered(app)
    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    return app


@pytest.fixture()
def setup(ev_app):
    user, actor = person()
    case_id = make_case(actor)
    return user, actor, case_id, api_caller(ev_app, user)


class Generated(io.RawIOBase):
    """`size` pseudo-random bytes made on the fly (never held whole), hashed as they go.

    `on(offset, fn)` runs fn once when that many bytes have been read.
    """

    def __init__(self, size: int, seed: bytes | None = None):
        self.size, self.sent = size, 0
        self.seed = seed or secrets.token_bytes(16)
        self.sha, self.md5 = hashlib.sha256(), hashlib.md5()
        self.hooks: list[tuple[int, object]] = []

    def on(self, offset: int, fn) -> Generated:
        self.hooks.append((offset, fn))
        return self

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # werkzeug's test client measures the body this way
        return True

    def tell(self) -> int:
        return self.sent

    def seek(self, pos: int, whence: int = 0) -> int:
        self.sent = self.size if whence == 2 else pos
        return self.sent

    def read(self, n: int = -1) -> bytes:
        for offset, fn in list(self.hooks):
            if self.sent >= offset:
                self.hooks.remove((offset, fn))
                fn()
        n = min(n if n and n > 0 else 1 << 20, self.size - self.sent, 1 << 20)
        if n <= 0:
            return b""
        block = hashlib.shake_256(self.seed + self.sent.to_bytes(8, "big")).digest(n)
        self.sent += n
        self.sha.update(block)
        self.md5.update(block)
        return block

    def readinto(self, buffer) -> int:
        block = self.read(len(buffer))
        buffer[:len(block)] = block
        return len(block)


def _post(caller, case_id, body: Generated, query: str = "description=Phone%20extraction"):
    return caller.client.post(f"/api/v1/cases/{case_id}/evidence?{query}", input_stream=body,
                              content_length=body.size,
                              headers={**caller._headers(), "Content-Type": RAW})


def _items() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(EvidenceItem))


def _staging(client, bucket) -> list[str]:
    """Upload keys left behind: old staging objects, blobs no pointer names, and
    multipart uploads never completed or aborted."""
    names = [o.object_name for prefix in ("staging/", "blobs/")
             for o in client.list_objects(bucket, prefix=prefix, recursive=True,
                                          include_version=True)]
    pending = client._list_multipart_uploads(bucket)
    return names + [u.object_name for u in pending.uploads]


@pytest.fixture()
def leftovers(s3_service):
    """Upload keys left behind by this test (the S3 server is shared by the session)."""
    client, bucket = s3_service.client(), s3_service.bucket
    before = set(_staging(client, bucket))
    return lambda: sorted(set(_staging(client, bucket)) - before)


def _read_all(client, bucket, key, version_id=None) -> str:
    digest = hashlib.sha256()
    got = client.get_object(bucket, key, version_id=version_id)
    try:
        for chunk in got.stream(1 << 20):
            digest.update(chunk)
    finally:
        got.close()
        got.release_conn()
    return digest.hexdigest()


@pytest.mark.parametrize("client_hash", [False, True], ids=["no-client-hash", "client-hash"])
def test_streamed_upload_hash_and_retention(ev_app, setup, s3_service, client_hash, leftovers):
    _, _, case_id, caller = setup
    body = Generated(20 * 1024 * 1024 + 12345)  # three 8 MiB buffers
    assert body.size > S3_PART_SIZE
    query = "description=Phone%20extraction"
    if client_hash:
        twin = Generated(body.size, body.seed)  # the same bytes, hashed ahead as a client would
        while twin.read(1 << 20):
            pass
        query += f"&sha256={twin.sha.hexdigest()}"
    resp = _post(caller, case_id, body, query=query)
    assert resp.status_code == 201, resp.get_json()
    item = resp.get_json()
    assert item["sha256"] == body.sha.hexdigest()
    assert item["md5"] == body.md5.hexdigest()
    assert item["size"] == body.size and item["storage_key"] == key_for(item["sha256"])

    client, bucket = s3_service.client(), s3_service.bucket
    stat = client.stat_object(bucket, item["storage_key"])
    data_key, data_version = get_store().data_location(item["sha256"])
    # A raw body declares its length: one streamed PUT to a blob key of its own (with the
    # client's hash too, checked before anything names the blob), a locked pointer under
    # the content key. (Without a length, the content-key path: test_evidence_ingest_pipeline.)
    assert data_key.startswith("blobs/") and stat.size < 1000
    pointer = json.loads(client.get_object(bucket, item["storage_key"]).data)
    assert pointer["sha256"] == item["sha256"] and pointer["blob"] == data_key
    assert not client._list_multipart_uploads(bucket).uploads  # one PUT, no parts
    # the bytes in the store are the bytes sent
    assert _read_all(client, bucket, data_key, data_version) == body.sha.hexdigest()

    # retention set on each object itself, and the server refuses to delete those versions
    from minio.error import S3Error

    for key, version_id in {(item["storage_key"], stat.version_id), (data_key, data_version)}:
        retention = client.get_object_retention(bucket, key, version_id=version_id)
        assert retention.mode == "GOVERNANCE"
        assert retention.retain_until_date > datetime.now(UTC) + timedelta(days=365)
        with pytest.raises(S3Error) as refused:
            client.remove_object(bucket, key, version_id=version_id)
        assert refused.value.code == "AccessDenied"
    left = [k for k in leftovers() if k != data_key]
    assert left == []  # nothing else was left behind

    # download streams it back and appends ACCESSED
    dl = caller.get(item["content_url"])
    assert dl.status_code == 200 and hashlib.sha256(dl.data).hexdigest() == item["sha256"]
    custody = caller.get(f"/api/v1/evidence/{item['id']}").get_json()["custody"]
    assert [e["kind"] for e in custody] == ["COLLECTED", "RECEIVED", "ACCESSED"]
    # one PUT: the MD5 is the store's, as it received the bytes (and equals hashlib's above)
    assert custody[1]["details"]["md5_by"] == "store"


def test_same_bytes_twice_one_object(ev_app, setup, s3_service):
    _, _, case_id, caller = setup
    seed = secrets.token_bytes(16)
    first = _post(caller, case_id, Generated(6 * 1024 * 1024, seed)).get_json()
    second = _post(caller, case_id, Generated(6 * 1024 * 1024, seed)).get_json()
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    client, bucket = s3_service.client(), s3_service.bucket
    versions = [o for o in client.list_objects(bucket, prefix=first["storage_key"],
                                               include_version=True)]
    assert len(versions) == 1  # nothing rewritten
    received = db.session.scalar(select(CustodyEvent).where(CustodyEvent.item_id == second["id"],
                                                            CustodyEvent.kind == "RECEIVED"))
    details = json.loads(received.details)
    assert details["deduplicated"] is True and details["version_id"] == versions[0].version_id


def test_hash_mismatch_leaves_nothing(ev_app, setup, s3_service, leftovers):
    _, _, case_id, caller = setup
    body = Generated(7 * 1024 * 1024)
    resp = _post(caller, case_id, body, query=f"description=x&sha256={'0' * 64}")
    assert resp.status_code == 422
    assert _items() == 0
    assert leftovers() == []
    assert not get_store().exists(body.sha.hexdigest())


def test_upload_aborted_midway_leaves_no_record(ev_app, setup, s3_service, leftovers):
    _, _, case_id, caller = setup

    def drop():
        raise ConnectionResetError("client went away")

    body = Generated(40 * 1024 * 1024).on(20 * 1024 * 1024, drop)  # after one part was sent
    resp = _post(caller, case_id, body)
    assert resp.status_code == 400
    assert _items() == 0
    assert swept_after_the_server_settles(get_store(), leftovers) == set()


def test_store_unreachable_is_503_and_no_record(ev_app, setup):
    _, _, case_id, caller = setup
    port = services.free_port()  # nothing listens there
    ev_app.extensions["evidence_store"] = S3Store(
        endpoint=f"127.0.0.1:{port}", access_key="x", secret_key="y", bucket="evidence",
        connect_timeout=1, retries=0)
    resp = _post(caller, case_id, Generated(1024 * 1024))
    assert resp.status_code == 503
    assert "cannot" in resp.get_json()["error"]["message"]
    assert _items() == 0


def test_store_stopped_during_upload_is_503_and_no_record(ev_app, setup, tmp_path):
    _, _, case_id, caller = setup
    own = services.start_s3(tmp_path / "s3-doomed")  # a server of our own to stop
    try:
        env = own.env()
        ev_app.extensions["evidence_store"] = S3Store(
            endpoint=env["S3_ENDPOINT"], access_key=env["S3_ACCESS_KEY"],
            secret_key=env["S3_SECRET_KEY"], bucket=env["S3_BUCKET"], connect_timeout=1,
            retries=0)
        body = Generated(48 * 1024 * 1024).on(20 * 1024 * 1024, own.stop)
        resp = _post(caller, case_id, body)
        assert resp.status_code == 503, resp.get_json()
        assert "nothing was stored" in resp.get_json()["error"]["message"]
        assert _items() == 0
    finally:
        own.stop()


def _upload_small(caller, case_id) -> dict:
    resp = _post(caller, case_id, Generated(3 * 1024 * 1024))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_flipped_byte_on_the_servers_disk_is_found(ev_app, setup, s3_service):
    _, _, case_id, caller = setup
    item = _upload_small(caller, case_id)
    assert caller.post(f"/api/v1/evidence/{item['id']}/verify").get_json()["ok"] is True

    path = s3_service.workdir / "data" / s3_service.bucket / item["storage_key"]
    assert path.is_file(), "versitygw keeps the current version as a plain file"
    with open(path, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))

    report = caller.post(f"/api/v1/evidence/{item['id']}/verify").get_json()
    assert report["ok"] is False
    assert report["expected_sha256"] == item["sha256"]
    assert report["actual_sha256"] != item["sha256"] and len(report["actual_sha256"]) == 64
    custody = caller.get(f"/api/v1/evidence/{item['id']}").get_json()
    assert custody["item"]["integrity"] == "mismatch"
    assert custody["custody"][-1]["kind"] == "VERIFIED"
    assert custody["custody"][-1]["details"]["actual_sha256"] == report["actual_sha256"]


def test_new_version_under_the_content_key_is_found(ev_app, setup, s3_service):
    _, _, case_id, caller = setup
    item = _upload_small(caller, case_id)
    client, bucket = s3_service.client(), s3_service.bucket
    forged = b"not the evidence"
    client.put_object(bucket, item["storage_key"], io.BytesIO(forged), len(forged))
    report = caller.post(f"/api/v1/evidence/{item['id']}/verify").get_json()
    assert report["ok"] is False
    assert report["actual_sha256"] == hashlib.sha256(forged).hexdigest()


def test_legal_hold_and_retention_through_the_interface(ev_app, setup, s3_service):
    _, _, case_id, caller = setup
    item = _upload_small(caller, case_id)
    store = get_store()
    store.set_legal_hold(item["sha256"], True)
    status = store.lock_status(item["sha256"])
    assert status.legal_hold and status.enforced and status.mode == "GOVERNANCE"
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=4000)
    store.set_retention(item["sha256"], later, "GOVERNANCE")
    assert store.lock_status(item["sha256"]).retain_until == later
    store.set_legal_hold(item["sha256"], False)
    assert not store.lock_status(item["sha256"]).legal_hold


# --- the paths that avoid a server-side copy, and what they leave behind --------------------

def test_large_same_bytes_twice_without_hash_one_pointer_one_blob(ev_app, setup, s3_service, leftovers):
    _, _, case_id, caller = setup
    seed = secrets.token_bytes(16)
    size = 2 * S3_PART_SIZE + 1
    first = _post(caller, case_id, Generated(size, seed)).get_json()
    second = _post(caller, case_id, Generated(size, seed)).get_json()
    assert first["sha256"] == second["sha256"] and first["id"] != second["id"]
    client, bucket = s3_service.client(), s3_service.bucket
    pointers = list(client.list_objects(bucket, prefix=first["storage_key"], include_version=True))
    assert len(pointers) == 1
    data_key, _ = get_store().data_location(first["sha256"])
    assert leftovers() == [data_key]  # the second blob is gone  # the 2nd blob is gone
    dl = caller.get(second["content_url"])
    assert hashlib.sha256(dl.data).hexdigest() == first["sha256"]


def test_large_wrong_client_hash_leaves_nothing(ev_app, setup, s3_service, leftovers):
    _, _, case_id, caller = setup
    body = Generated(2 * S3_PART_SIZE + 5)
    wrong = hashlib.sha256(b"something else").hexdigest()
    resp = _post(caller, case_id, body, query=f"description=x&sha256={wrong}")
    assert resp.status_code == 422
    assert body.sha.hexdigest() in resp.get_json()["error"]["message"]
    assert _items() == 0
    assert leftovers() == []  # the multipart upload was aborted, not completed
    assert not get_store().exists(wrong) and not get_store().exists(body.sha.hexdigest())


def test_large_client_hash_of_stored_bytes_is_deduplicated(ev_app, setup, s3_service):
    _, _, case_id, caller = setup
    seed = secrets.token_bytes(16)
    size = 2 * S3_PART_SIZE + 7
    first = _post(caller, case_id, Generated(size, seed)).get_json()
    resp = _post(caller, case_id, Generated(size, seed),
                 query=f"description=again&sha256={first['sha256']}")
    assert resp.status_code == 201, resp.get_json()
    received = db.session.scalar(select(CustodyEvent).where(
        CustodyEvent.item_id == resp.get_json()["id"], CustodyEvent.kind == "RECEIVED"))
    assert json.loads(received.details)["deduplicated"] is True


def test_remove_orphans_keeps_named_blobs_and_removes_the_rest(ev_app, setup, s3_service, leftovers):
    _, _, case_id, caller = setup
    item = _post(caller, case_id, Generated(2 * S3_PART_SIZE + 3)).get_json()
    store = get_store()
    data_key, data_version = store.data_location(item["sha256"])
    client, bucket = s3_service.client(), s3_service.bucket
    # what a crash between the blob and its pointer leaves: an unlocked blob nobody names
    orphan = f"blobs/19990101/{secrets.token_hex(16)}"
    client.put_object(bucket, orphan, io.BytesIO(b"half an upload"), 14)
    assert store.remove_orphans(older_than=timedelta(hours=1)) == []  # still in its grace
    removed = store.remove_orphans(older_than=timedelta(0))
    assert removed == [orphan]
    assert orphan not in leftovers()
    assert _read_all(client, bucket, data_key, data_version) == item["sha256"]  # kept


def test_flipped_byte_in_a_blob_is_found(ev_app, setup, s3_service):
    _, _, case_id, caller = setup
    item = _post(caller, case_id, Generated(2 * S3_PART_SIZE + 3)).get_json()
    data_key, _ = get_store().data_location(item["sha256"])
    path = s3_service.workdir / "data" / s3_service.bucket / data_key
    assert path.is_file()
    with open(path, "r+b") as f:
        f.seek(12345)
        byte = f.read(1)
        f.seek(12345)
        f.write(bytes([byte[0] ^ 0x01]))
    report = caller.post(f"/api/v1/evidence/{item['id']}/verify").get_json()
    assert report["ok"] is False and report["actual_sha256"] != item["sha256"]
