"""Where evidence bytes live: one interface, two backends.

Objects are stored under their SHA-256 (`sha256/ab/cd/<hex>`), written once
and never overwritten. `put_stream` reads its input once, in chunks, and
computes SHA-256 and MD5 in that same pass while it sends the bytes on, in
constant memory whatever the size (for a single S3 PUT the MD5 is the one the
store computes as the bytes arrive, its ETag):

* `LocalFolderStore` (EVIDENCE_DIR, the embedded default): a temp file in the
  same filesystem, fsync, then a hard link to the content path (atomic, fails
  if the path exists, so no overwrite and no copy).
* `S3Store` (MinIO, or any S3 server with object lock): no server-side copy.
  Small uploads go straight to the content key; larger ones of a declared
  length go as one PUT to a blob key of their own and the content key gets a
  small locked pointer to it; of unknown length, multipart (see the class).

Either way a failure midway (client gone, storage error, hash mismatch)
leaves nothing behind, and an unreachable store is `errors.Unavailable` (503).
Nothing here knows about cases, users or the database.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import mmap
import os
import queue
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from werkzeug.exceptions import ClientDisconnected

from taskforce.errors import DomainError, Invalid, Unavailable

CHUNK = 8 * 1024 * 1024  # read and hash this much at a time
HEAD_BYTES = 8192  # kept from the start of the stream to detect the content type
ASYNC_HASH_MIN = 1024 * 1024  # smaller inputs are hashed inline (no threads)
S3_PART_SIZE = 8 * 1024 * 1024  # multipart part size (S3 wants >= 5 MiB)
S3_PARALLEL_PARTS = 3  # parts in flight at once: memory is at most (this + 1) x part size
S3_WHOLE_PUT_MAX = 5 * 1024**3  # S3's limit for one PUT: a larger upload goes in parts
BLOB_PREFIX = "blobs/"  # large uploads without a client hash land here (see S3Store)
STAGING_PREFIX = "staging/"  # the earlier design's upload keys: only swept now
POINTER_META = "taskforce-blob"  # x-amz-meta-taskforce-blob(-version): a pointer's target
ORPHAN_GRACE = timedelta(hours=24)  # an unlocked upload this old, named by nothing, is removed
RETENTION_MODES = ("GOVERNANCE", "COMPLIANCE")
DEFAULT_RETENTION_DAYS = 3650
DEFAULT_RETENTION_MODE = "GOVERNANCE"
DEFAULT_MAX_BYTES = 64 * 1024**3
_HEX = frozenset("0123456789abcdef")


class TooLarge(DomainError):
    """More bytes than the configured limit (413)."""

    status, code = 413, "too_large"


class UploadInterrupted(DomainError):
    """The input broke off before its end (the client went away): nothing is stored."""

    status, code = 400, "upload_interrupted"


class ObjectMissing(Unavailable):
    """A record names bytes that the store does not have: an integrity alarm, not a retry."""

    code = "object_missing"


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    md5: str
    size: int
    key: str
    deduplicated: bool  # the same bytes were already stored; nothing was written
    backend: str = ""
    version_id: str | None = None  # S3: the version under the content key
    head: bytes = field(default=b"", repr=False)  # the first bytes, for content-type detection
    data_key: str | None = None  # S3: the blob holding the bytes when `key` is a pointer
    md5_by: str = "taskforce"  # who computed the MD5: "store" when it is a single PUT's ETag


@dataclass(frozen=True)
class LockStatus:
    """What the store says about an object's lock."""

    retain_until: datetime | None
    mode: str | None
    legal_hold: bool
    enforced: bool  # False for the local folder: recorded, not enforceable


@runtime_checkable
class EvidenceStore(Protocol):
    name: str

    def put_stream(self, stream: BinaryIO, *, expected_sha256: str | None = None,
                   max_bytes: int | None = None, length: int | None = None) -> StoredObject: ...

    def open_stream(self, sha256: str) -> Iterator[bytes]: ...

    def exists(self, sha256: str) -> bool: ...

    def set_retention(self, sha256: str, until: datetime, mode: str = DEFAULT_RETENTION_MODE
                      ) -> None: ...

    def set_legal_hold(self, sha256: str, on: bool) -> None: ...

    def lock_status(self, sha256: str) -> LockStatus: ...

    def remove_orphans(self, *, older_than: timedelta = ...) -> list[str]: ...


def key_for(sha256: str) -> str:
    """The content key: `sha256/ab/cd/<hex>`."""
    sha256 = check_sha256(sha256)
    return f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def check_sha256(value: str, *, field_name: str = "sha256") -> str:
    """A SHA-256 as 64 lowercase hex digits, or Invalid."""
    text = (value or "").strip().lower()
    if len(text) != 64 or not set(text) <= _HEX:
        raise Invalid("A SHA-256 is 64 hexadecimal digits.",
                      fields={field_name: ["Must be 64 hexadecimal digits."]})
    return text


# --- the one pass over the input ----------------------------------------------------------

class _Hashes:
    """SHA-256 and MD5 of a sequence of buffers, each hash on a thread of its own.

    `add` returns at once: the caller reads the next buffer (or sends this one)
    while both hashes take this one (hashlib releases the GIL on large
    buffers), so a pass costs the slowest of reading, MD5 and sending, not
    their sum. At most `depth` buffers wait to be hashed (then `add` blocks):
    memory stays bounded when the input is faster than MD5. `on_hashed` is
    called once both hashes have taken a buffer, which may then be reused.
    Small inputs are hashed inline: no thread is started for them.
    """

    def __init__(self, depth: int = 2, *, md5: bool = True):
        self.sha256: Any = hashlib.sha256()
        self.md5: Any = hashlib.md5(usedforsecurity=False) if md5 else None
        self._digests = [d for d in (self.sha256, self.md5) if d is not None]
        self._depth = depth
        self._jobs: list[queue.SimpleQueue] = []
        self._pending = 0  # buffers queued and not yet taken by both hashes
        self._done = threading.Condition()
        self._error: BaseException | None = None

    def add(self, data: Any, on_hashed: Callable[[], None] | None = None) -> None:
        if not self._jobs and len(data) < ASYNC_HASH_MIN:
            for digest in self._digests:
                digest.update(data)
            if on_hashed is not None:
                on_hashed()
            return
        if not self._jobs:
            self._start()
        with self._done:
            while self._pending >= self._depth:
                self._done.wait()
            self._pending += 1
        job = _Countdown(len(self._digests), on_hashed)
        for jobs in self._jobs:
            jobs.put((data, job))

    def _start(self) -> None:
        for digest in self._digests:
            jobs: queue.SimpleQueue = queue.SimpleQueue()
            self._jobs.append(jobs)
            threading.Thread(target=self._run, args=(digest, jobs), daemon=True,
                             name="evidence-hash").start()

    def _run(self, digest: Any, jobs: queue.SimpleQueue) -> None:
        while (item := jobs.get()) is not None:
            data, job = item
            try:
                digest.update(data)
            except BaseException as e:  # noqa: BLE001  (MemoryError: reported by wait)
                self._error = e
            if job.release():
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()

    def wait(self) -> None:
        """Until every buffer added so far is in both hashes."""
        with self._done:
            while self._pending:
                self._done.wait()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop the threads (after the buffers already queued)."""
        for jobs in self._jobs:
            jobs.put(None)
        self._jobs = []


class _Countdown:
    """Runs `then` when released `count` times (from any thread); release() says
    whether this call was the last."""

    def __init__(self, count: int, then: Callable[[], None] | None = None):
        self._left = count
        self._then = then
        self._lock = threading.Lock()

    def release(self) -> bool:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last and self._then is not None:
            self._then()
        return last


def _reads_into(source: Any) -> bool:
    """Whether `source.readinto` is its real way of reading (werkzeug's request
    stream, files, BytesIO): then bytes land in our buffers with no copy. Not
    for a class that overrides read() below an inherited, abstract readinto."""
    mro = type(source).__mro__

    def owner(name: str) -> int | None:
        return next((i for i, cls in enumerate(mro) if name in vars(cls)), None)

    into, read = owner("readinto"), owner("read")
    if into is None or mro[into] is io.RawIOBase.__mro__[1]:  # _io._RawIOBase: abstract
        return False
    return read is None or into <= read


class HashingReader:
    """Wraps the input: every byte read through it is counted and hashed once.

    Two ways to read, not to be mixed:

    * `fill(buffer)` fills a caller's buffer (with `readinto` where the input
      has a real one: no copy, no new memory), for the S3 parts;
    * `read(n)` returns up to n bytes (fewer only at the end), so a consumer
      that asks for a whole part gets one.

    SHA-256 and MD5 are computed on two threads of their own while the next
    bytes are read (`_Hashes`); `sha256` and `md5` wait for them. With
    md5=False only SHA-256 (`md5` is None): the store computes the MD5.

    An exception raised by the input (client disconnected, the request body
    over its limit) is kept in `source_error`, so the store can tell the
    caller's fault from its own. `close()` stops the hashing threads.
    """

    def __init__(self, source: Any, *, max_bytes: int | None = None, chunk: int = CHUNK,
                 md5: bool = True):
        if not callable(getattr(source, "read", None)):
            raise TypeError("the evidence stream must have read()")
        self._source = source
        self._into = _reads_into(source)
        self._max = max_bytes
        self._chunk = chunk
        self._pending = b""
        self._pulled = 0  # bytes taken from the source so far (hashed or not yet)
        self._eof = False
        self._hashes = _Hashes(md5=md5)
        self.size = 0
        self.head = b""
        self.source_error: BaseException | None = None

    @property
    def sha256(self) -> Any:
        self._hashes.wait()
        return self._hashes.sha256

    @property
    def md5(self) -> Any:
        self._hashes.wait()
        return self._hashes.md5

    def close(self) -> None:
        self._hashes.close()

    def prime(self) -> bytes:
        """Read the first chunk before anything is written: an empty input is
        refused, and the first bytes are known (content type) up front."""
        first = self._pull(self._chunk)
        if not first:
            raise Invalid("The upload is empty: there are no bytes to store.",
                          fields={"file": ["Empty."]})
        self._pending = first
        return first[:HEAD_BYTES]

    def _interrupted(self, e: BaseException) -> BaseException:
        """The input's exception as the caller's fault (kept in source_error)."""
        if isinstance(e, OSError | ClientDisconnected):  # the caller's side broke
            err: BaseException = UploadInterrupted(
                "The upload broke off before all the bytes arrived "
                f"({self._pulled:,} bytes read); nothing was stored.")
        else:  # werkzeug's 413, ...
            err = e
        self.source_error = err
        return err

    def _count(self, n: int) -> None:
        self._pulled += n
        if self._max is not None and self._pulled > self._max:
            err = TooLarge(f"The upload is larger than the limit of {self._max:,} bytes.")
            self.source_error = err
            raise err

    def _pull(self, n: int) -> bytes:
        if self._eof:
            return b""
        try:
            data = self._source.read(n)
        except BaseException as e:
            err = self._interrupted(e)
            if err is e:
                raise
            raise err from e
        if not data:
            self._eof = True
            return b""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("the evidence stream must return bytes")
        data = bytes(data)
        self._count(len(data))
        return data

    def _pull_into(self, view: memoryview) -> int:
        if self._eof:
            return 0
        if not self._into:
            data = self._pull(len(view))
            view[:len(data)] = data
            return len(data)
        try:
            n = self._source.readinto(view)
        except BaseException as e:
            err = self._interrupted(e)
            if err is e:
                raise
            raise err from e
        if not n:
            self._eof = True
            return 0
        self._count(n)
        return n

    def fill(self, buffer: Any, on_hashed: Callable[[], None] | None = None) -> int:
        """Fill `buffer` from the input (whole, unless the input ends first) and
        hash it; returns the number of bytes. `on_hashed` is called once the
        hashes are done with them (at once if there are none)."""
        if self._pending:
            raise RuntimeError("fill() after prime() or read()")
        view = memoryview(buffer).cast("B")
        n = 0
        while n < len(view):
            got = self._pull_into(view[n:])
            if not got:
                break
            n += got
        if n:
            self._hash(view[:n], on_hashed)
        elif on_hashed is not None:
            on_hashed()
        return n

    def read(self, n: int = -1) -> bytes:
        want = self._chunk if n is None or n < 0 else n
        parts: list[bytes] = []
        have = 0
        if self._pending:
            parts.append(self._pending[:want])
            self._pending = self._pending[want:]
            have = len(parts[0])
        while have < want:
            data = self._pull(min(want - have, self._chunk))
            if not data:
                break
            parts.append(data)
            have += len(data)
        out = parts[0] if len(parts) == 1 else b"".join(parts)
        if out:
            self._hash(out)
        return out

    def _hash(self, data: Any, on_hashed: Callable[[], None] | None = None) -> None:
        if not self.size:
            self.head = bytes(data[:HEAD_BYTES])
        self.size += len(data)
        self._hashes.add(data, on_hashed)

    def drain(self) -> None:
        """Read (and hash) to the end."""
        while self.read(self._chunk):
            pass

    def check(self, expected_sha256: str | None) -> None:
        if expected_sha256 is None:
            return
        actual = self.sha256.hexdigest()
        if actual != expected_sha256:
            raise Invalid(
                "The bytes received do not match the SHA-256 you sent: nothing was stored. "
                f"Expected {expected_sha256}, received {actual} ({self.size:,} bytes).",
                fields={"sha256": [f"Expected {expected_sha256}, got {actual}."]})


@dataclass(frozen=True)
class Digest:
    sha256: str
    md5: str
    size: int


def hash_chunks(chunks: Iterator[bytes]) -> Digest:
    """SHA-256, MD5 and size of a stream of chunks, in one pass (closes the iterator):
    the hashes run on threads of their own while the next chunk is read."""
    hashes, size = _Hashes(), 0
    try:
        for chunk in chunks:
            hashes.add(chunk)
            size += len(chunk)
        hashes.wait()
    finally:
        hashes.close()
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return Digest(hashes.sha256.hexdigest(), hashes.md5.hexdigest(), size)


def _expected(value: str | None) -> str | None:
    return None if value in (None, "") else check_sha256(value, field_name="sha256")


# --- local folder -------------------------------------------------------------------------

class LocalFolderStore:
    """Objects as read-only files under `root/sha256/ab/cd/<hex>`.

    Retention and legal hold are RECORDED (a JSON file beside the object,
    under `root/locks/`) but not enforced: anyone with write access to the
    folder can delete a file. Production uses S3 with object lock.
    """

    name = "local"

    def __init__(self, root: str | os.PathLike[str], *,
                 retention_days: int = DEFAULT_RETENTION_DAYS,
                 retention_mode: str = DEFAULT_RETENTION_MODE):
        _check_mode(retention_mode)
        self.root = Path(root)
        self.staging = self.root / "staging"
        self.retention_days = retention_days
        self.retention_mode = retention_mode

    def _path(self, sha256: str) -> Path:
        return self.root / key_for(sha256)

    def put_stream(self, stream: BinaryIO, *, expected_sha256: str | None = None,
                   max_bytes: int | None = None, length: int | None = None) -> StoredObject:
        """`length`, the declared size, changes nothing here: the bytes go to a file."""
        expected = _expected(expected_sha256)
        reader = HashingReader(stream, max_bytes=max_bytes)
        try:
            return self._put(reader, expected)
        finally:
            reader.close()

    def _put(self, reader: HashingReader, expected: str | None) -> StoredObject:
        reader.prime()  # an empty body is refused before anything is created
        try:
            self.staging.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix="upload-", dir=self.staging)
        except OSError as e:
            raise Unavailable(f"The evidence folder cannot be written: {e.strerror}.") from e
        tmp = Path(tmp_name)
        try:
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := reader.read(CHUNK):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as e:
                if reader.source_error is not None:
                    raise
                raise Unavailable(f"The evidence folder cannot be written: {e.strerror}.") from e
            reader.check(expected)
            sha256 = reader.sha256.hexdigest()
            final = self._path(sha256)
            try:
                os.chmod(tmp, 0o444)
                final.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(tmp, final)  # atomic; refuses to replace an existing file
                    deduplicated = False
                    _fsync_dir(final.parent)
                except FileExistsError:
                    deduplicated = True
            except OSError as e:
                raise Unavailable(f"The evidence folder cannot be written: {e.strerror}.") from e
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        with contextlib.suppress(OSError):  # a record, not a lock: see the class docstring
            self.set_retention(sha256, datetime.now(UTC) + timedelta(days=self.retention_days),
                               self.retention_mode)
        return StoredObject(sha256=sha256, md5=reader.md5.hexdigest(), size=reader.size,
                            key=key_for(sha256), deduplicated=deduplicated, backend=self.name,
                            head=reader.head)

    def open_stream(self, sha256: str) -> Iterator[bytes]:
        path = self._path(sha256)
        try:
            f = open(path, "rb")  # noqa: SIM115  (closed by the generator)
        except FileNotFoundError as e:
            raise ObjectMissing(f"The stored bytes of {key_for(sha256)} are missing.") from e
        except OSError as e:
            raise Unavailable(f"The evidence folder cannot be read: {e.strerror}.") from e
        return _file_chunks(f)

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def _lock_file(self, sha256: str) -> Path:
        return self.root / "locks" / f"{check_sha256(sha256)}.json"

    def _read_lock(self, sha256: str) -> dict[str, Any]:
        try:
            return json.loads(self._lock_file(sha256).read_text())
        except (OSError, ValueError):
            return {}

    def _write_lock(self, sha256: str, doc: dict[str, Any]) -> None:
        path = self._lock_file(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        tmp.write_text(json.dumps(doc, sort_keys=True))
        os.replace(tmp, path)

    def set_retention(self, sha256: str, until: datetime,
                      mode: str = DEFAULT_RETENTION_MODE) -> None:
        _check_mode(mode)
        doc = self._read_lock(sha256)
        current = doc.get("retain_until")
        if current and datetime.fromisoformat(current) >= until:
            return  # a retention is only ever extended
        doc.update(retain_until=until.astimezone(UTC).isoformat(), mode=mode)
        self._write_lock(sha256, doc)

    def set_legal_hold(self, sha256: str, on: bool) -> None:
        doc = self._read_lock(sha256)
        doc["legal_hold"] = bool(on)
        self._write_lock(sha256, doc)

    def lock_status(self, sha256: str) -> LockStatus:
        doc = self._read_lock(sha256)
        until = doc.get("retain_until")
        return LockStatus(retain_until=datetime.fromisoformat(until) if until else None,
                          mode=doc.get("mode"), legal_hold=bool(doc.get("legal_hold")),
                          enforced=False)


    def remove_orphans(self, *, older_than: timedelta = ORPHAN_GRACE) -> list[str]:
        """Delete staging files older than `older_than` (a crash mid-upload leaves them)."""
        cutoff = datetime.now(UTC).timestamp() - older_than.total_seconds()
        removed: list[str] = []
        if not self.staging.is_dir():
            return removed
        for path in self.staging.iterdir():
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(f"staging/{path.name}")
        return removed


def _file_chunks(f: BinaryIO) -> Iterator[bytes]:
    with f:
        while chunk := f.read(CHUNK):
            yield chunk


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_mode(mode: str) -> None:
    if mode not in RETENTION_MODES:
        raise ValueError(f"retention mode must be one of {RETENTION_MODES}, not {mode!r}")


# --- S3 (MinIO) ---------------------------------------------------------------------------

class _PartBuffers:
    """At most `count` part buffers of `size` bytes for one upload, made when
    first needed and reused (no new memory, no page faults per part): `get`
    waits for one to come back once its part is hashed and sent. Each is an
    anonymous mapping of its own, whose pages `discard` hands back to the
    system when the upload ends, whoever still refers to it (a malloc'ed
    buffer freed by one request thread's arena is not reused by the next
    request's, and the process would keep growing)."""

    def __init__(self, size: int, count: int):
        self.size = size
        self._count = count
        self._made: list[mmap.mmap] = []
        self._free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        self._lock = threading.Lock()

    def get(self) -> mmap.mmap:
        with contextlib.suppress(queue.Empty):
            return self._free.get_nowait()
        with self._lock:
            if len(self._made) < self._count:
                buffer = mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE)
                self._made.append(buffer)
                return buffer
        return self._free.get()

    def put(self, buffer: mmap.mmap) -> None:
        self._free.put(buffer)

    def discard(self) -> None:
        """The upload is over (nothing reads or sends its buffers any more)."""
        for buffer in self._made:
            buffer.madvise(mmap.MADV_DONTNEED)  # private anonymous pages: freed now


# a part read: its bytes (a view of a part buffer, empty at the end) and the
# countdown that returns the buffer once it is hashed and sent
_Part = tuple[memoryview, _Countdown]

_NOT_THERE = {"NoSuchKey", "NoSuchVersion", "NoSuchObject", "ResourceNotFound", "NotFound"}


class S3Store:
    """Objects in an S3 bucket with versioning and object lock.

    S3 fixes an object's key when the upload starts, and ours is the hash of
    bytes not read yet. A server-side copy from a staging key once the hash
    is known would make the server read and write every byte twice (it
    halved ingest speed), so no path here copies:

    * one part or less: the bytes are in memory and hashed before the PUT,
      which goes straight to `sha256/ab/cd/<hex>` with its retention.
    * larger, of a declared length up to 5 GiB (a raw API upload's
      Content-Length): one streamed PUT to a key of its own,
      `blobs/<day>/<random>` (written once), MD5 from its ETag (see
      `_upload_whole`); when the hash is known (and equals the client's, if
      sent) a small POINTER object goes under the content key (locked; it
      names the blob and its version in its metadata), then the blob version
      is locked. Readers follow the pointer (one extra small GET).
    * larger, of unknown length (a form upload) or over 5 GiB, with the
      client's SHA-256: a multipart upload straight to the content key.
      Nothing is visible (or locked) under a key until CompleteMultipartUpload,
      and that is sent only once our hash of the bytes equals the client's;
      on a mismatch the upload is aborted.
    * the same without it: a multipart upload to a blob key and a pointer,
      as above.

    Every write under a content key is conditional (If-None-Match: *): two
    uploads of the same bytes at once cannot overwrite each other; the loser
    is deduplicated (its blob, never locked, is deleted). Parts go up a few
    at a time (or onto the one PUT's socket) while the next one is read
    (straight into a reused buffer) and hashed (SHA-256 and MD5 on a thread
    each; on the one PUT only SHA-256, its MD5 being the store's ETag), so
    reading, hashing and the transfer overlap; memory is at most
    (parallel_parts + 1) x part_size.

    A crash between the blob and its pointer leaves an unlocked blob that no
    pointer names: `remove_orphans` (run by the integrity sweep) deletes
    those once older than a grace period, with any `staging/` leftovers of
    the earlier design. The bucket must have no default retention (an upload
    must stay removable until its hash is checked); every content object and
    blob gets an explicit retention instead.
    """

    name = "s3"

    def __init__(self, *, endpoint: str, access_key: str, secret_key: str, bucket: str,
                 secure: bool = False, region: str = "us-east-1",
                 retention_days: int = DEFAULT_RETENTION_DAYS,
                 retention_mode: str = DEFAULT_RETENTION_MODE,
                 part_size: int = S3_PART_SIZE, parallel_parts: int = S3_PARALLEL_PARTS,
                 connect_timeout: float = 5.0, read_timeout: float = 300.0, retries: int = 2,
                 client: Any = None):
        _check_mode(retention_mode)
        if retention_days < 1:
            raise ValueError("retention_days must be 1 or more")
        if part_size < 5 * 1024 * 1024:
            raise ValueError("S3 parts are at least 5 MiB")
        self.bucket = bucket
        self.endpoint = endpoint
        self.retention_days = retention_days
        self.retention_mode = retention_mode
        self.part_size = part_size
        self.parallel_parts = max(1, parallel_parts)
        if client is None:
            import certifi
            import urllib3
            from minio import Minio

            http = urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
                maxsize=max(10, self.parallel_parts * 2),
                cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(),
                retries=urllib3.Retry(total=retries, backoff_factor=0.2,
                                      status_forcelist=[500, 502, 503, 504]))
            cls = _unsigned_bodies(Minio) if secure or _is_loopback(endpoint) else Minio
            client = cls(endpoint, access_key=access_key, secret_key=secret_key,
                         secure=secure, region=region, http_client=http)
        self.client = client
        # a streamed body cannot be signed (its SHA-256 is known only at the end)
        self._streams_whole = bool(getattr(client, "sends_unsigned", False))

    # errors -------------------------------------------------------------------

    @contextlib.contextmanager
    def _s3(self, doing: str) -> Iterator[None]:
        """Storage failures become Unavailable (503) with what we were doing."""
        import urllib3
        from minio.error import MinioException, S3Error

        try:
            yield
        except S3Error as e:
            raise Unavailable(f"The evidence store refused to {doing}: {e.code} "
                              f"({e.message}).") from e
        except (urllib3.exceptions.HTTPError, MinioException, OSError) as e:
            raise Unavailable(f"The evidence store cannot be reached to {doing} "
                              f"({self.endpoint}); nothing was changed. Try again later.") from e

    def _until(self) -> datetime:
        return (datetime.now(UTC) + timedelta(days=self.retention_days)).replace(microsecond=0)

    def _lock_headers(self) -> dict[str, str]:
        from minio.time import to_iso8601utc

        return {"x-amz-object-lock-mode": self.retention_mode,
                "x-amz-object-lock-retain-until-date": str(to_iso8601utc(self._until()))}

    # writing ------------------------------------------------------------------

    def put_stream(self, stream: BinaryIO, *, expected_sha256: str | None = None,
                   max_bytes: int | None = None, length: int | None = None) -> StoredObject:
        """`length`: the size the caller declared (a request's Content-Length), if any;
        the bytes must then be exactly that many."""
        import urllib3
        from minio.error import MinioException, S3Error

        expected = _expected(expected_sha256)
        # more than a part, declared: one PUT, whose ETag is the server's MD5 of the bytes
        whole = (self._streams_whole and length is not None
                 and self.part_size < length <= S3_WHOLE_PUT_MAX)
        reader = HashingReader(stream, max_bytes=max_bytes, md5=not whole)
        buffers = _PartBuffers(self.part_size, self.parallel_parts + 1)
        try:
            first = self._next_part(reader, buffers)
            if not first[0]:  # an empty body is refused before anything reaches the store
                raise Invalid("The upload is empty: there are no bytes to store.",
                              fields={"file": ["Empty."]})
            if len(first[0]) < self.part_size:  # all of it, and its hash, are known
                if length is not None and len(first[0]) != length:
                    raise _short_or_long(len(first[0]), length)
                return self._put_small(reader, bytes(first[0]), expected)
            if whole:
                return self._put_large_via_blob(reader, buffers, first, expected=expected,
                                                length=length)
            if expected is not None:
                return self._put_large_to_content_key(reader, buffers, first, expected)
            return self._put_large_via_blob(reader, buffers, first)
        except BaseException as e:
            if reader.source_error is not None:  # the caller's side broke, not the store
                raise reader.source_error from None
            if isinstance(e, S3Error | urllib3.exceptions.HTTPError | MinioException | OSError):
                raise Unavailable(
                    f"The evidence store cannot take the upload ({self.endpoint}: "
                    f"{getattr(e, 'code', None) or type(e).__name__}); nothing was stored. "
                    "Try again later.") from e
            raise
        finally:
            reader.close()
            buffers.discard()

    @staticmethod
    def _next_part(reader: HashingReader, buffers: _PartBuffers) -> _Part:
        """The next part read into a free buffer (empty at the end). The buffer
        goes back once hashed and released by its sender (`_Part[1].release()`)."""
        buffer = buffers.get()
        done = _Countdown(2, lambda: buffers.put(buffer))
        n = reader.fill(buffer, on_hashed=done.release)
        return memoryview(buffer)[:n], done

    def _stored(self, reader: HashingReader, *, version_id: str | None, deduplicated: bool,
                data_key: str | None = None, md5: str | None = None,
                md5_by: str = "taskforce") -> StoredObject:
        sha256 = reader.sha256.hexdigest()
        md5 = md5 or reader.md5.hexdigest()
        return StoredObject(sha256=sha256, md5=md5, md5_by=md5_by, size=reader.size,
                            key=key_for(sha256), deduplicated=deduplicated, backend=self.name,
                            version_id=version_id, head=reader.head, data_key=data_key)

    def _put_small(self, reader: HashingReader, data: bytes,
                   expected: str | None) -> StoredObject:
        reader.check(expected)
        key = key_for(reader.sha256.hexdigest())
        current = self._stat(key)
        if current is not None:
            return self._stored(reader, version_id=self._keep(key, current), deduplicated=True)
        put = self._put_if_absent(key, data, {"Content-Type": "application/octet-stream"})
        if put is None:  # the same bytes arrived at the same moment
            return self._stored(reader, version_id=self._keep(key), deduplicated=True)
        return self._stored(reader, version_id=put.version_id, deduplicated=False)

    def _put_large_to_content_key(self, reader: HashingReader, buffers: _PartBuffers,
                                  first: _Part, expected: str) -> StoredObject:
        key = key_for(expected)
        current = self._stat(key)
        if current is not None:  # stored already: hash what arrives, keep nothing
            part = first
            while part[0]:
                part[1].release()  # not sent: the buffer is free once hashed
                part = self._next_part(reader, buffers)
            part[1].release()
            reader.check(expected)
            return self._stored(reader, version_id=self._keep(key, current), deduplicated=True)
        upload_id, parts = self._upload_parts(key, reader, buffers, first, self._lock_headers())
        try:
            reader.check(expected)  # before the bytes become visible under the key
            version_id = self._complete(key, upload_id, parts, if_absent=True)
        except BaseException:
            self._abort(key, upload_id)
            raise
        if version_id is _TAKEN:
            self._abort(key, upload_id)
            return self._stored(reader, version_id=self._keep(key), deduplicated=True)
        return self._stored(reader, version_id=version_id, deduplicated=False)

    def _put_large_via_blob(self, reader: HashingReader, buffers: _PartBuffers,
                            first: _Part, *, expected: str | None = None,
                            length: int | None = None) -> StoredObject:
        blob = f"{BLOB_PREFIX}{datetime.now(UTC):%Y%m%d}/{secrets.token_hex(16)}"
        if length is not None:
            blob_version, md5, md5_by = self._upload_whole(blob, reader, buffers, first,
                                                           length)
        else:
            upload_id, parts = self._upload_parts(blob, reader, buffers, first, {})
            try:
                blob_version = self._complete(blob, upload_id, parts, if_absent=False)
            except BaseException:
                self._abort(blob, upload_id)
                raise
            assert blob_version is not _TAKEN
            md5, md5_by = reader.md5.hexdigest(), "taskforce"
        try:
            reader.check(expected)  # before a pointer names the blob
            sha256 = reader.sha256.hexdigest()
            key = key_for(sha256)
            current = self._stat(key)
            put = None
            if current is None:
                pointer = json.dumps({"sha256": sha256, "md5": md5,
                                      "size": reader.size, "blob": blob,
                                      "blob_version": blob_version}).encode()
                put = self._put_if_absent(key, pointer, {
                    "Content-Type": "application/json",
                    f"x-amz-meta-{POINTER_META}": blob,
                    f"x-amz-meta-{POINTER_META}-version": blob_version or ""})
        except BaseException:
            self._remove_version(blob, blob_version)
            raise
        if put is None:  # the same bytes are stored already: drop ours (never locked)
            self._remove_version(blob, blob_version)
            return self._stored(reader, version_id=self._keep(key, current), deduplicated=True,
                                md5=md5, md5_by=md5_by)
        from minio.retention import Retention

        # Locked only now that a pointer names it. If this fails, the pointer
        # stands (locked) and the blob is locked by the next upload of the same
        # bytes or by remove_orphans (which never deletes a blob a pointer names).
        self.client.set_object_retention(self.bucket, blob,
                                         Retention(self.retention_mode, self._until()),
                                         version_id=blob_version)
        return self._stored(reader, version_id=put.version_id, deduplicated=False,
                            data_key=blob, md5=md5, md5_by=md5_by)

    def _upload_whole(self, key: str, reader: HashingReader, buffers: _PartBuffers,
                      first: _Part, length: int) -> tuple[str | None, str, str]:
        """One PUT of `length` bytes streamed from `first` and the rest of the reader:
        a sender thread writes each part to the socket while the next is read into a
        free buffer and SHA-256 hashed (the reader computes no MD5). Returns the
        version id, the MD5 and who computed it ("store", or "taskforce" where it
        was read back).

        The MD5 is the server's: a single PUT's ETag is the MD5 of the bytes it
        received, computed as they streamed in. MD5 is the slowest hash (one core,
        about 0.7 GB/s) and the store computes it anyway; computing it here too
        cost ~0.1 of the ingest speed on 2 cores. SHA-256, which names the object
        and which the sweep re-checks, is always ours. Where the ETag is not an MD5
        (SSE-KMS or SSE-C) the MD5 is read back from the store.

        A body cut short (our input failed) is dropped with the connection; a
        server that stores it truncated anyway (versitygw does) leaves an unlocked
        blob no pointer names, which `remove_orphans` deletes. (An aws-chunked body
        with our SHA-256 as a trailer makes the server refuse both, but its chunk
        parser cost more CPU than this saves.)"""
        chunks: queue.SimpleQueue[_Part | None] = queue.SimpleQueue()
        failed = threading.Event()
        outcome: dict[str, Any] = {}

        def free_waiting() -> None:
            """Parts the sender will never take: their buffers are free once hashed."""
            with contextlib.suppress(queue.Empty):
                while True:
                    if (part := chunks.get_nowait()) is not None:
                        part[1].release()

        def body() -> Iterator[memoryview]:
            while (part := chunks.get()) is not None:
                view, done = part
                try:
                    if not view:
                        return
                    yield view
                finally:
                    done.release()  # on the socket (or never will be)
            raise _BodyBroken("the upload's input failed")  # the request is dropped

        def send() -> None:
            try:
                response = self.client._execute(
                    "PUT", self.bucket, key, body=_OneShotBody(body, length),
                    headers={"Content-Type": "application/octet-stream"})
                outcome["headers"] = response.headers
            except _BodyBroken as e:
                outcome["error"] = Unavailable(
                    f"The evidence store cannot take the upload ({self.endpoint}), and a "
                    "stream cannot be sent twice; nothing was stored. Try again later."
                ) if e.resent else e
                failed.set()
            except BaseException as e:  # noqa: BLE001  (raised by the reading thread)
                outcome["error"] = e
                failed.set()
            if failed.is_set():
                free_waiting()  # the reading thread may be waiting for one

        sender = threading.Thread(target=send, name="s3-put", daemon=True)
        sender.start()
        part: _Part | None = first
        try:
            while part is not None and not failed.is_set():
                view = part[0]
                if reader.size > length or (not view and reader.size != length):
                    raise _short_or_long(reader.size, length)
                end = None
                if view and reader.size == length:
                    # the last declared byte: the input must end before the server
                    # has them all (with all of them it would store the object)
                    end = self._next_part(reader, buffers)
                    if end[0]:
                        end[1].release()  # never sent
                        raise _short_or_long(reader.size, length)
                chunks.put(part)
                part = None
                if end is not None:
                    part = end
                elif view:
                    part = self._next_part(reader, buffers)
        except BaseException:
            chunks.put(None)  # the sender drops the request
            raise
        finally:
            if part is not None:  # read, never queued
                part[1].release()
            sender.join()
            free_waiting()
        if "error" in outcome:
            raise outcome["error"]
        headers = outcome["headers"]
        version_id = headers.get("x-amz-version-id")
        md5 = _md5_of_etag(headers)
        if md5 is not None:
            return version_id, md5, "store"
        try:  # an ETag that is not the MD5 (encrypted): hashed from what was stored
            return version_id, self._md5_of(key, version_id), "taskforce"
        except BaseException:
            self._remove_version(key, version_id)
            raise

    def _md5_of(self, key: str, version_id: str | None) -> str:
        digest = hashlib.md5(usedforsecurity=False)
        with self._s3("read the upload back"):
            response = self.client.get_object(self.bucket, key, version_id=version_id)
        for chunk in self._chunks(response):
            digest.update(chunk)
        return digest.hexdigest()

    def _upload_parts(self, key: str, reader: HashingReader, buffers: _PartBuffers,
                      first: _Part, headers: dict[str, str]) -> tuple[str, list[Any]]:
        """Send `first` and the rest of the reader as parts, a few in flight while the
        next part is read into a free buffer and hashed. Aborted if anything fails."""
        from concurrent.futures import Future, ThreadPoolExecutor

        from minio.datatypes import Part

        upload_id = self.client._create_multipart_upload(
            self.bucket, key, {"Content-Type": "application/octet-stream", **headers})
        slots = threading.BoundedSemaphore(self.parallel_parts)
        failed = threading.Event()

        def sent(done: _Countdown, future: Future) -> None:
            slots.release()
            done.release()  # the buffer is free once hashed too
            if future.exception() is not None:
                failed.set()

        futures: list[Future] = []
        try:
            with ThreadPoolExecutor(self.parallel_parts, thread_name_prefix="s3-part") as pool:
                try:
                    view, done = first
                    while view and not failed.is_set():
                        slots.acquire()
                        future = pool.submit(self.client._upload_part, self.bucket, key, view,
                                             None, upload_id, len(futures) + 1)
                        future.add_done_callback(functools.partial(sent, done))
                        futures.append(future)
                        view, done = self._next_part(reader, buffers)
                    done.release()  # the empty end, or a part not sent after a failure
                except BaseException:
                    failed.set()
                    raise
            parts = [Part(n, f.result()) for n, f in enumerate(futures, start=1)]
        except BaseException:
            self._abort(key, upload_id)
            raise
        return upload_id, parts

    def _complete(self, key: str, upload_id: str, parts: list[Any], *, if_absent: bool) -> Any:
        """CompleteMultipartUpload; with if_absent, _TAKEN if the key already holds an object."""
        from xml.etree.ElementTree import Element, SubElement, tostring

        from minio.error import S3Error
        from minio.helpers import md5sum_hash

        root = Element("CompleteMultipartUpload")
        for part in parts:
            tag = SubElement(root, "Part")
            SubElement(tag, "PartNumber").text = str(part.part_number)
            SubElement(tag, "ETag").text = f'"{part.etag}"'
        body = tostring(root)
        headers = {"Content-Type": "application/xml", "Content-MD5": str(md5sum_hash(body))}
        if if_absent:
            headers["If-None-Match"] = "*"
        try:
            response = self.client._execute("POST", self.bucket, key, body=body,
                                            headers=headers, query_params={"uploadId": upload_id})
        except S3Error as e:
            if if_absent and e.code == "PreconditionFailed":
                return _TAKEN
            raise
        return response.headers.get("x-amz-version-id")

    def _put_if_absent(self, key: str, data: bytes, headers: dict[str, str]) -> Any:
        """PUT a locked object under a content key unless one is there (then None)."""
        from minio.error import S3Error

        try:
            return self.client._put_object(self.bucket, key, data, headers={
                **headers, **self._lock_headers(), "If-None-Match": "*"})
        except S3Error as e:
            if e.code == "PreconditionFailed":
                return None
            raise

    def _keep(self, key: str, current: Any = None) -> str | None:
        """An upload found its bytes stored already: make sure they (and the blob a
        pointer names) are locked at least as long as a new object would be."""
        current = current if current is not None else self._stat(key)
        if current is None:
            raise ObjectMissing(f"The stored bytes of {key} vanished while the upload ran.")
        until = self._until()
        self._extend_retention(key, current.version_id, until)
        target = _pointer_of(current.metadata)
        if target is not None:
            self._extend_retention(target[0], target[1], until)
        return current.version_id

    def _abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(Exception):  # unreachable now: its parts age out, never shown
            self.client._abort_multipart_upload(self.bucket, key, upload_id)

    def _remove_version(self, key: str, version_id: str | None) -> None:
        """Delete one VERSION (a plain delete would only add a delete marker). If the
        store is unreachable now, the object stays for remove_orphans."""
        with contextlib.suppress(Exception):
            self.client.remove_object(self.bucket, key, version_id=version_id)

    def _stat(self, key: str, version_id: str | None = None) -> Any:
        from minio.error import S3Error

        try:
            return self.client.stat_object(self.bucket, key, version_id=version_id)
        except S3Error as e:
            if e.code in _NOT_THERE:
                # minio's frames and its error refer to each other: dropped now, not at
                # the next garbage collection, with the callers' frames (and the
                # upload's buffers) that they keep alive
                e.__traceback__ = None
                return None
            raise

    def _extend_retention(self, key: str, version_id: str | None, until: datetime) -> None:
        from minio.retention import Retention

        try:
            current = self.client.get_object_retention(self.bucket, key, version_id=version_id)
        except Exception:  # noqa: BLE001  (no retention yet reads as an error on some servers)
            current = None
        if current is not None and current.retain_until_date is not None \
                and current.retain_until_date >= until:
            return
        mode = (current.mode if current is not None and current.mode else self.retention_mode)
        self.client.set_object_retention(self.bucket, key, Retention(mode, until),
                                         version_id=version_id)

    # reading ------------------------------------------------------------------

    def open_stream(self, sha256: str) -> Iterator[bytes]:
        key = key_for(sha256)
        from minio.error import S3Error

        with self._s3("read the evidence"):  # ObjectMissing is no S3 error: it passes through
            try:
                response = self.client.get_object(self.bucket, key)
            except S3Error as e:
                if e.code in _NOT_THERE:
                    raise ObjectMissing(f"The stored bytes of {key} are missing.") from e
                raise
            target = _pointer_of(response.headers)
            if target is not None:  # a pointer: the bytes are in the blob it names
                response.close()
                response.release_conn()
                try:
                    response = self.client.get_object(self.bucket, target[0],
                                                      version_id=target[1])
                except S3Error as e:
                    if e.code in _NOT_THERE:
                        raise ObjectMissing(f"The stored bytes of {key} ({target[0]}) are "
                                            "missing.") from e
                    raise
        return self._chunks(response)

    def _chunks(self, response: Any) -> Iterator[bytes]:
        import urllib3

        try:
            try:
                yield from response.stream(CHUNK)
            except (urllib3.exceptions.HTTPError, OSError) as e:
                raise Unavailable("The evidence store stopped answering while the bytes were "
                                  "read.") from e
        finally:
            response.close()
            response.release_conn()

    def exists(self, sha256: str) -> bool:
        with self._s3("look the evidence up"):
            return self._stat(key_for(sha256)) is not None

    def data_location(self, sha256: str) -> tuple[str, str | None]:
        """Where the bytes themselves are: the content key, or the blob its pointer names."""
        key = key_for(sha256)
        with self._s3("look the evidence up"):
            current = self._stat(key)
        if current is None:
            raise ObjectMissing(f"The stored bytes of {key} are missing.")
        return _pointer_of(current.metadata) or (key, current.version_id)

    # lock ---------------------------------------------------------------------

    def _lock_targets(self, sha256: str) -> list[tuple[str, str | None]]:
        """The content key and, for a pointer, the blob version it names."""
        key = key_for(sha256)
        current = self._stat(key)
        target = _pointer_of(current.metadata) if current is not None else None
        return [(key, None)] + ([target] if target is not None else [])

    def set_retention(self, sha256: str, until: datetime,
                      mode: str = DEFAULT_RETENTION_MODE) -> None:
        from minio.retention import Retention

        _check_mode(mode)
        with self._s3("set the retention"):
            for key, version_id in self._lock_targets(sha256):
                self.client.set_object_retention(self.bucket, key,
                                                 Retention(mode, until.astimezone(UTC)),
                                                 version_id=version_id)

    def set_legal_hold(self, sha256: str, on: bool) -> None:
        with self._s3("set the legal hold"):
            for key, version_id in self._lock_targets(sha256):
                if on:
                    self.client.enable_object_legal_hold(self.bucket, key, version_id=version_id)
                else:
                    self.client.disable_object_legal_hold(self.bucket, key,
                                                          version_id=version_id)

    def lock_status(self, sha256: str) -> LockStatus:
        """The lock of the bytes themselves (the blob, for a pointer)."""
        with self._s3("read the object lock"):
            key, version_id = self._lock_targets(sha256)[-1]
            try:
                retention = self.client.get_object_retention(self.bucket, key,
                                                             version_id=version_id)
            except Exception:  # noqa: BLE001
                retention = None
            hold = self.client.is_object_legal_hold_enabled(self.bucket, key,
                                                            version_id=version_id)
        return LockStatus(
            retain_until=retention.retain_until_date if retention is not None else None,
            mode=retention.mode if retention is not None else None,
            legal_hold=bool(hold), enforced=True)

    # orphans ------------------------------------------------------------------

    def remove_orphans(self, *, older_than: timedelta = ORPHAN_GRACE) -> list[str]:
        """Delete unlocked blobs (and old staging objects) older than `older_than` that
        no pointer names: what a crash between an upload and its pointer leaves. A
        blob a pointer names but that is not locked yet gets its retention instead.
        The server refuses to delete anything locked, whatever this code thinks."""
        from minio.error import S3Error

        cutoff = datetime.now(UTC) - older_than
        removed: list[str] = []
        named: set[str] | None = None
        with self._s3("remove orphaned uploads"):
            for prefix in (BLOB_PREFIX, STAGING_PREFIX):
                for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True,
                                                    include_version=True):
                    if obj.is_delete_marker or obj.last_modified is None \
                            or obj.last_modified > cutoff:
                        continue
                    if self._is_locked(obj.object_name, obj.version_id):
                        continue
                    if prefix == BLOB_PREFIX:
                        if named is None:
                            named = self._named_blobs()
                        if obj.object_name in named:
                            self._extend_retention(obj.object_name, obj.version_id,
                                                   self._until())
                            continue
                    try:
                        self.client.remove_object(self.bucket, obj.object_name,
                                                  version_id=obj.version_id)
                    except S3Error as e:
                        if e.code != "AccessDenied":  # locked after all: keep it
                            raise
                    else:
                        removed.append(obj.object_name)
        return removed

    def _is_locked(self, key: str, version_id: str | None) -> bool:
        try:
            retention = self.client.get_object_retention(self.bucket, key, version_id=version_id)
        except Exception:  # noqa: BLE001  (no retention reads as an error)
            retention = None
        if retention is not None and retention.retain_until_date is not None \
                and retention.retain_until_date > datetime.now(UTC):
            return True
        try:
            return bool(self.client.is_object_legal_hold_enabled(self.bucket, key,
                                                                 version_id=version_id))
        except Exception:  # noqa: BLE001
            return False

    def _named_blobs(self) -> set[str]:
        names: set[str] = set()
        for obj in self.client.list_objects(self.bucket, prefix="sha256/", recursive=True):
            current = self._stat(obj.object_name)
            target = _pointer_of(current.metadata) if current is not None else None
            if target is not None:
                names.add(target[0])
        return names


def _is_loopback(endpoint: str) -> bool:
    host = endpoint.rsplit(":", 1)[0].strip("[]") if ":" in endpoint else endpoint
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def _unsigned_bodies(base: type) -> type:
    """minio-py signs the SHA-256 of every body it sends over plain HTTP (over
    TLS it sends UNSIGNED-PAYLOAD). Our bytes are hashed in the same pass
    already, and that second SHA-256 of each part, plus the server checking
    it, cost two more passes over every byte. Used only where no one can sit
    between us and the store: TLS, or a store on this machine (loopback). The
    request itself stays signed; the sweep re-hashes what was stored."""

    class Client(base):  # type: ignore[misc, valid-type]
        sends_unsigned = True  # so a body can stream without being read first

        def _build_headers(self, host, headers=None, body=None, creds=None):
            if body is None or len(body) < 1024 * 1024 or creds is None:
                return super()._build_headers(host, headers, body, creds)
            headers, date = super()._build_headers(host, headers, None, creds)
            headers["Content-Length"] = str(len(body))
            headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
            return headers, date

    return Client


_TAKEN: Any = object()  # CompleteMultipartUpload found the key taken (If-None-Match)


class _BodyBroken(Exception):
    """Raised inside a streamed PUT's body to drop the request: not an OSError, so
    urllib3 neither swallows it (it ignores a broken pipe) nor retries it."""

    def __init__(self, message: str, *, resent: bool = False):
        super().__init__(message)
        self.resent = resent


class _OneShotBody:
    """A streamed request body of a declared length that can be sent once: a retry
    (urllib3 retries some failures) would send an empty or partial stream."""

    def __init__(self, chunks: Callable[[], Iterator[memoryview]], length: int):
        self._chunks: Callable[[], Iterator[memoryview]] | None = chunks
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[memoryview]:
        if self._chunks is None:
            raise _BodyBroken("a streamed body cannot be sent twice", resent=True)
        chunks, self._chunks = self._chunks, None
        return chunks()


def _md5_of_etag(headers: Any) -> str | None:
    """The MD5 a single PUT's ETag gives, or None where the ETag is something else
    (objects encrypted with SSE-KMS or SSE-C: S3 documents those ETags as not MD5)."""
    etag = (headers.get("ETag") or "").strip('"').lower()
    encrypted = (headers.get("x-amz-server-side-encryption") or "").startswith("aws:kms") \
        or headers.get("x-amz-server-side-encryption-customer-algorithm")
    if encrypted or len(etag) != 32 or not set(etag) <= _HEX:
        return None
    return etag


def _short_or_long(size: int, length: int) -> DomainError:
    return Invalid(f"The upload declared {length:,} bytes and {size:,} arrived "
                   "(Content-Length); nothing was stored.",
                   fields={"file": ["Its size does not match the declared length."]})


def _pointer_of(headers: Any) -> tuple[str, str | None] | None:
    """(blob key, version) if these object headers are a pointer's, else None."""
    if headers is None:
        return None
    blob = headers.get(f"x-amz-meta-{POINTER_META}")
    if not blob:
        return None
    version = headers.get(f"x-amz-meta-{POINTER_META}-version") or None
    return blob, version


# --- choosing the backend -----------------------------------------------------------------

def store_from_config(config: Any) -> EvidenceStore:
    """S3 when S3_ENDPOINT is set, else the local folder (EVIDENCE_DIR)."""
    if config.get("S3_ENDPOINT"):
        return S3Store(
            endpoint=config["S3_ENDPOINT"], access_key=config.get("S3_ACCESS_KEY", ""),
            secret_key=config.get("S3_SECRET_KEY", ""), bucket=config.get("S3_BUCKET", "evidence"),
            secure=bool(config.get("S3_SECURE")),
            retention_days=int(config.get("EVIDENCE_RETENTION_DAYS") or DEFAULT_RETENTION_DAYS),
            retention_mode=config.get("EVIDENCE_RETENTION_MODE") or DEFAULT_RETENTION_MODE)
    return LocalFolderStore(
        config["EVIDENCE_DIR"],
        retention_days=int(config.get("EVIDENCE_RETENTION_DAYS") or DEFAULT_RETENTION_DAYS),
        retention_mode=config.get("EVIDENCE_RETENTION_MODE") or DEFAULT_RETENTION_MODE)


def get_store() -> EvidenceStore:
    """The current app's store, built once per app."""
    from flask import current_app

    store = current_app.extensions.get("evidence_store")
    if store is None:
        store = current_app.extensions["evidence_store"] = store_from_config(current_app.config)
    return store
