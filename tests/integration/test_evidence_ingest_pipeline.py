"""The S3 upload pipeline against the real S3 server (versitygw): many more parts than
part buffers, so every buffer is reused while other parts are still being hashed or
sent, from an input that reads into our buffers (readinto) and from one that only has
read(); multipart (no declared length) and one streamed PUT (a declared length). What
is stored, and the hashes recorded, must be the bytes sent; an upload that fails leaves
nothing that the integrity sweep would not remove."""
from __future__ import annotations

import hashlib
import io
import secrets
import time
from datetime import timedelta

import pytest

from taskforce.evidence import storage
from taskforce.evidence.storage import S3Store, UploadInterrupted
from tests.unit.test_evidence_storage import Trickle

pytestmark = pytest.mark.integration

PART = 5 * 1024 * 1024  # the smallest S3 part: more parts for the same bytes


def ReadOnly(data: bytes) -> Trickle:  # named as the stream class it stands for
    """Only read(), and short reads, as a socket without readinto would give."""
    return Trickle(data, step=700_001)


@pytest.fixture()
def store(s3_service):
    return S3Store(endpoint=s3_service.endpoint, access_key=s3_service.access_key,
                   secret_key=s3_service.secret_key, bucket=s3_service.bucket,
                   part_size=PART, parallel_parts=2)


@pytest.fixture()
def buffers_made(monkeypatch):
    """How many part buffers each upload made (the pipeline's memory bound)."""
    made: list[int] = []
    real = storage._PartBuffers

    class Counting(real):
        def __init__(self, size, count):
            super().__init__(size, count)
            made.append(0)

        def get(self):
            buffer = super().get()
            made[-1] = len(self._made)
            return buffer

    monkeypatch.setattr(storage, "_PartBuffers", Counting)
    return made


def _read_back(store: S3Store, sha256: str) -> bytes:
    return b"".join(store.open_stream(sha256))


@pytest.mark.parametrize("source", [io.BytesIO, ReadOnly], ids=["readinto", "read-only"])
@pytest.mark.parametrize("client_hash", [False, True], ids=["blob", "content-key"])
def test_many_parts_through_few_buffers(store, buffers_made, source, client_hash):
    data = secrets.token_bytes(9 * PART + 4321)  # ten parts, three buffers
    sha256 = hashlib.sha256(data).hexdigest()
    stored = store.put_stream(source(data), expected_sha256=sha256 if client_hash else None)
    assert stored.sha256 == sha256
    assert stored.md5 == hashlib.md5(data).hexdigest()
    assert stored.size == len(data) and stored.head == data[:storage.HEAD_BYTES]
    assert buffers_made == [3]  # parallel_parts + 1, reused for the other seven parts
    assert hashlib.sha256(_read_back(store, sha256)).hexdigest() == sha256


def test_exactly_one_part_and_one_byte_more(store):
    for size in (PART, PART + 1):
        data = secrets.token_bytes(size)
        stored = store.put_stream(io.BytesIO(data))
        assert (stored.sha256, stored.md5, stored.size) == (
            hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest(), size)
        assert _read_back(store, stored.sha256) == data


class BreaksOff(io.RawIOBase):
    """An input whose sender goes away after four parts."""

    def __init__(self):
        self.sent = 0

    def readinto(self, buffer) -> int:
        if self.sent > 4 * PART:
            raise ConnectionResetError("client gone")
        n = min(len(buffer), 1 << 20)
        buffer[:n] = b"z" * n
        self.sent += n
        return n


@pytest.mark.parametrize("length", [None, 10 * PART], ids=["multipart", "one-put"])
def test_input_breaking_off_midway_stores_nothing(store, s3_service, length):
    before, uploads = _blobs(s3_service), _uploads(s3_service)
    with pytest.raises(UploadInterrupted):
        store.put_stream(BreaksOff(), length=length)
    assert _uploads(s3_service) <= uploads  # a multipart upload was aborted
    assert swept_after_the_server_settles(store, lambda: _blobs(s3_service)) <= before


# --- a declared length (a raw request body's Content-Length): one streamed PUT ----------

def _blobs(s3_service) -> set[str]:
    client = s3_service.client()
    return {f"{o.object_name}@{o.version_id}" for o in client.list_objects(
        s3_service.bucket, prefix=storage.BLOB_PREFIX, recursive=True, include_version=True)}


def _uploads(s3_service) -> set[str]:
    return {u.upload_id for u in
            s3_service.client()._list_multipart_uploads(s3_service.bucket).uploads or []}


@pytest.mark.parametrize("source", [io.BytesIO, ReadOnly], ids=["readinto", "read-only"])
def test_declared_length_goes_as_one_put(store, s3_service, buffers_made, source,
                                         monkeypatch):
    data = secrets.token_bytes(9 * PART + 4321)
    sha256 = hashlib.sha256(data).hexdigest()
    started = []
    real = store.client._create_multipart_upload
    monkeypatch.setattr(store.client, "_create_multipart_upload",
                        lambda *a, **k: started.append(a) or real(*a, **k))
    stored = store.put_stream(source(data), length=len(data))
    assert started == []  # no parts: one request
    assert (stored.sha256, stored.md5, stored.size) == (
        sha256, hashlib.md5(data).hexdigest(), len(data))
    assert stored.data_key and stored.data_key.startswith(storage.BLOB_PREFIX)
    assert buffers_made == [3]  # the same memory bound as the parts
    assert _read_back(store, sha256) == data
    status = store.lock_status(sha256)
    assert status.retain_until is not None  # the blob and its pointer are locked


@pytest.mark.parametrize("declared", [10 * PART, 8 * PART], ids=["fewer-bytes", "more-bytes"])
def test_bytes_not_matching_the_declared_length_store_nothing(store, s3_service, declared):
    data = secrets.token_bytes(9 * PART)
    before = _blobs(s3_service)
    with pytest.raises(storage.Invalid, match="declared"):
        store.put_stream(io.BytesIO(data), length=declared)
    # (more bytes: found before the server had all it was told of, so it has no whole
    # object; what versitygw keeps of a request cut short is an orphan, swept)
    assert swept_after_the_server_settles(store, lambda: _blobs(s3_service)) <= before
    assert not store.exists(hashlib.sha256(data).hexdigest())


def test_declared_length_with_a_wrong_client_hash_stores_nothing(store, s3_service):
    data = secrets.token_bytes(3 * PART + 1)
    before = _blobs(s3_service)
    with pytest.raises(storage.Invalid, match="do not match"):
        store.put_stream(io.BytesIO(data), expected_sha256="0" * 64, length=len(data))
    assert _blobs(s3_service) == before  # the blob was written, then removed
    assert not store.exists(hashlib.sha256(data).hexdigest())


def _etag_of_blob_puts(store, monkeypatch, **headers):
    """Rewrite the headers of the answer to the blob's PUT (as the server would send them)."""
    real = store.client._execute

    def execute(method, *args, **kw):
        response = real(method, *args, **kw)
        key = args[1] if len(args) > 1 else kw.get("object_name") or ""
        if method == "PUT" and key.startswith(storage.BLOB_PREFIX):
            for name, value in headers.items():
                response.headers[name] = value
        return response

    monkeypatch.setattr(store.client, "_execute", execute)


def test_a_whole_put_takes_its_md5_from_the_store(store, monkeypatch):
    """One PUT: the MD5 recorded is the server's (its ETag), not computed here again."""
    data = secrets.token_bytes(2 * PART + 99)
    _etag_of_blob_puts(store, monkeypatch, ETag='"' + "0" * 32 + '"')
    stored = store.put_stream(io.BytesIO(data), length=len(data))
    assert (stored.md5, stored.md5_by) == ("0" * 32, "store")  # what the server said
    assert stored.sha256 == hashlib.sha256(data).hexdigest()  # always ours


def test_an_etag_that_is_no_md5_has_the_md5_read_back(store, monkeypatch):
    data = secrets.token_bytes(2 * PART + 99)
    _etag_of_blob_puts(store, monkeypatch, ETag='"' + "ab" * 16 + '"',
                       **{"x-amz-server-side-encryption": "aws:kms"})
    stored = store.put_stream(io.BytesIO(data), length=len(data))
    assert (stored.md5, stored.md5_by) == (hashlib.md5(data).hexdigest(), "taskforce")


def test_which_etags_are_md5s():
    assert storage._md5_of_etag({"ETag": '"' + "ab" * 16 + '"'}) == "ab" * 16
    assert storage._md5_of_etag({"ETag": '"' + "ab" * 16 + '-3"'}) is None  # multipart
    assert storage._md5_of_etag({"ETag": '"' + "ab" * 16 + '"',
                                 "x-amz-server-side-encryption": "aws:kms"}) is None


def swept_after_the_server_settles(store, blobs) -> set[str]:
    """Blobs left once the server has finished with a dropped request (versitygw stores a
    PUT cut short, truncated; MinIO refuses it) and remove_orphans has run: a blob named
    by no pointer, never locked, is removed by the integrity sweep."""
    seen, stable_since = blobs(), time.monotonic()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and time.monotonic() - stable_since < 1.0:
        time.sleep(0.1)
        if (now := blobs()) != seen:
            seen, stable_since = now, time.monotonic()
    store.remove_orphans(older_than=timedelta(0))
    return set(blobs())
