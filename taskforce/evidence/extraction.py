"""Text from PDFs, in a child process with a time and a memory bound, and the
identifiers found in it.

A PDF is hostile input: a broken cross-reference table, an object stream of
millions of objects, a few KB of Flate that inflates to gigabytes. pypdf
runs here in a CHILD process (this very file run as a script, so the child
imports nothing but the standard library and pypdf), with:

* RLIMIT_AS (address space) and RLIMIT_CPU set before it starts, so a
  decompression bomb ends in MemoryError or a kill, not a worker swapping;
* a wall-clock timeout, after which the child is killed;
* caps on the text it returns (per page and in all), so the parent never
  reads an unbounded answer.

The parent (the Celery task) gets either the pages, page count and metadata,
or the reason no text was extracted; nothing the PDF does can crash or hang
it. Identifiers (phones, emails, crypto wallets, URLs, ad ids) are then
found in the text with linear-time patterns and normalized by the graph
part's normalizers; those are only SUGGESTED (a person accepts or dismisses
each).

Only the standard library is imported at module level: see above.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

TIME_LIMIT_S = 60.0  # wall clock for one PDF
MEMORY_LIMIT_BYTES = 768 * 1024 * 1024  # address space of the child
MAX_PAGES = 5000  # pages read; the count is still reported
MAX_PAGE_CHARS = 200_000
MAX_TOTAL_CHARS = 10_000_000
MAX_PDF_BYTES = 512 * 1024 * 1024  # larger PDFs are not extracted (reason recorded)
_OUTPUT_CAP = MAX_TOTAL_CHARS * 4 + 1_000_000  # bytes of JSON read back from the child


@dataclass
class Extracted:
    ok: bool
    reason: str | None = None  # why no text, when not ok
    page_count: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    pages: list[str] = field(default_factory=list)
    truncated: bool = False


def _limits(memory: int, cpu_seconds: int):
    def apply() -> None:  # runs in the child between fork and exec
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setsid()  # its own group: a kill takes anything it started
    return apply


def extract_pdf(path: str, *, time_limit: float = TIME_LIMIT_S,
                memory_limit: int = MEMORY_LIMIT_BYTES) -> Extracted:
    """Pages, count and metadata of the PDF at `path`, or why not, within the bounds."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        return Extracted(ok=False, reason=f"the file cannot be read ({e.strerror})")
    if size > MAX_PDF_BYTES:
        return Extracted(ok=False, reason=f"too large for text extraction ({size:,} bytes; "
                                          f"the limit is {MAX_PDF_BYTES:,})")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(  # our own interpreter and file, no shell
        [sys.executable, "-I", os.path.abspath(__file__), path],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=env, preexec_fn=_limits(memory_limit, int(time_limit) + 1),  # noqa: PLW1509
        close_fds=True)
    try:
        out, _ = proc.communicate(timeout=time_limit)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return Extracted(ok=False, reason=f"time limit: still parsing after {time_limit:g} s "
                                          "(a hostile or damaged PDF)")
    if len(out) > _OUTPUT_CAP:
        return Extracted(ok=False, reason="the extracted text is larger than the limit")
    if proc.returncode != 0 or not out:
        how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exit status {proc.returncode}")
        if proc.returncode in (-9, -24):  # SIGKILL / SIGXCPU: a bound was hit
            how += " (over the time or memory bound)"
        return Extracted(ok=False, reason=f"the PDF parser stopped: {how}")
    try:
        doc = json.loads(out)
    except ValueError:
        return Extracted(ok=False, reason="the PDF parser gave an unreadable answer")
    if "error" in doc:
        return Extracted(ok=False, reason=str(doc["error"])[:500],
                         page_count=doc.get("page_count"))
    return Extracted(ok=True, page_count=int(doc["page_count"]),
                     metadata={str(k)[:100]: str(v)[:1000]
                               for k, v in (doc.get("metadata") or {}).items()},
                     pages=[str(p) for p in doc["pages"]], truncated=bool(doc.get("truncated")))


def _kill(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


# --- identifiers in the text ----------------------------------------------------------------

# Linear patterns (no nested quantifiers), bounded lengths.
_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}"),
    "url": re.compile(r"\bhttps?://[^\s<>\"'()\[\]{}]{3,500}", re.IGNORECASE),
    "phone": re.compile(r"(?<![\w+])(?:\+?1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}"
                        r"(?![\w])"),
    "crypto_wallet": re.compile(r"\b(?:bc1[ac-hj-np-z02-9]{11,71}|[13][a-km-zA-HJ-NP-Z1-9]{25,34}"
                                r"|0x[a-fA-F0-9]{40}|T[1-9A-HJ-NP-Za-km-z]{33})\b"),
    "ad": re.compile(r"\b(?:ad|post|posting|listing)[ \t]?(?:id|#|no\.?|number)[ \t]*[:#]?[ \t]*"
                     r"([A-Za-z0-9][A-Za-z0-9_-]{3,39})\b", re.IGNORECASE),
}
MAX_SUGGESTIONS = 500  # per item


@dataclass(frozen=True)
class Found:
    kind: str
    value: str  # normalized (for an ad: the id as written; the platform comes on accepting)
    found_as: str
    page_no: int
    context: str


def find_identifiers(pages: list[str]) -> list[Found]:
    """Phones, emails, crypto wallets, URLs and ad ids in the pages, each once per
    (kind, value), first page it appears on, with a little context."""
    from taskforce.graph import identifiers as idents

    seen: dict[tuple[str, str], Found] = {}
    for page_no, text in enumerate(pages, start=1):
        for kind, pattern in _PATTERNS.items():
            for m in pattern.finditer(text):
                raw = m.group(1) if kind == "ad" else m.group(0)
                raw = raw.rstrip(".,;:")
                if kind == "ad":
                    value = raw
                else:
                    try:
                        value = idents.normalize(kind, raw).value
                    except idents.InvalidIdentifier:  # not one of that kind after all
                        continue
                if (kind, value) in seen:
                    continue
                start, end = max(0, m.start() - 60), min(len(text), m.end() + 60)
                context = " ".join(text[start:end].split())
                seen[(kind, value)] = Found(kind=kind, value=value[:300], found_as=raw[:300],
                                            page_no=page_no, context=context[:300])
                if len(seen) >= MAX_SUGGESTIONS:
                    return list(seen.values())
    return list(seen.values())


# --- the child -------------------------------------------------------------------------------

def _child(path: str) -> dict[str, Any]:
    import logging

    logging.disable(logging.CRITICAL)  # pypdf warns on stderr about every repair
    try:
        from pypdf import PdfReader
        from pypdf.errors import FileNotDecryptedError, LimitReachedError, PdfReadError
    except ImportError:
        import importlib.util

        if importlib.util.find_spec("pypdf") is None:
            return {"error": "pypdf is not installed"}
        return {"error": "memory limit: the parser cannot load within the memory bound"}
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    return {"error": "encrypted: a password is needed to read the text"}
            except Exception:  # noqa: BLE001
                return {"error": "encrypted: a password is needed to read the text"}
        count = len(reader.pages)
        meta: dict[str, str] = {}
        try:
            for key, value in (reader.metadata or {}).items():
                meta[str(key).lstrip("/")] = str(value)
        except Exception:  # noqa: BLE001  (broken metadata does not stop the text)
            meta = {}
        pages: list[str] = []
        total, truncated = 0, False
        for i, page in enumerate(reader.pages):
            if i >= MAX_PAGES or total >= MAX_TOTAL_CHARS:
                truncated = True
                break
            try:
                text = page.extract_text() or ""
            except (MemoryError, LimitReachedError):
                return {"page_count": count,
                        "error": f"decompression limit: page {i + 1} inflates past the limit "
                                 "(a decompression bomb?)"}
            except Exception:  # noqa: BLE001  (one damaged page: keep the others)
                text = ""
            text = text.replace("\x00", "")
            if len(text) > MAX_PAGE_CHARS:
                text, truncated = text[:MAX_PAGE_CHARS], True
            total += len(text)
            pages.append(text)
        return {"page_count": count, "metadata": meta, "pages": pages, "truncated": truncated}
    except FileNotDecryptedError:
        return {"error": "encrypted: a password is needed to read the text"}
    except (MemoryError, LimitReachedError):
        return {"error": "memory limit: the PDF needs more memory than allowed to parse "
                         "(a decompression bomb?)"}
    except RecursionError:
        return {"error": "malformed: nested too deep to parse"}
    except PdfReadError as e:
        return {"error": f"malformed: {str(e)[:300]}"}
    except Exception as e:  # noqa: BLE001  (whatever a hostile file makes pypdf raise)
        return {"error": f"malformed: {type(e).__name__}: {str(e)[:300]}"}


if __name__ == "__main__":  # the child: `python -I extraction.py <file>`
    sys.setrecursionlimit(5000)
    try:
        answer = _child(sys.argv[1])
    except MemoryError:
        answer = {"error": "memory limit: the PDF needs more memory than allowed to parse"}
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
