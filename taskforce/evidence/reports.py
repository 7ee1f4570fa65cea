"""Documents: the custody report and the Rule 902(14) certification, as PDF (fpdf2),
and Bates numbers stamped on PDF pages (pypdf + an fpdf2 overlay).

Pure: these functions take plain values (already loaded and redacted by the
service) and return PDF bytes. Nothing here reads the database or a request,
and only the standard library and fpdf2 are imported at module level: an
item's PDF (hostile input) is stamped by this very file run as a script in a
child process with a time and a memory bound (`stamp_pdf_bounded`).
`Redactor` is the one place that hides survivor identities in generated text:
every text that goes into a report, a manifest or a generated page passes it.
"""
from __future__ import annotations

import functools
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fpdf import FPDF

_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
MIN_TOKEN = 3  # name parts shorter than this are too common to redact on their own


# --- redaction ----------------------------------------------------------------------------

class Redactor:
    """Replaces survivors' names (whole and each part), aliases and identifiers with
    their pseudonym, case-insensitively. Empty: leaves text as it is."""

    def __init__(self) -> None:
        self._map: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None
        self.hits = 0

    def add(self, pseudonym: str, names: Iterable[str], identifiers: Iterable[str] = ()) -> None:
        for name in names:
            name = " ".join(name.split())
            if not name:
                continue
            self._map.setdefault(name.lower(), pseudonym)
            for part in re.split(r"[\s,.;:'\"()-]+", name):
                if len(part) >= MIN_TOKEN:
                    self._map.setdefault(part.lower(), pseudonym)
        for value in identifiers:
            value = (value or "").strip()
            if len(value) >= 4:
                self._map.setdefault(value.lower(), pseudonym)
        self._pattern = None

    @property
    def active(self) -> bool:
        return bool(self._map)

    @property
    def needles(self) -> list[str]:
        return sorted(self._map, key=len, reverse=True)

    def _compiled(self) -> re.Pattern[str] | None:
        if self._pattern is None and self._map:
            parts = []
            for needle in self.needles:
                body = re.escape(needle)
                # whole words for names; identifiers may sit inside other text
                parts.append(rf"(?<!\w){body}(?!\w)" if needle[:1].isalpha() else body)
            self._pattern = re.compile("|".join(parts), re.IGNORECASE)
        return self._pattern

    def __call__(self, text: Any) -> Any:
        if not isinstance(text, str) or not self._map:
            return text
        pattern = self._compiled()

        def swap(match: re.Match[str]) -> str:
            self.hits += 1
            return self._map[match.group(0).lower()]

        return pattern.sub(swap, text)

    def deep(self, value: Any) -> Any:
        """Redact every string in a JSON-like value (keys too)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self(k): self.deep(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(v) for v in value]
        return value

    def found_in(self, chunks: Iterator[bytes]) -> bool:
        """Do these bytes carry a survivor's name or identifier as plain text (UTF-8 or
        UTF-16)? Streams; keeps only an overlap between chunks."""
        if not self._map:
            return False
        needles = set()
        for n in self._map:
            needles.add(n.encode("utf-8"))
            needles.add(n.encode("utf-16-le"))
        keep = max(len(n) for n in needles) - 1
        tail = b""
        for chunk in chunks:
            window = (tail + chunk).lower()
            if any(n in window for n in needles):
                return True
            tail = window[-keep:] if keep > 0 else b""
        return False


class Redacted:
    """A read-only view of an item or a custody event whose free-text fields pass the
    redactor (everything else reads through): what pages and the API show to someone
    who may not see survivors' identities. Never handed back to a service to change."""

    TEXT = frozenset({"description", "collected_by", "collected_place", "original_filename",
                      "storage_location", "checked_out_to", "place", "reason", "details",
                      "user_name", "summary"})

    def __init__(self, target: Any, redact: Redactor) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_redact", redact)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        return self._redact(value) if name in self.TEXT else value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a redacted view is read-only")


def redacted(rows: Any, redact: Redactor) -> Any:
    """Wrap one object or a list of them, only when there is something to hide."""
    if not redact.active:
        return rows
    if isinstance(rows, list):
        return [Redacted(r, redact) for r in rows]
    return Redacted(rows, redact)


# --- Bates numbers -----------------------------------------------------------------------

STAMP_TIME_LIMIT_S = 120.0
STAMP_MEMORY_LIMIT_BYTES = 1536 * 1024 * 1024
STAMP_MAX_PAGES = 20_000  # a PDF claiming more pages (a hostile page tree) is not stamped


def _label(prefix: str, number: int, digits: int = 6) -> str:
    return f"{prefix}-{number:0{digits}d}"


def _overlay(width: float, height: float, label: str) -> Any:
    """A one-page PDF of the given size (points) with the label at the bottom right."""
    from fpdf import FPDF
    from pypdf import PdfReader

    pdf = FPDF(unit="pt", format=(width, height))
    pdf.set_auto_page_break(False)
    pdf.set_margins(0, 0, 0)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 9)
    text_w = pdf.get_string_width(label) + 8
    pdf.set_fill_color(255, 255, 255)
    pdf.set_xy(max(width - text_w - 18, 0), max(height - 24, 0))
    pdf.cell(text_w, 13, label, border=1, align="C", fill=True)
    return PdfReader(io.BytesIO(bytes(pdf.output()))).pages[0]


def stamp_pdf(source: Any, prefix: str, start: int,
              label: Callable[[str, int], str] = _label) -> tuple[bytes, int]:
    """Stamp `prefix-000start`, +1 per page, at the bottom right of every page as it is
    viewed; (stamped PDF, pages). Raises ValueError for a PDF it will not stamp."""
    from pypdf import PdfReader, PdfWriter, Transformation

    reader = PdfReader(source)
    if reader.is_encrypted:
        raise ValueError("the PDF is encrypted")
    if len(reader.pages) > STAMP_MAX_PAGES:
        raise ValueError(f"more than {STAMP_MAX_PAGES:,} pages")
    writer = PdfWriter(clone_from=reader)
    for index, page in enumerate(writer.pages):
        if (page.get("/Rotate") or 0) % 360:
            page.transfer_rotation_to_content()
        box = page.mediabox
        overlay = _overlay(float(box.width), float(box.height), label(prefix, start + index))
        page.merge_transformed_page(
            overlay, Transformation().translate(float(box.left), float(box.bottom)))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue(), len(writer.pages)


def _limits(memory: int, cpu_seconds: int) -> Callable[[], None]:
    def apply() -> None:  # in the child, between fork and exec
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setsid()
    return apply


def stamp_pdf_bounded(path: str, prefix: str, start: int, *, digits: int = 6,
                      time_limit: float = STAMP_TIME_LIMIT_S,
                      memory_limit: int = STAMP_MEMORY_LIMIT_BYTES) -> tuple[bytes, int]:
    """Stamp the PDF at `path` in a child process (this file run as a script) that is
    killed past `time_limit` or `memory_limit`: a broken, encrypted or hostile PDF
    raises ValueError with the reason, and never crashes or hangs the caller."""
    fd, out_path = tempfile.mkstemp(prefix="bates-", suffix=".pdf")
    os.close(fd)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    try:
        proc = subprocess.Popen(  # our own interpreter and file, no shell
            [sys.executable, "-I", os.path.abspath(__file__), "--stamp", path, out_path,
             prefix, str(start), str(digits)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, preexec_fn=_limits(memory_limit, int(time_limit) + 1),  # noqa: PLW1509
            close_fds=True)
        try:
            out, err = proc.communicate(timeout=time_limit)
        except subprocess.TimeoutExpired:
            import signal

            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            proc.wait()
            raise ValueError(f"still stamping after {time_limit:g} s (a hostile or damaged "
                             "PDF)") from None
        if proc.returncode != 0:
            lines = err.decode("utf-8", "replace").strip().splitlines()
            why = lines[-1][:200] if lines and proc.returncode > 0 else (
                f"killed by signal {-proc.returncode} (over the time or memory bound)")
            raise ValueError(f"the PDF could not be read: {why}")
        with open(out_path, "rb") as f:
            return f.read(), int(out.decode().strip())
    finally:
        os.unlink(out_path)


def _stamp_child(argv: list[str]) -> int:
    src, dst, prefix, start, digits = argv
    try:
        data, pages = stamp_pdf(src, prefix, int(start),
                                label=lambda p, n: _label(p, n, int(digits)))
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001  (any parser failure is the PDF's fault)
        print(f"{type(e).__name__}: {e}"[:300], file=sys.stderr)
        return 3
    with open(dst, "wb") as f:
        f.write(data)
    print(pages)
    return 0


# --- PDF basics ---------------------------------------------------------------------------

def _fmt_at(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value or "")


@functools.cache
def _doc_class() -> type:
    """The document class, built on first use: fpdf2 (with Pillow and fontTools) costs
    the web process ~30 MB, so it is loaded only when a document is made."""
    from fpdf import FPDF

    class _Doc(FPDF):
        def __init__(self, title: str, subtitle: str) -> None:
            super().__init__(orientation="P", unit="mm", format="Letter")
            self.doc_title = title
            self.doc_subtitle = subtitle
            self.set_auto_page_break(auto=True, margin=22)
            self.set_margins(18, 16, 18)
            self.unicode = False
            regular, bold = _FONT_DIR / "DejaVuSans.ttf", _FONT_DIR / "DejaVuSans-Bold.ttf"
            mono = _FONT_DIR / "DejaVuSansMono.ttf"
            if regular.is_file() and bold.is_file() and mono.is_file():
                self.add_font("Body", "", str(regular))
                self.add_font("Body", "B", str(bold))
                self.add_font("Mono", "", str(mono))
                self.body, self.mono, self.unicode = "Body", "Mono", True
            else:  # core fonts: Latin-1 only
                self.body, self.mono = "Helvetica", "Courier"
            self.set_title(title)
            self.set_creator("taskforce")
            self.set_producer("taskforce")

        def text_of(self, value: Any) -> str:
            text = "" if value is None else str(value)
            text = text.replace("\x00", "")
            if not self.unicode:
                text = text.encode("latin-1", "replace").decode("latin-1")
            return text

        def header(self) -> None:
            self.set_font(self.body, "B", 9)
            self.cell(0, 5, self.text_of(self.doc_title), new_x="LMARGIN", new_y="NEXT")
            self.set_font(self.body, "", 8)
            self.cell(0, 4, self.text_of(self.doc_subtitle), new_x="LMARGIN", new_y="NEXT")
            self.ln(3)

        def footer(self) -> None:
            # Bottom left: page of pages. Bottom right is left free for the Bates number.
            self.set_y(-14)
            self.set_font(self.body, "", 7)
            self.cell(80, 4, f"Page {self.page_no()} of {{nb}}")

        def heading(self, text: str, size: int = 12) -> None:
            self.set_font(self.body, "B", size)
            self.multi_cell(0, 6, self.text_of(text), new_x="LMARGIN", new_y="NEXT")
            self.ln(1)

        def para(self, text: str, size: int = 9, style: str = "") -> None:
            self.set_font(self.body, style, size)
            self.multi_cell(0, 4.5, self.text_of(text), new_x="LMARGIN", new_y="NEXT")

        def fact(self, label: str, value: Any, *, mono: bool = False) -> None:
            self.set_font(self.body, "B", 8.5)
            self.cell(38, 4.5, self.text_of(label))
            self.set_font(self.mono if mono else self.body, "", 8 if mono else 8.5)
            self.multi_cell(0, 4.5, self.text_of(value) or "-", new_x="LMARGIN", new_y="NEXT")


    # --- custody report -----------------------------------------------------------------------

    return _Doc

@dataclass
class ReportEvent:
    seq: int
    kind: str
    at: datetime
    who: str
    place: str
    reason: str
    details: dict[str, Any] | None
    prev_hash: str
    hash: str


@dataclass
class ReportItem:
    number: str
    description: str
    kind: str
    source: str
    collected_by: str
    collected_at: datetime
    collected_place: str
    size: int | None
    sha256: str | None
    md5: str | None
    content_type: str | None
    filename: str | None
    state: str
    custodian: str
    storage_location: str | None
    integrity: str
    events: list[ReportEvent] = field(default_factory=list)


def _details_line(details: dict[str, Any] | None) -> str:
    if not details:
        return ""
    parts = []
    for key in sorted(details):
        value = details[key]
        if value in (None, "", [], {}):
            continue
        if isinstance(value, dict | list):
            value = json.dumps(value, sort_keys=True, default=str)
        parts.append(f"{key}: {value}")
    return "; ".join(parts)


def _person(details: dict[str, Any], side: str) -> str:
    name, username = details.get(f"{side}_name"), details.get(f"{side}_username")
    if name and username and name != username:
        return f"{name} ({username})"
    return str(name or username or "nobody")


def _day(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return _fmt_at(value)


def event_summary(kind: str, details: dict[str, Any] | None) -> str:
    """What a custody event records, in one sentence, from its kind and details: the
    hand-overs, moves and legal holds whose story is in the details ("" for the rest,
    whose where and why say it all)."""
    d = details or {}
    if kind == "MOVED":
        return (f"Moved from {d.get('from_location') or 'an unrecorded location'} to "
                f"{d.get('to_location') or '-'}")
    if kind in ("TRANSFERRED", "TRANSFER_REFUSED", "TRANSFER_WITHDRAWN"):
        offer = f"Hand-over from {_person(d, 'from')} to {_person(d, 'to')}"
        if d.get("requested_by"):
            offer += f", asked by {d['requested_by']}"
        if d.get("requested_at"):
            offer += f" on {_day(d['requested_at'])}"
        if d.get("offer_reason"):
            offer += f" (reason given: {d['offer_reason']})"
        return offer + {"TRANSFERRED": ": accepted by the receiver",
                        "TRANSFER_REFUSED": ": refused by the receiver; the giver kept the item",
                        "TRANSFER_WITHDRAWN": ": withdrawn before the receiver accepted; the "
                                              "giver kept the item"}[kind]
    if kind == "LEGAL_HOLD_SET":
        text = f"Legal hold set on case {d.get('case') or '-'}"
        if d.get("added_under_hold"):
            text += f" (the case has been under this hold since {_day(d.get('held_since'))})"
        if d.get("store_hold"):
            text += "; the stored bytes carry the store's legal hold"
        return text + ": nothing of the case may be disposed of"
    if kind == "LEGAL_HOLD_CLEARED":
        text = (f"Legal hold on case {d.get('case') or '-'} cleared (held since "
                f"{_day(d.get('held_since'))}")
        text += f", set by {d['set_by']})" if d.get("set_by") else ")"
        if d.get("kept_for_other_case"):
            text += "; the stored bytes stay held: another case under a legal hold has them"
        return text
    return ""


def custody_report(*, case_number: str, case_title: str, items: list[ReportItem],
                   generated_by: str, generated_at: datetime, ledger_ok: bool | None = None,
                   note: str = "") -> bytes:
    """Every item with both hashes and every custody event (who, when, where, why, the
    event's hash and the hash it links to)."""
    scope = items[0].number if len(items) == 1 else f"{len(items)} items"
    pdf = _doc_class()("Chain of custody report",
               f"Case {case_number} - {scope} - generated {_fmt_at(generated_at)} by "
               f"{generated_by}")
    pdf.alias_nb_pages()
    pdf.add_page()
    pdf.heading(f"Chain of custody: case {case_number}", 14)
    pdf.para(case_title, 10)
    pdf.ln(2)
    pdf.para("Each custody event carries the SHA-256 of the event before it (for the first "
             "event, of the item's identity and recorded hashes), so any edit, deletion or "
             "insertion breaks the chain. Times are UTC.", 8)
    if ledger_ok is not None:
        pdf.para("Chain check at generation: " + ("every chain below is intact." if ledger_ok
                 else "A CHAIN BELOW IS BROKEN (see the marked item)."), 8, "B")
    if note:
        pdf.para(note, 8)
    for item in items:
        pdf.ln(3)
        pdf.heading(f"{item.number}: {item.description.splitlines()[0][:150] if item.description else ''}",
                    11)
        pdf.fact("Description", item.description)
        pdf.fact("Kind / source", f"{item.kind} / {item.source}")
        pdf.fact("Collected", f"{_fmt_at(item.collected_at)} by {item.collected_by}"
                              + (f" at {item.collected_place}" if item.collected_place else ""))
        if item.sha256:
            pdf.fact("File", item.filename or "-")
            pdf.fact("Size", f"{item.size:,} bytes" if item.size is not None else "-")
            pdf.fact("Content type", item.content_type or "-")
            pdf.fact("SHA-256", item.sha256, mono=True)
            pdf.fact("MD5", item.md5, mono=True)
            pdf.fact("Integrity", item.integrity)
        else:
            pdf.fact("Kept at", item.storage_location or "-")
        pdf.fact("State", item.state)
        pdf.fact("Custodian", item.custodian)
        pdf.ln(1)
        pdf.set_font(pdf.body, "B", 9)
        pdf.cell(0, 5, pdf.text_of(f"Custody events ({len(item.events)})"),
                 new_x="LMARGIN", new_y="NEXT")
        for ev in item.events:
            pdf.set_font(pdf.body, "B", 8.5)
            pdf.multi_cell(0, 4.2, pdf.text_of(f"#{ev.seq} {ev.kind}  {_fmt_at(ev.at)}  by "
                                                f"{ev.who or '-'}"),
                           new_x="LMARGIN", new_y="NEXT")
            pdf.set_font(pdf.body, "", 8)
            summary = event_summary(ev.kind, ev.details)
            if summary:
                pdf.multi_cell(0, 4, pdf.text_of(summary), new_x="LMARGIN", new_y="NEXT")
            if ev.place:
                pdf.multi_cell(0, 4, pdf.text_of(f"Where: {ev.place}"), new_x="LMARGIN",
                               new_y="NEXT")
            if ev.reason:
                pdf.multi_cell(0, 4, pdf.text_of(f"Why: {ev.reason}"), new_x="LMARGIN",
                               new_y="NEXT")
            line = _details_line(ev.details)
            if line:
                pdf.multi_cell(0, 4, pdf.text_of(f"Details: {line}"), new_x="LMARGIN",
                               new_y="NEXT")
            pdf.set_font(pdf.mono, "", 6.5)
            pdf.multi_cell(0, 3.4, pdf.text_of(f"event {ev.hash}  prev {ev.prev_hash}"),
                           new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
    return bytes(pdf.output())


# --- Rule 902(14) certification -----------------------------------------------------------

@dataclass
class CertifiedItem:
    number: str
    description: str
    sha256: str | None
    md5: str | None
    size: int | None
    collected_at: datetime
    collected_by: str
    bates: str  # "TF-000004 - TF-000009" or ""


def certification(*, package_number: str, case_number: str, agency: str,
                  prepared_by: str, prepared_at: datetime, items: list[CertifiedItem],
                  withheld: int, key_fingerprint: str, bates_range: str) -> bytes:
    """The certification Fed. R. Evid. 902(14) asks for: a qualified person attests that
    each item was copied from the original and identified by its hash value, under
    28 U.S.C. 1746. Left unsigned: the qualified person signs the printed page."""
    pdf = _doc_class()("Certification under Fed. R. Evid. 902(11) and 902(14)",
               f"Package {package_number} - case {case_number}")
    pdf.alias_nb_pages()
    pdf.add_page()
    pdf.heading("CERTIFICATION OF AUTHENTICITY OF DATA COPIED FROM AN ELECTRONIC DEVICE, "
                "STORAGE MEDIUM, OR FILE, PURSUANT TO FEDERAL RULES OF EVIDENCE 902(11) "
                "AND 902(14)", 10)
    pdf.para(
        "I, ______________________________ (name of the qualified person), attest, under "
        "penalties of perjury by the laws of the United States of America pursuant to "
        "28 U.S.C. 1746, that the information contained in this certification is true and "
        f"correct. I am employed by {agency} and my title is ______________________. I am "
        "qualified to authenticate the data described below because of my experience and "
        "training in the collection and examination of digital evidence.", 9)
    pdf.ln(1)
    pdf.para(
        "Each item listed below is a true duplicate of the original data collected, as "
        "recorded in the task force's evidence system. When each item was received, its "
        "SHA-256 and MD5 hash values were computed from the bytes themselves in the same "
        "pass that stored them; the hash values listed below were recomputed from the "
        "stored bytes when this package was built and are identical to those recorded at "
        "collection. Identification by SHA-256 hash value is a process of digital "
        "identification that is reliable and generally accepted, and it shows that each "
        "copy is identical to the original. The chain of custody of each item is set out "
        "in the accompanying custody report.", 9)
    pdf.ln(2)
    pdf.fact("Package", package_number)
    pdf.fact("Case", case_number)
    pdf.fact("Bates range", bates_range)
    pdf.fact("Items certified", str(len(items)) + (f" ({withheld} withheld to protect a "
                                                   "survivor)" if withheld else ""))
    pdf.fact("Manifest signed", "Ed25519; public key fingerprint (SHA-256):")
    pdf.fact("", key_fingerprint, mono=True)
    pdf.fact("Prepared", f"{_fmt_at(prepared_at)} by {prepared_by}")
    pdf.ln(2)
    for item in items:
        pdf.set_font(pdf.body, "B", 8.5)
        pdf.multi_cell(0, 4.2, pdf.text_of(f"{item.number}: {item.description[:160]}"),
                       new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(pdf.body, "", 8)
        size = f"{item.size:,} bytes" if item.size is not None else "physical item"
        pdf.multi_cell(0, 4, pdf.text_of(
            f"Collected {_fmt_at(item.collected_at)} by {item.collected_by}; {size}"
            + (f"; Bates {item.bates}" if item.bates else "")),
            new_x="LMARGIN", new_y="NEXT")
        if item.sha256:
            pdf.set_font(pdf.mono, "", 7)
            pdf.multi_cell(0, 3.6, pdf.text_of(f"SHA-256 {item.sha256}\nMD5     {item.md5}"),
                           new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)
    pdf.ln(6)
    pdf.para("Signature: ________________________________      Date: ________________", 9)
    pdf.ln(3)
    pdf.para("Printed name: _____________________________      Title: _______________", 9)
    return bytes(pdf.output())


if __name__ == "__main__":  # the bounded child of stamp_pdf_bounded
    if len(sys.argv) == 7 and sys.argv[1] == "--stamp":
        sys.exit(_stamp_child(sys.argv[2:]))
    sys.exit("usage: reports.py --stamp IN OUT PREFIX START DIGITS")


# --- printable evidence labels (storage location / label helper) --------------------------
# Below the script entry point only because other parts append to this file too; run as a
# script, the file never gets here (it exits above), and only the stamp is needed there.

LABEL_SIZE_IN = (4.0, 2.0)  # a standard evidence label, landscape
LABEL_QR_ERROR = "m"  # 15% of the code may be scuffed or taped over and it still scans


def label_qr(url: str) -> Any:
    """The QR code of a label: the item's address in the app, nothing else (segno)."""
    import segno

    return segno.make(url, error=LABEL_QR_ERROR, micro=False, boost_error=False)


@dataclass
class LabelItem:
    """What a label shows, already redacted by the service (never a survivor's name)."""

    case_number: str
    number: str
    kind: str  # "Physical item" / "Digital file"
    description: str
    collected_by: str
    collected_at: datetime
    storage_location: str | None
    sha256: str | None
    url: str


def _fit_lines(pdf: FPDF, text: str, width: float, height: float, max_lines: int) -> str:
    """`text` shortened (whole words, then an ellipsis) until it wraps to `max_lines`."""
    text = " ".join(text.split())

    def lines(value: str) -> int:
        return len(pdf.multi_cell(width, height, value, dry_run=True, output="LINES"))

    if lines(text) <= max_lines:
        return text
    # the longest prefix that fits (binary search), then back to a word boundary if one
    # is near (a long word with no spaces, such as a bag number, is cut where it must)
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if lines(text[:mid].rstrip() + "...") <= max_lines:
            low = mid
        else:
            high = mid - 1
    cut = text[:low]
    space = cut.rfind(" ")
    if space > low * 2 // 3:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "..."


def evidence_label(item: LabelItem, *, size_in: tuple[float, float] = LABEL_SIZE_IN) -> bytes:
    """One label page (4 x 2 in by default): the QR code of the item's address on the
    left; case and item number, the description (cut to fit), who collected it and
    when, and where it is kept (or the first 16 hex digits of its SHA-256) on the right.
    The QR is drawn as a 1-bit PNG at a whole number of pixels per module, so its
    modules print sharp."""
    import io as _io

    width, height = size_in[0] * 25.4, size_in[1] * 25.4
    pdf = _doc_class()(f"Evidence label {item.number}", "")
    pdf.header = lambda: None  # type: ignore[method-assign]  # a label has no page furniture
    pdf.footer = lambda: None  # type: ignore[method-assign]
    pdf.set_title(f"Evidence label {item.number}")
    pdf.set_auto_page_break(False)
    pdf.set_margins(3, 3, 3)
    pdf.add_page(format=(width, height), orientation="P")  # (w, h) taken as given

    qr = label_qr(item.url)
    png = _io.BytesIO()
    qr.save(png, kind="png", scale=10, border=4)  # the quiet zone is part of the image
    side = height - 6
    pdf.image(png, x=2, y=3, w=side, h=side)

    x = 2 + side + 2
    w = width - x - 3
    pdf.set_xy(x, 3.5)
    pdf.set_font(pdf.body, "B", 6.5)
    pdf.cell(w, 3, pdf.text_of(f"EVIDENCE - case {item.case_number}"),
             new_x="LEFT", new_y="NEXT", align="L")
    pdf.set_font(pdf.mono, "", 10.5)
    pdf.cell(w, 5, pdf.text_of(item.number), new_x="LEFT", new_y="NEXT", align="L")
    pdf.set_font(pdf.body, "", 6)
    pdf.cell(w, 2.8, pdf.text_of(item.kind), new_x="LEFT", new_y="NEXT", align="L")
    pdf.set_font(pdf.body, "", 7)
    pdf.multi_cell(w, 3, pdf.text_of(_fit_lines(pdf, pdf.text_of(item.description or "-"),
                                                w, 3, 3)),
                   new_x="LEFT", new_y="NEXT", align="L")
    pdf.set_y(pdf.get_y() + 0.8)
    pdf.set_x(x)
    rows = [("Collected", f"{_fmt_at(item.collected_at)[:16]} UTC"),
            ("By", item.collected_by or "-")]
    if item.sha256:
        rows.append(("SHA-256", item.sha256[:16] + "..."))
    else:
        rows.append(("Kept at", item.storage_location or "-"))
    for label, value in rows:
        pdf.set_font(pdf.body, "B", 6)
        pdf.cell(12, 2.9, pdf.text_of(label))
        pdf.set_font(pdf.mono if label == "SHA-256" else pdf.body, "", 6)
        pdf.multi_cell(w - 12, 2.9, pdf.text_of(_fit_lines(pdf, pdf.text_of(value),
                                                            w - 12, 2.9, 2)),
                       new_x="LEFT", new_y="NEXT", align="L")
        pdf.set_x(x)
    pdf.set_xy(x, height - 6)
    pdf.set_font(pdf.body, "", 5)
    pdf.multi_cell(w, 2.2, pdf.text_of(f"Scan to open (sign-in required): {item.url}"),
                   new_x="LEFT", new_y="NEXT", align="L")
    return bytes(pdf.output())
