"""The S3 upload pipeline against the real S3 server (versitygw): many more parts than
part buffers, so every buffer is reused while other parts are still being hashed or
sent, from an input that reads into our buffers (readinto) and from one that only has
read(). What is stored, and the hashes recorded, must be the bytes sent."""
from __future__ import annotations

import hashlib
import io
import secrets

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


def test_input_breaking_off_midway_stores_nothing(store, s3_service):
    class BreaksOff(io.RawIOBase):
        def __init__(self):
            self.sent = 0

        def readinto(self, buffer) -> int:
            if self.sent > 4 * PART:
                raise ConnectionResetError("client gone")
            n = min(len(buffer), 1 << 20)
            buffer[:n] = b"z" * n
            self.sent += n
            return n

    client = s3_service.client()
    pending = {u.upload_id for u in client._list_multipart_uploads(s3_service.bucket).uploads}
    with pytest.raises(UploadInterrupted):
        store.put_stream(BreaksOff())
    after = {u.upload_id for u in client._list_multipart_uploads(s3_service.bucket).uploads}
    assert after <= pending  # the multipart upload was aborted
