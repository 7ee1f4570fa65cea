"""Imports: call detail records, bank records and generic CSV into a case's graph.

An import is itself evidence. `start_import` (the page, the API, the CLI) first
spools the upload to a temporary file while it hashes it and checks that it is
CSV at all (UTF-8, no NUL bytes, the columns the kind needs): a file that is not
is refused (415/422) before anything is written. Then:

- the same file (same SHA-256) already imported into this case: nothing new is
  made, and the answer says so (`created=False`);
- otherwise its bytes go through the evidence ingest (evidence.service.ingest:
  hashed, stored, custody started) and an `ImportRun` is queued; the Celery job
  (tasks.run_import) calls `run()`.

`run()` reads the bytes back through evidence.service.download (an ACCESSED
custody event), re-hashes them while it parses, reports bad rows with their line
numbers and reasons, aggregates the good ones per pair (CALLED/TEXTED per caller
and callee: count, first and last seen; PAID per payer and payee: count, total,
first and last seen; generic: per mapped source, target and type), and writes
everything in ONE transaction through the bulk path below.

Kinds:
- cdr: caller, callee, start, duration (+ call type: sms/text -> TEXTED). Numbers
  are normalized with strict=False (a new area code must not drop a carrier row).
  With `cell_sites=caller|callee` the cell site column links that party's phone
  to a Location "Cell site <id>" (ASSOCIATED_WITH, count, first/last seen); off
  by default, since a return does not say whose cell it names.
- bank: date, amount, direction (debit/credit, or the amount's sign), counterparty
  account (routing:account or IBAN -> BankAccount with the holder's name; a
  payment handle or email -> that entity) or, without one, counterparty name
  (-> an Organization of that name in this case); the statement's own account is
  an `account` column or option. A row with neither (cash at an ATM) has nothing
  to link: counted as skipped, not bad.
- generic: a ColumnMapping (kept per user, or shared with the user's agency)
  names the source and target columns and identifier kinds, the link type, and
  the date and amount columns; the import keeps the mapping as it was then.

The bulk path does what graph.service.add_entity / add_link do, for many rows
at once (one call per row would take hours on a million rows): identifiers
normalized by graph.identifiers; an identifier that exists names its entity,
which is attached to the case; new entities get their identifiers and case
membership; every new or attached entity and every new or changed link gets
its outbox row in the same transaction; every identifier is registered with
deconfliction (deconfliction.service.register, commit=False, so in the same
transaction); links carry provenance `import` / `import-<run id>`, and the run
names its evidence item. One audit record per import (not per row) says what
was made. After the commit the outbox drain and the second-degree check go out,
as after a service write.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import logging
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, BinaryIO

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from taskforce.accounts.models import User
from taskforce.accounts.permissions import Actor
from taskforce.audit import service as audit
from taskforce.errors import Conflict, DomainError, Invalid, NotFound
from taskforce.extensions import db
from taskforce.graph import identifiers as idents
from taskforce.graph import outbox
from taskforce.graph.models import (
    IDENTIFIER_KINDS_BY_ENTITY,
    IMPORT_KINDS,
    LINK_TYPES,
    SHIELDING_LINK_TYPES,
    CaseEntity,
    ColumnMapping,
    Entity,
    GraphOutbox,
    Identifier,
    ImportRun,
    Link,
)
from taskforce.investigations.models import Case
from taskforce.investigations.service import READ, WRITE, get_case_or_404, now
from taskforce.validation import FieldErrors
from taskforce.validation import as_id as _as_id

log = logging.getLogger(__name__)

BAD_ROWS_KEPT = 1000  # the report keeps the first this many; the count is of all
PROGRESS_SECONDS = 0.5  # how often the live status is written while parsing
LOOKUP_CHUNK = 500  # values per IN (...) query
WRITE_CHUNK = 5000  # rows per INSERT executemany
SPOOL_MEMORY = 8 * 1024 * 1024
READ_CHUNK = 1024 * 1024
NAME_MAX = 120
LABEL_MAX = 200
AMOUNT_MAX = Decimal("99999999999999.99")

_NOT_FOUND = "No such import, or its case is not shared with you."
_MAPPING_NOT_FOUND = "No such column mapping, or it is not shared with you."

# Identifier kind -> the entity kind that carries it (the sets do not overlap).
ENTITY_KIND_OF = {ik: ek for ek, kinds in IDENTIFIER_KINDS_BY_ENTITY.items() for ik in kinds}
# What a generic mapping may name as an end of a link (person needs a date of birth too).
MAPPABLE_KINDS = tuple(k for k in ENTITY_KIND_OF if k != "person")


class NotCSV(DomainError):
    """415: the bytes are not a CSV text file at all (binary, an image, a PDF...)."""

    status, code = 415, "unsupported_media_type"


# Columns: the names carriers and banks use, reduced by _column_key -----------------------

CDR_COLUMNS: dict[str, tuple[str, ...]] = {
    "caller": ("caller", "from", "calling_number", "a_number", "originating_number",
               "originating", "source", "calling"),
    "callee": ("callee", "to", "called_number", "b_number", "terminating_number",
               "terminating", "destination", "called", "dialed_number", "dialed"),
    "start": ("start", "start_time", "started_at", "date_time", "datetime", "timestamp",
              "call_date", "date", "time", "connect_time"),
    "duration": ("duration", "duration_s", "duration_seconds", "seconds", "call_duration",
                 "elapsed"),
    "call_type": ("call_type", "type", "record_type", "event_type"),
    "cell_site": ("cell_site", "cell_tower", "tower", "cell", "cell_id", "site",
                  "first_cell", "location"),
}
CDR_REQUIRED = ("caller", "callee", "start", "duration")
BANK_COLUMNS: dict[str, tuple[str, ...]] = {
    "date": ("date", "posted", "post_date", "posting_date", "transaction_date", "value_date"),
    "amount": ("amount", "value", "sum"),
    "direction": ("direction", "type", "transaction_type", "dr_cr", "debit_credit",
                  "credit_debit"),
    "counterparty_name": ("counterparty_name", "counterparty", "payee", "payer", "name",
                          "description", "merchant"),
    "counterparty_account": ("counterparty_account", "counterparty_acct", "other_account",
                             "account_to_from", "payee_account", "payer_account"),
    "memo": ("memo", "note", "notes", "reference", "details"),
    "account": ("account", "account_number", "statement_account", "own_account"),
}
BANK_REQUIRED = ("date", "amount")
CELL_PARTIES = {"caller": "the caller's", "callee": "the callee's"}
CALL_TYPES = {"voice": "CALLED", "call": "CALLED", "mo": "CALLED", "mt": "CALLED",
              "sms": "TEXTED", "text": "TEXTED", "mms": "TEXTED", "message": "TEXTED"}
DEBIT = {"debit", "dr", "d", "out", "outgoing", "withdrawal", "payment", "sent", "-"}
CREDIT = {"credit", "cr", "c", "in", "incoming", "deposit", "received", "+"}


def _column_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.replace("\ufeff", "").strip().lower()).strip("_")


# Reading the file ---------------------------------------------------------------------------

@dataclass
class Spooled:
    """An upload spooled to a temporary file, hashed, and checked to be UTF-8 text."""

    file: Any
    sha256: str
    size: int
    header: list[str]

    def close(self) -> None:
        self.file.close()


def _text_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """UTF-8 text lines (ends kept, so quoted newlines reach csv intact) from byte chunks."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    rest = ""
    for chunk in chunks:
        text = rest + decoder.decode(chunk)
        parts = text.split("\n")
        rest = parts.pop()
        for part in parts:
            yield part + "\n"
    rest += decoder.decode(b"", final=True)
    if rest:
        yield rest


def spool(stream: BinaryIO, *, max_bytes: int) -> Spooled:
    """Copy the upload to a temporary file, hashing it; refuse what is not UTF-8 CSV.

    415 for bytes that are not text at all (NUL bytes, a known binary format), 422
    for text that is not UTF-8, is empty, or is larger than the upload limit. Nothing
    is written anywhere but the temporary file, which is closed on any refusal.
    """
    from taskforce.evidence.service import detect_content_type  # called, never edited

    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115  (handed back)
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = 0
    lines = 1
    head = b""
    try:
        while True:
            chunk = stream.read(READ_CHUNK)
            if not chunk:
                break
            if not head:
                head = chunk[:8192]
                media = detect_content_type(head)
                # octet-stream without NUL bytes is text in another encoding: the UTF-8
                # check below says where (422), which helps more than "binary" (415)
                if media != "text/plain" and (media != "application/octet-stream"
                                              or b"\x00" in head):
                    raise NotCSV(f"This file is not CSV: its bytes are {media}. Export the "
                                 "records as CSV (comma-separated text, UTF-8) and upload that.")
            if b"\x00" in chunk:
                at_line = lines + chunk[:chunk.index(b"\x00")].count(b"\n")
                raise NotCSV(f"This file is not CSV: it holds NUL bytes (binary data) on line "
                             f"{at_line}.")
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line = lines + chunk[:exc.start].count(b"\n")
                raise Invalid(f"This file is not UTF-8 text (line {line}, byte {size + exc.start}"
                              f" of the file). Save the CSV as UTF-8 and upload it again.",
                              fields={"file": ["Not UTF-8."]}) from None
            lines += chunk.count(b"\n")
            size += len(chunk)
            if size > max_bytes:
                raise Invalid(f"This file is larger than the upload limit ({max_bytes:,} bytes).",
                              fields={"file": ["Too large."]})
            digest.update(chunk)
            out.write(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise Invalid("This file is not UTF-8 text: it ends inside a character.",
                          fields={"file": ["Not UTF-8."]}) from None
        if size == 0:
            raise Invalid("The file is empty.", fields={"file": ["Empty."]})
        out.seek(0)
        header = _read_header(out)
        out.seek(0)
        return Spooled(file=out, sha256=digest.hexdigest(), size=size, header=header)
    except BaseException:
        out.close()
        raise


def _read_header(f: BinaryIO) -> list[str]:
    first = f.readline(1024 * 1024).decode("utf-8-sig", errors="replace")
    try:
        row = next(csv.reader([first]), [])
    except csv.Error:
        row = []
    header = [c.strip() for c in row]
    if len([c for c in header if c]) < 2:
        raise Invalid("This file is not CSV with a header row: the first line must name the "
                      "columns, separated by commas.", fields={"file": ["No header row."]})
    return header


# What each kind needs ------------------------------------------------------------------------

@dataclass
class Plan:
    """How to read the rows of one file: the kind, the column indexes, the options."""

    kind: str
    columns: dict[str, int]
    options: dict[str, Any] = field(default_factory=dict)


def _find_columns(header: list[str], wanted: dict[str, tuple[str, ...]]) -> dict[str, int]:
    keys = [_column_key(h) for h in header]
    found: dict[str, int] = {}
    taken: set[int] = set()
    for name, aliases in wanted.items():
        for alias in aliases:
            if alias in keys and keys.index(alias) not in taken:
                found[name] = keys.index(alias)
                taken.add(found[name])
                break
    return found


def plan_for(kind: str, header: list[str], options: dict[str, Any]) -> Plan:
    """The columns the kind needs, found in the header, or Invalid naming the missing."""
    if kind == "cdr":
        cols = _find_columns(header, CDR_COLUMNS)
        missing = [c for c in CDR_REQUIRED if c not in cols]
        if missing:
            raise Invalid(_missing_message("call detail records", missing, header),
                          fields={"columns": [f"Missing: {', '.join(missing)}."]})
        if options.get("cell_sites") and "cell_site" not in cols:
            raise Invalid("Cell sites were asked for, but the file has no cell site column "
                          f"(cell_site, cell_tower, tower, ...); its columns are: "
                          f"{', '.join(header)}.", fields={"cell_sites": ["No such column."]})
        return Plan(kind, cols, options)
    if kind == "bank":
        cols = _find_columns(header, BANK_COLUMNS)
        missing = [c for c in BANK_REQUIRED if c not in cols]
        if "counterparty_name" not in cols and "counterparty_account" not in cols:
            missing.append("counterparty_name or counterparty_account")
        if missing:
            raise Invalid(_missing_message("bank records", missing, header),
                          fields={"columns": [f"Missing: {', '.join(missing)}."]})
        if "account" not in cols and not options.get("account"):
            raise Invalid("Name the account this statement belongs to (routing:account or "
                          "IBAN), or give it an 'account' column.",
                          fields={"account": ["Required for bank records."]})
        return Plan(kind, cols, options)
    keys = [_column_key(h) for h in header]
    cols = {}
    missing = []
    for role in ("source", "target", "date", "amount"):
        name = options.get(f"{role}_column")
        if not name:
            continue
        key = _column_key(name)
        if key in keys:
            cols[role] = keys.index(key)
        else:
            missing.append(name)
    if missing:
        raise Invalid(f"This file has no column {', '.join(repr(m) for m in missing)} that the "
                      f"mapping names; its columns are: {', '.join(header)}.",
                      fields={"columns": [f"Missing: {', '.join(missing)}."]})
    return Plan(kind, cols, options)


def _missing_message(what: str, missing: list[str], header: list[str]) -> str:
    return (f"These are not {what} as expected: no column for {', '.join(missing)}. "
            f"The file's columns are: {', '.join(header)}.")


# Parsing rows --------------------------------------------------------------------------------

_DATE_FORMATS = ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M:%S %p",
                 "%m/%d/%Y %I:%M %p", "%m/%d/%Y", "%m/%d/%y", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d",
                 "%Y%m%d%H%M%S", "%Y%m%d")


def parse_instant(text: str) -> datetime:
    """A date or date-time as naive UTC (a zone, when given, is applied). ValueError if not."""
    text = text.strip()
    if not text:
        raise ValueError("empty")
    try:
        if text[-1] in "Zz":
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
    except ValueError:
        for fmt in _DATE_FORMATS:
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            raise ValueError(text) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    if not 1900 <= parsed.year <= 2200:
        raise ValueError(text)
    return parsed


def parse_amount(text: str) -> Decimal:
    """'1,234.50', '$80', '(80.00)' (negative), '-80' -> Decimal; InvalidOperation if not."""
    raw = text.strip().replace(",", "").replace("$", "").replace(" ", "")
    negative = raw.startswith("(") and raw.endswith(")")
    if negative:
        raw = raw[1:-1]
    value = Decimal(raw)
    if not value.is_finite():
        raise InvalidOperation(text)
    return -value if negative else value


class Bad(Exception):
    """One row that cannot load; its message is the reason shown to the investigator."""


@dataclass
class Aggregate:
    count: int
    first: datetime | None
    last: datetime | None
    amount: Decimal | None


@dataclass
class Parsed:
    """What the rows of a file say, aggregated: the identifiers and named ends met, and
    one total per (source, target, link type)."""

    ends: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)
    # key -> (entity kind, label, identifier display); key = (identifier kind, value), or
    # ("name:<entity kind>", folded name) for an end known only by its name
    links: dict[tuple[tuple[str, str], tuple[str, str], str], Aggregate] = field(
        default_factory=dict)
    # details the file gives about an end, for this case's membership (bank: the holder)
    props: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rows_read: int = 0
    rows_loaded: int = 0
    rows_skipped: int = 0
    rows_bad: int = 0
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    bytes_read: int = 0
    sha256: str = ""

    def bad(self, line: int, reason: str) -> None:
        self.rows_bad += 1
        if len(self.bad_rows) < BAD_ROWS_KEPT:
            self.bad_rows.append({"line": line, "reason": reason})

    def add(self, src: tuple[str, str], tgt: tuple[str, str], link_type: str,
            at: datetime | None, amount: Decimal | None) -> None:
        key = (src, tgt, link_type)
        agg = self.links.get(key)
        if agg is None:
            self.links[key] = Aggregate(1, at, at, amount)
            return
        agg.count += 1
        if at is not None:
            if agg.first is None or at < agg.first:
                agg.first = at
            if agg.last is None or at > agg.last:
                agg.last = at
        if amount is not None:
            agg.amount = amount if agg.amount is None else agg.amount + amount


class _Identifiers:
    """Normalization with a cache: a carrier file names the same few numbers many times."""

    def __init__(self, parsed: Parsed):
        self.parsed = parsed
        self.cache: dict[tuple[str, str], tuple[str, str] | str] = {}

    def end(self, kind: str, raw: str, what: str) -> tuple[str, str]:
        hit = self.cache.get((kind, raw))
        if hit is None:
            try:
                extra = {"strict": False} if kind == "phone" else {}
                ident = idents.normalize(kind, raw, **extra)
            except idents.InvalidIdentifier as exc:
                hit = f"{what} {raw.strip()[:60]!r}: {exc.reason}"
            else:
                if len(ident.value) > 512 or len(ident.display or "") > 512:
                    hit = f"{what}: longer than 512 characters"
                else:
                    hit = ident.key
                    self.parsed.ends.setdefault(
                        ident.key, (ENTITY_KIND_OF[ident.kind],
                                    (ident.display or ident.value)[:LABEL_MAX],
                                    ident.display or ident.value))
            self.cache[(kind, raw)] = hit
        if isinstance(hit, str):
            raise Bad(hit)
        return hit

    def named(self, entity_kind: str, name: str) -> tuple[str, str]:
        label = " ".join(name.split())[:LABEL_MAX]
        key = (f"name:{entity_kind}", label.casefold())
        self.parsed.ends.setdefault(key, (entity_kind, label, ""))
        return key


def _cell(row: list[str], index: int | None) -> str:
    if index is None or index >= len(row):
        return ""
    return row[index].strip()


def _cdr_reader(plan: Plan, ids: _Identifiers, parsed: Parsed) -> Callable[[list[str]], None]:
    """The CDR row reader, with what it needs bound to locals: it runs once per row of
    files of millions of rows, so the common case (cached numbers, ISO times) is inline."""
    c = plan.columns
    ci, ce, cs, cd = c["caller"], c["callee"], c["start"], c["duration"]
    ct = c.get("call_type")
    # the cell site column says where the phone whose records these are (the caller's
    # or the callee's, as the investigator says) was: linked only when asked
    cell_party = plan.options.get("cell_sites") or None
    cc = c.get("cell_site") if cell_party else None
    width = max(c.values()) + 1
    cache, end, links = ids.cache, ids.end, parsed.links
    fromiso = datetime.fromisoformat
    sites: dict[str, tuple[str, str]] = {}

    def site(raw: str) -> tuple[str, str]:
        key = sites.get(raw)
        if key is None:
            key = sites[raw] = ids.named("location", f"Cell site {raw[:180]}")
            parsed.props.setdefault(key, {"location_kind": "other"})
        return key

    def read(row: list[str]) -> None:
        if len(row) < width:
            row = row + [""] * (width - len(row))
        caller, callee = row[ci].strip(), row[ce].strip()
        if not caller:
            raise Bad("caller is empty")
        if not callee:
            raise Bad("callee is empty")
        src = cache.get(("phone", caller))
        if src.__class__ is not tuple:
            src = end("phone", caller, "caller")
        tgt = cache.get(("phone", callee))
        if tgt.__class__ is not tuple:
            tgt = end("phone", callee, "callee")
        if src == tgt:
            raise Bad("caller and callee are the same number")
        start = row[cs].strip()
        try:
            at = fromiso(start)
            if at.tzinfo is not None:
                at = at.astimezone(UTC).replace(tzinfo=None)
            if not 1900 <= at.year <= 2200:
                raise ValueError(start)
        except ValueError:
            try:
                at = parse_instant(start)
            except ValueError:
                raise Bad(f"start time {start[:40]!r} is not a date and time "
                          "(YYYY-MM-DD HH:MM:SS)") from None
        duration = row[cd].strip()
        if duration:
            try:
                seconds = float(duration)
            except ValueError:
                raise Bad(f"duration {duration[:20]!r} is not a number of seconds") from None
            if not 0 <= seconds < 10**7:
                raise Bad(f"duration {duration[:20]!r} is out of range")
        link_type = "CALLED"
        if ct is not None:
            kind = row[ct].strip().lower()
            if kind:
                link_type = CALL_TYPES.get(kind, "CALLED")
        key = (src, tgt, link_type)
        agg = links.get(key)
        if agg is None:
            links[key] = Aggregate(1, at, at, None)
        else:
            agg.count += 1
            if at < agg.first:
                agg.first = at
            elif at > agg.last:
                agg.last = at
        if cc is not None:
            cell = row[cc].strip()
            if cell:
                parsed.add(src if cell_party == "caller" else tgt, site(cell),
                           "ASSOCIATED_WITH", at, None)

    return read


def _bank_row(plan: Plan, ids: _Identifiers, row: list[str], parsed: Parsed) -> bool:
    """False for a row with no counterparty (cash at an ATM): nothing to link, not an error."""
    c = plan.columns
    raw_date = _cell(row, c["date"])
    try:
        at = parse_instant(raw_date)
    except ValueError:
        raise Bad(f"date {raw_date[:40]!r} is not a date (YYYY-MM-DD)") from None
    raw_amount = _cell(row, c["amount"])
    try:
        amount = parse_amount(raw_amount)
    except (InvalidOperation, ValueError):
        raise Bad(f"amount {raw_amount[:30]!r} is not an amount of money") from None
    direction = _cell(row, c.get("direction")).lower()
    if direction in DEBIT:
        outgoing = True
    elif direction in CREDIT:
        outgoing = False
    elif direction:
        raise Bad(f"direction {direction[:20]!r} is neither debit nor credit")
    else:
        outgoing = amount < 0
    amount = abs(amount).quantize(Decimal("0.01"))
    if amount > AMOUNT_MAX:
        raise Bad("amount is too large")
    own_raw = _cell(row, c.get("account")) or plan.options.get("account") or ""
    own = ids.end("bank_account", own_raw, "account")
    account = _cell(row, c.get("counterparty_account"))
    name = _cell(row, c.get("counterparty_name"))
    if account:
        other = _counterparty(ids, account)
        if name and other[0] == "bank_account":
            parsed.props.setdefault(other, {"holder": " ".join(name.split())[:200]})
    elif name:
        other = ids.named("organization", name)
    else:
        return False
    if other == own:
        raise Bad("the counterparty is the statement's own account")
    src, tgt = (own, other) if outgoing else (other, own)
    parsed.add(src, tgt, "PAID", at, amount)
    return True


def _counterparty(ids: _Identifiers, account: str) -> tuple[str, str]:
    """A bank account (routing:account or IBAN); else a payment handle (cashapp:$name) or
    an email address, which is how person-to-person apps name the other side."""
    for kind in ("bank_account", "online_account", "email"):
        try:
            return ids.end(kind, account, "counterparty account")
        except Bad as exc:
            last = exc
    raise Bad(f"counterparty account {account[:60]!r} is not a bank account (routing:account "
              f"or IBAN), payment handle (platform:handle) or email") from last


def _generic_row(plan: Plan, ids: _Identifiers, row: list[str], parsed: Parsed) -> None:
    c, o = plan.columns, plan.options
    source, target = _cell(row, c.get("source")), _cell(row, c.get("target"))
    if not source:
        raise Bad(f"{o['source_column']} is empty")
    if not target:
        raise Bad(f"{o['target_column']} is empty")
    src = ids.end(o["source_kind"], source, o["source_column"])
    tgt = ids.end(o["target_kind"], target, o["target_column"])
    if src == tgt:
        raise Bad("both ends are the same")
    at = None
    if "date" in c and _cell(row, c["date"]):
        try:
            at = parse_instant(_cell(row, c["date"]))
        except ValueError:
            raise Bad(f"{o['date_column']} {_cell(row, c['date'])[:40]!r} is not a date") \
                from None
    amount = None
    if "amount" in c and _cell(row, c["amount"]):
        try:
            amount = abs(parse_amount(_cell(row, c["amount"]))).quantize(Decimal("0.01"))
        except (InvalidOperation, ValueError):
            raise Bad(f"{o['amount_column']} {_cell(row, c['amount'])[:30]!r} is not an "
                      "amount") from None
        if amount > AMOUNT_MAX:
            raise Bad("amount is too large")
    parsed.add(src, tgt, o["link_type"], at, amount)


def parse(plan: Plan, chunks: Iterable[bytes], *,
          progress: Callable[[Parsed], None] | None = None) -> Parsed:
    """Read every row; bad ones go in the report with their line number, good ones into
    the aggregate. The bytes are hashed again on the way (Parsed.sha256)."""
    parsed = Parsed()
    digest = hashlib.sha256()

    def counted(source: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in source:
            digest.update(chunk)
            parsed.bytes_read += len(chunk)
            yield chunk

    reader = csv.reader(_text_lines(counted(chunks)))
    ids = _Identifiers(parsed)
    if plan.kind == "cdr":
        row_fn = _cdr_reader(plan, ids, parsed)
    else:
        kind_fn = {"bank": _bank_row, "generic": _generic_row}[plan.kind]

        def row_fn(row: list[str]) -> bool | None:
            return kind_fn(plan, ids, row, parsed)
    next(reader, None)  # the header, checked at upload
    last_report = time.monotonic()
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            parsed.rows_read += 1
            parsed.bad(reader.line_num, f"not a CSV row: {exc}")
            continue
        if not row or not any(cell.strip() for cell in row):
            continue  # blank lines are not rows
        parsed.rows_read += 1
        try:
            loaded = row_fn(row)
        except Bad as exc:
            parsed.bad(reader.line_num, str(exc))
            continue
        if loaded is False:
            parsed.rows_skipped += 1
        else:
            parsed.rows_loaded += 1
        if progress is not None and parsed.rows_read % 2000 == 0:
            t = time.monotonic()
            if t - last_report >= PROGRESS_SECONDS:
                last_report = t
                progress(parsed)
    parsed.sha256 = digest.hexdigest()
    return parsed


# Writing: the bulk path ------------------------------------------------------------------

@dataclass
class Written:
    entities_created: int = 0
    entities_attached: int = 0
    links_created: int = 0
    links_merged: int = 0
    entity_ids: list[int] = field(default_factory=list)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


def write(*, actor: Actor, case: Case, run: ImportRun, parsed: Parsed) -> Written:
    """Entities, identifiers, memberships, links, outbox rows and deconfliction
    registrations for everything parsed, in the caller's transaction (not committed)."""
    at = now()
    out = Written()
    entity_of: dict[tuple[str, str], int] = {}
    # only the ends of a link that loads: a good caller on a bad row makes no entity
    used = {k for src, tgt, _ in parsed.links for k in (src, tgt)}
    parsed.ends = {k: v for k, v in parsed.ends.items() if k in used}

    # 1. identifiers that already exist name their entity
    by_kind: dict[str, list[str]] = {}
    for key in parsed.ends:
        if not key[0].startswith("name:"):
            by_kind.setdefault(key[0], []).append(key[1])
    for kind, values in by_kind.items():
        for chunk in _chunks(values, LOOKUP_CHUNK):
            for eid, value in db.session.execute(
                    select(Identifier.entity_id, Identifier.value)
                    .where(Identifier.kind == kind, Identifier.value.in_(chunk))):
                entity_of[(kind, value)] = eid
    # ends known only by name: an entity of that kind and label already in this case
    names: dict[str, list[tuple[str, str]]] = {}
    for key in parsed.ends:
        if key[0].startswith("name:"):
            names.setdefault(key[0][5:], []).append(key)
    for entity_kind, keys in names.items():
        wanted = {k[1] for k in keys}
        for eid, label in db.session.execute(
                select(Entity.id, CaseEntity.label)
                .join(CaseEntity, CaseEntity.entity_id == Entity.id)
                .where(CaseEntity.case_id == case.id, Entity.kind == entity_kind)):
            folded = " ".join(label.split()).casefold()
            if folded in wanted:
                entity_of.setdefault((f"name:{entity_kind}", folded), eid)

    # 2. which of those are in the case already (what the case says about them is its
    # own: the label it gave, the identifiers it entered)
    existing_ids = sorted(set(entity_of.values()))
    in_case: dict[int, tuple[int, str, list[list[str]]]] = {}
    for chunk in _chunks(existing_ids, LOOKUP_CHUNK):
        for ce_id, eid, label, keys in db.session.execute(
                select(CaseEntity.id, CaseEntity.entity_id, CaseEntity.label,
                       CaseEntity.identifier_keys)
                .where(CaseEntity.case_id == case.id, CaseEntity.entity_id.in_(chunk))):
            in_case[eid] = (ce_id, label, [list(k) for k in keys or []])

    # 3. new entities, their identifiers
    new_keys = [k for k in parsed.ends if k not in entity_of]
    for chunk in _chunks(new_keys, WRITE_CHUNK):
        rows = [{"kind": parsed.ends[k][0], "created_by_id": actor.user_id, "created_at": at,
                 "updated_at": at} for k in chunk]
        ids = db.session.scalars(
            insert(Entity).returning(Entity.id, sort_by_parameter_order=True), rows).all()
        entity_of.update(zip(chunk, ids, strict=True))
        ident_rows = [{"entity_id": eid, "kind": k[0], "value": k[1],
                       "display": parsed.ends[k][2] or k[1], "created_by_id": actor.user_id,
                       "created_at": at}
                      for k, eid in zip(chunk, ids, strict=True) if not k[0].startswith("name:")]
        if ident_rows:
            db.session.execute(insert(Identifier), ident_rows)
    new_ids = {entity_of[k] for k in new_keys}
    out.entities_created = len(new_ids)

    # 4. membership of the case (with this case's label and entered identifier) for the
    # new ones and the existing ones not yet in it; an existing membership learns the
    # identifier and, if it had none, the label, as add_entity does
    keys_of: dict[int, list[tuple[str, str]]] = {}
    for key, eid in entity_of.items():
        if key in parsed.ends:
            keys_of.setdefault(eid, []).append(key)
    attached = sorted(set(existing_ids) - set(in_case))
    join = sorted(new_ids) + attached

    def membership(eid: int) -> dict[str, Any]:
        keys = keys_of[eid]
        return {"case_id": case.id, "entity_id": eid, "role": None,
                "label": parsed.ends[keys[0]][1] or keys[0][1][:LABEL_MAX],
                "props": dict(parsed.props.get(keys[0], {})),
                "identifier_keys": [list(k) for k in keys if not k[0].startswith("name:")],
                "added_by_id": actor.user_id, "added_at": at}

    for chunk in _chunks(join, WRITE_CHUNK):
        db.session.execute(insert(CaseEntity), [membership(eid) for eid in chunk])
    relabelled = []
    for eid, (ce_id, label, keys) in in_case.items():
        if eid not in keys_of:
            continue
        entered = [list(k) for k in keys_of[eid] if not k[0].startswith("name:")]
        more = [k for k in entered if k not in keys]
        values: dict[str, Any] = {}
        if more:
            values["identifier_keys"] = keys + more
        if not label:
            values["label"] = membership(eid)["label"]
            relabelled.append(eid)
        if values:
            db.session.execute(update(CaseEntity).where(CaseEntity.id == ce_id).values(**values))
    touched = sorted(set(attached) | set(relabelled))
    for chunk in _chunks(touched, LOOKUP_CHUNK):
        db.session.execute(update(Entity).where(Entity.id.in_(chunk)).values(updated_at=at))
    out.entities_attached = len(attached)
    _outbox("upsert_entity", sorted(new_ids) + touched, at)

    # 5. links: one per (source, target, type) of this import; a retried run merges
    ref = run.provenance_ref
    mine = {(lk.source_id, lk.target_id, lk.type): lk for lk in db.session.scalars(
        select(Link).where(Link.case_id == case.id, Link.provenance_kind == "import",
                           Link.provenance_ref == ref))}
    new_links: list[dict[str, Any]] = []
    changed: list[int] = []
    for (src, tgt, link_type), agg in parsed.links.items():
        s, t = entity_of[src], entity_of[tgt]
        if s == t:  # two spellings that turned out to be one entity: not a link
            continue
        amount = min(agg.amount, AMOUNT_MAX) if agg.amount is not None else None
        count = min(agg.count, 10**9)
        link = mine.get((s, t, link_type))
        if link is None:
            new_links.append({
                "case_id": case.id, "source_id": s, "target_id": t, "type": link_type,
                "provenance_kind": "import", "provenance_ref": ref,
                "entered_by_id": actor.user_id, "confidence": 1.0,
                "first_seen": _utc(agg.first), "last_seen": _utc(agg.last), "count": count,
                "amount": amount, "created_at": at, "updated_at": at})
        elif _merge(link, agg, count, amount):
            link.updated_at = at
            changed.append(link.id)
    for chunk in _chunks(new_links, WRITE_CHUNK):
        db.session.execute(insert(Link), chunk)  # executemany: no RETURNING row by row
    if new_links:  # this import's own links are exactly those with its provenance
        changed.extend(db.session.scalars(select(Link.id).where(
            Link.case_id == case.id, Link.provenance_kind == "import",
            Link.provenance_ref == ref, Link.id.not_in(list(changed) or [0]))))
    out.links_created = len(new_links)
    out.links_merged = len(parsed.links) - len(new_links)
    _outbox("upsert_link", changed, at)
    # a new USES/OWNS link may shield a survivor's phone or account (as add_link does)
    shielded = sorted({e for lk in new_links if lk["type"] in SHIELDING_LINK_TYPES
                       for e in (lk["source_id"], lk["target_id"])})
    _outbox("upsert_entity", shielded, at)
    if join or changed:
        case.updated_at = at
    out.entity_ids = sorted(set(entity_of.values()))

    # 6. every identifier goes into the cross-agency index, as add_entity does
    _register(actor, case, parsed, entity_of)
    return out


def _merge(link: Link, agg: Aggregate, count: int, amount: Decimal | None) -> bool:
    """As service._merge: the same source restating a link widens it, never doubles it."""
    before = (link.first_seen, link.last_seen, link.count, link.amount)
    first, last = _utc(agg.first), _utc(agg.last)
    if first is not None:
        link.first_seen = first if link.first_seen is None else min(link.first_seen, first)
    if last is not None:
        link.last_seen = last if link.last_seen is None else max(link.last_seen, last)
    link.count = max(link.count, count)
    if amount is not None:
        link.amount = amount if link.amount is None else max(link.amount, amount)
    return before != (link.first_seen, link.last_seen, link.count, link.amount)


def _outbox(op: str, object_ids: list[int], at: datetime) -> None:
    """The rows outbox.enqueue writes, many at a time, in this transaction."""
    for chunk in _chunks(sorted(object_ids), WRITE_CHUNK):
        db.session.execute(insert(GraphOutbox), [
            {"op": op, "object_id": oid, "created_at": at, "attempts": 0} for oid in chunk])


def _register(actor: Actor, case: Case, parsed: Parsed,
              entity_of: dict[tuple[str, str], int]) -> None:
    from taskforce.deconfliction import service as deconfliction

    found = [idents.Identifier(k[0], k[1], parsed.ends[k][2]) for k in parsed.ends
             if not k[0].startswith("name:")]
    # the bulk path (COPY on PostgreSQL), each identifier with its entity; the
    # second-degree check of these entities goes out after the commit (_after_commit)
    deconfliction.register_many(actor=actor, case_id=case.id, identifiers=found,
                                entity_ids=entity_of, commit=False, second_degree=False)


def _after_commit(entity_ids: list[int]) -> None:
    """What a service write sends after its commit: the outbox drain, and the
    second-degree deconfliction check of the entities whose links changed."""
    outbox.request_drain()
    if not entity_ids:
        return
    try:
        from taskforce.deconfliction import matching
        from taskforce.deconfliction import tasks as deconfliction_tasks
        from taskforce.jobs import dispatch

        if matching.graph_configured():
            dispatch(deconfliction_tasks.second_degree_for_entities, (entity_ids,))
    except Exception:  # the import is committed; the check runs again with the next change
        log.warning("import: could not start the second-degree check", exc_info=True)


# The service: starting, running, reading imports -------------------------------------------

def _ensure_open(case: Case) -> None:
    if case.status == "closed":
        raise Conflict("This case is closed; reopen it before importing into it.")


def visible_mappings(actor: Actor):
    """Mappings the actor may use: their own, and those shared with their agency."""
    reach = [ColumnMapping.owner_id == actor.user_id]
    if actor.agency_id is not None:
        reach.append(ColumnMapping.agency_id == actor.agency_id)
    return select(ColumnMapping).where(or_(*reach))


def get_mapping(*, actor: Actor, mapping_id: Any) -> ColumnMapping:
    row_id = _as_id(mapping_id)
    mapping = None
    if row_id is not None and actor.authenticated:
        mapping = db.session.scalar(visible_mappings(actor).where(ColumnMapping.id == row_id))
    if mapping is None:
        raise NotFound(_MAPPING_NOT_FOUND)
    return mapping


def _max_bytes() -> int:
    from flask import current_app, has_app_context

    from taskforce.evidence.storage import DEFAULT_MAX_BYTES

    if has_app_context():
        return int(current_app.config.get("EVIDENCE_MAX_BYTES") or DEFAULT_MAX_BYTES)
    return DEFAULT_MAX_BYTES


@dataclass
class Started:
    run: ImportRun
    created: bool  # False: this file was imported into this case before; nothing new made

    @property
    def message(self) -> str:
        if self.created:
            return f"Import {self.run.id} queued: {self.run.filename or 'file'} is stored as evidence."
        return (f"This file (SHA-256 {self.run.sha256[:12]}…) was already imported into this "
                f"case as import {self.run.id}; nothing new was created.")


def start_import(*, actor: Actor, case_id: Any, stream: BinaryIO, kind: Any,
                 filename: Any = None, mapping_id: Any = None, account: Any = None,
                 cell_sites: Any = None, dispatch: bool = True) -> Started:
    """Check the file, keep it as evidence and queue its import (or say it was imported).

    Needs contribute (WRITE) access to the case. Refusals (415 not CSV, 422 bad
    columns or options) write nothing but their audit record.
    """
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="import.start")
    _ensure_open(case)
    errors = FieldErrors()
    if isinstance(kind, str):
        kind = kind.strip().lower()
    kind = errors.choice("kind", kind, IMPORT_KINDS)
    options: dict[str, Any] = {}
    mapping = None
    if kind == "generic":
        if mapping_id in (None, ""):
            errors.add("mapping_id", "Choose a column mapping for a generic CSV.")
        else:
            mapping = get_mapping(actor=actor, mapping_id=mapping_id)
            options = mapping.as_options()
    if kind == "bank" and account not in (None, ""):
        if not isinstance(account, str):
            errors.add("account", "Must be text.")
        else:
            try:
                options["account"] = idents.normalize("bank_account", account).value
            except idents.InvalidIdentifier as exc:
                errors.add("account", exc.reason)
    if cell_sites not in (None, ""):
        if kind != "cdr" or cell_sites not in CELL_PARTIES:
            errors.add("cell_sites", "For call detail records only: caller or callee (whose "
                                     "cell site the file gives).")
        else:
            options["cell_sites"] = cell_sites
    errors.raise_if_any()
    case_pk = case.id
    try:
        spooled = spool(stream, max_bytes=_max_bytes())
        plan_for(kind, spooled.header, options)
    except DomainError as err:
        db.session.rollback()
        audit.record_now(actor=actor, action="import.start", outcome="failed",
                         object_type="case", object_id=case_pk, case_id=case_pk,
                         details={"kind": kind, "reason": err.code,
                                  "message": err.message[:300]})
        raise
    try:
        return _start(actor=actor, case_id=case_pk, kind=kind, filename=filename,
                      options=options, mapping=mapping, spooled=spooled, dispatch=dispatch)
    finally:
        spooled.close()


def _start(*, actor: Actor, case_id: int, kind: str, filename: Any, options: dict[str, Any],
           mapping: ColumnMapping | None, spooled: Spooled, dispatch: bool) -> Started:
    from taskforce.evidence import service as evidence
    from taskforce.evidence.service import clean_filename

    existing = db.session.scalar(select(ImportRun).where(ImportRun.case_id == case_id,
                                                         ImportRun.sha256 == spooled.sha256))
    if existing is not None:
        return _repeat(actor, existing, dispatch=dispatch)
    name = clean_filename(filename)
    item = evidence.ingest(
        actor=actor, case_id=case_id, stream=spooled.file, filename=name,
        description=f"{IMPORT_KINDS[kind]} imported into the case graph"
                    + (f" ({name})" if name else ""),
        source="import", expected_sha256=spooled.sha256)
    run = ImportRun(case_id=case_id, kind=kind, status="queued", sha256=spooled.sha256,
                    size=spooled.size, filename=name, evidence_item_id=item.id,
                    mapping_id=mapping.id if mapping is not None else None, options=options,
                    bad_rows=[], created_by_id=actor.user_id, created_at=now())
    db.session.add(run)
    db.session.flush()
    audit.record(actor=actor, action="import.start", object_type="import", object_id=run.id,
                 case_id=case_id, details={"kind": kind, "sha256": spooled.sha256,
                                           "size": spooled.size, "evidence": item.number,
                                           "mapping_id": run.mapping_id})
    try:
        db.session.commit()
    except IntegrityError:  # the same file, at the same moment, from someone else
        db.session.rollback()
        other = db.session.scalar(select(ImportRun).where(ImportRun.case_id == case_id,
                                                          ImportRun.sha256 == spooled.sha256))
        if other is None:
            raise Conflict("Another import got there first; reload and check.") from None
        return _repeat(actor, other, dispatch=False)
    run_id = run.id
    if dispatch:
        dispatch_run(run_id)
    return Started(run=db.session.get(ImportRun, run_id, populate_existing=True), created=True)


def _repeat(actor: Actor, run: ImportRun, *, dispatch: bool) -> Started:
    """The same file again. A failed run is queued again (its evidence item is reused);
    otherwise nothing is done and the answer is the earlier run."""
    retry = run.status == "failed"
    audit.record(actor=actor, action="import.repeat", object_type="import", object_id=run.id,
                 case_id=run.case_id, details={"sha256": run.sha256, "status": run.status,
                                               "retried": retry})
    if retry:
        run.status, run.error = "queued", None
    db.session.commit()
    run_id = run.id
    if retry and dispatch:
        dispatch_run(run_id)
    return Started(run=db.session.get(ImportRun, run_id, populate_existing=True),
                   created=False)


def dispatch_run(run_id: int) -> None:
    """Send the job (in-process when Celery runs eagerly: then it is done on return).
    If the broker cannot take it, the run is marked failed with the reason, so that
    importing the same file again queues it again instead of waiting forever."""
    from taskforce.graph import tasks
    from taskforce.jobs import dispatch

    try:
        dispatch(tasks.run_import, (run_id,))
    except Exception as exc:  # the broker is down: the file is kept; say so
        log.warning("import %s: could not queue the job", run_id, exc_info=True)
        _fail(run_id, f"Could not queue the import job ({type(exc).__name__}); "
                      "import the same file again to retry.")


def run(run_id: int, *, progress: Callable[[int, int], None] | None = None) -> ImportRun | None:
    """Run a queued import: parse, aggregate, write, in one transaction. Never raises for
    a failure of the file or the stores: the run is marked failed with the reason.

    `progress(bytes_read, size)` is called while parsing (the CLI's progress bar); the
    live status on the page reads the run's counters, written every PROGRESS_SECONDS.
    """
    imp = db.session.get(ImportRun, run_id)
    if imp is None or imp.status == "done":
        return imp  # a redelivered job: done already
    case_id, size = imp.case_id, imp.size
    user = db.session.get(User, imp.created_by_id) if imp.created_by_id else None
    if user is None or not user.active:
        return _fail(run_id, "The user who started this import can no longer act.")
    actor = Actor.for_user(user)
    db.session.execute(update(ImportRun).where(ImportRun.id == run_id).values(
        status="running", started_at=now(), finished_at=None, error=None, rows_read=0,
        rows_loaded=0, rows_bad=0, rows_skipped=0, bytes_read=0, bad_rows=[]))
    db.session.commit()
    try:
        from taskforce.evidence import service as evidence

        imp = db.session.get(ImportRun, run_id)
        plan_options = dict(imp.options or {})
        download = evidence.download(actor=actor, item_id=imp.evidence_item_id,
                                     place="graph import",
                                     reason=f"Read by import {run_id} to load the case graph")
        chunks = iter(download.chunks)
        first = next(chunks, b"")
        head_text = first.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
        header = [c.strip() for c in next(csv.reader([head_text]), [])]
        plan = plan_for(imp.kind, header, plan_options)

        def chained() -> Iterator[bytes]:
            yield first
            yield from chunks

        def report(parsed: Parsed) -> None:
            db.session.execute(update(ImportRun).where(ImportRun.id == run_id).values(
                rows_read=parsed.rows_read, rows_loaded=parsed.rows_loaded,
                rows_bad=parsed.rows_bad, bytes_read=parsed.bytes_read))
            db.session.commit()
            if progress is not None:
                progress(parsed.bytes_read, size)

        parsed = parse(plan, chained(), progress=report)
        if progress is not None:
            progress(parsed.bytes_read, size)
        if parsed.sha256 != imp.sha256:
            raise Conflict(f"The stored bytes do not match the file's SHA-256 ({imp.sha256}): "
                           "the evidence store returned something else. Nothing was loaded.")
        for attempt in (1, 2):
            try:
                written = _write_and_commit(actor, case_id, run_id, parsed)
                break
            except IntegrityError:
                # another import or entry made one of these identifiers at the same
                # moment: once more, now that it exists it is attached instead
                db.session.rollback()
                if attempt == 2:
                    raise
    except DomainError as err:
        return _fail(run_id, err.message, actor=actor)
    except Exception as exc:  # a store or database failure: say so, keep going
        log.exception("import %s failed", run_id)
        return _fail(run_id, f"{type(exc).__name__}: {str(exc)[:500]}", actor=actor)
    _after_commit(written.entity_ids)
    return db.session.get(ImportRun, run_id)


def _write_and_commit(actor: Actor, case_id: int, run_id: int, parsed: Parsed) -> Written:
    # Access is checked again: it may have been withdrawn while the file was read.
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="import.run")
    _ensure_open(case)
    imp = db.session.get(ImportRun, run_id)
    written = write(actor=actor, case=case, run=imp, parsed=parsed)
    imp.status, imp.finished_at = "done", now()
    imp.rows_read, imp.rows_loaded = parsed.rows_read, parsed.rows_loaded
    imp.rows_bad, imp.rows_skipped = parsed.rows_bad, parsed.rows_skipped
    imp.bad_rows, imp.bytes_read = parsed.bad_rows, parsed.bytes_read
    imp.entities_created, imp.entities_attached = (written.entities_created,
                                                   written.entities_attached)
    imp.links_created, imp.links_merged = written.links_created, written.links_merged
    audit.record(actor=actor, action="import.load", object_type="import", object_id=run_id,
                 case_id=case_id,
                 details={"kind": imp.kind, "rows_read": parsed.rows_read,
                          "rows_loaded": parsed.rows_loaded, "rows_bad": parsed.rows_bad,
                          "rows_skipped": parsed.rows_skipped,
                          "entities_created": written.entities_created,
                          "entities_attached": written.entities_attached,
                          "links_created": written.links_created,
                          "links_merged": written.links_merged,
                          "provenance_ref": imp.provenance_ref})
    db.session.commit()
    return written


def _fail(run_id: int, message: str, *, actor: Actor | None = None) -> ImportRun | None:
    db.session.rollback()
    db.session.execute(update(ImportRun).where(ImportRun.id == run_id).values(
        status="failed", error=message[:2000], finished_at=now()))
    imp = db.session.get(ImportRun, run_id)
    audit.record(actor=actor or Actor.system("graph import"), action="import.load",
                 outcome="failed", object_type="import", object_id=run_id,
                 case_id=imp.case_id if imp else None, details={"error": message[:300]})
    db.session.commit()
    return db.session.get(ImportRun, run_id)


def _run_or_404(actor: Actor, run_id: Any, *, attempt: str) -> tuple[ImportRun, Case]:
    row_id = _as_id(run_id)
    imp = db.session.get(ImportRun, row_id) if row_id is not None else None
    if imp is None:
        audit.record_now(actor=actor, action=attempt, outcome="denied", object_type="import",
                         object_id=run_id, details={"reason": "no such import"})
        raise NotFound(_NOT_FOUND)
    try:
        case = get_case_or_404(actor=actor, case_id=imp.case_id, action=READ, attempt=attempt)
    except NotFound:
        raise NotFound(_NOT_FOUND) from None
    return imp, case


def get_import(*, actor: Actor, run_id: Any) -> ImportRun:
    """One import, if its case is shared with the actor (else NotFound, as for none)."""
    imp, case = _run_or_404(actor, run_id, attempt="import.read")
    audit.record(actor=actor, action="import.read", object_type="import", object_id=imp.id,
                 case_id=case.id, details={"status": imp.status})
    db.session.commit()
    return imp


@dataclass
class CaseImports:
    case: Case
    runs: list[ImportRun]
    can_import: bool
    mappings: list[ColumnMapping]


def list_imports(*, actor: Actor, case_id: Any) -> CaseImports:
    """The case's imports, newest first, and the mappings the actor may use."""
    from taskforce.investigations import policy as case_policy

    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="import.list")
    runs = list(db.session.scalars(select(ImportRun).where(ImportRun.case_id == case.id)
                                   .order_by(ImportRun.id.desc())))
    mappings = list(db.session.scalars(visible_mappings(actor).order_by(ColumnMapping.name)))
    audit.record(actor=actor, action="import.list", object_type="case", object_id=case.id,
                 case_id=case.id, details={"returned": len(runs)})
    db.session.commit()
    can = case_policy.access(actor, case) >= WRITE and case.status != "closed"
    return CaseImports(case=case, runs=runs, can_import=can, mappings=mappings)


# Column mappings -------------------------------------------------------------------------

def list_mappings(*, actor: Actor) -> list[ColumnMapping]:
    mappings = list(db.session.scalars(visible_mappings(actor).order_by(ColumnMapping.name)))
    audit.record(actor=actor, action="import_mapping.list", object_type="column_mapping",
                 details={"returned": len(mappings)})
    db.session.commit()
    return mappings


def save_mapping(*, actor: Actor, name: Any, source_column: Any, source_kind: Any,
                 target_column: Any, target_kind: Any, link_type: Any, date_column: Any = None,
                 amount_column: Any = None, shared: Any = False,
                 mapping_id: Any = None) -> ColumnMapping:
    """Create a mapping (or change one of the actor's own). `shared` keeps it for the
    actor's whole agency; otherwise only its owner sees it."""
    if not actor.authenticated:
        raise NotFound(_MAPPING_NOT_FOUND)
    mapping = None
    if mapping_id not in (None, ""):
        mapping = get_mapping(actor=actor, mapping_id=mapping_id)
        if mapping.owner_id != actor.user_id:
            audit.record_now(actor=actor, action="import_mapping.save", outcome="denied",
                             object_type="column_mapping", object_id=mapping.id)
            from taskforce.errors import Forbidden

            raise Forbidden("Only the person who made this mapping may change it.")
    errors = FieldErrors()
    values: dict[str, Any] = {
        "name": errors.text("name", name, max_len=NAME_MAX),
        "source_column": errors.text("source_column", source_column, max_len=NAME_MAX),
        "target_column": errors.text("target_column", target_column, max_len=NAME_MAX),
        "date_column": errors.text("date_column", date_column, max_len=NAME_MAX,
                                   required=False) or None,
        "amount_column": errors.text("amount_column", amount_column, max_len=NAME_MAX,
                                     required=False) or None,
    }
    for role, value in (("source_kind", source_kind), ("target_kind", target_kind)):
        values[role] = errors.choice(role, value.strip().lower() if isinstance(value, str)
                                     else value, MAPPABLE_KINDS)
    lt = link_type.strip().upper() if isinstance(link_type, str) else link_type
    values["link_type"] = errors.choice("link_type", lt, LINK_TYPES)
    if values["link_type"] in ("LIVES_AT", "STAYED_AT") and values["target_kind"] \
            and values["target_kind"] != "address":
        errors.add("target_kind", f"{values['link_type']} ends at a location (address).")
    if values["link_type"] == "WORKS_AT" and values["target_kind"] \
            and values["target_kind"] != "address":
        errors.add("target_kind", "WORKS_AT ends at a location (address).")
    cols = [values[c] for c in ("source_column", "target_column", "date_column",
                                "amount_column") if values[c]]
    if len({_column_key(c) for c in cols}) != len(cols):
        errors.add("target_column", "Each role needs a column of its own.")
    for key, value in values.items():
        if isinstance(value, str) and "\x00" in value:
            errors.add(key, "Must not contain NUL characters.")
    errors.raise_if_any()
    at = now()
    agency = actor.agency_id if shared in (True, "1", "on", "true", "yes") else None
    if mapping is None:
        mapping = ColumnMapping(owner_id=actor.user_id, created_at=at, **values)
        db.session.add(mapping)
    else:
        for key, value in values.items():
            setattr(mapping, key, value)
    mapping.agency_id = agency
    mapping.updated_at = at
    db.session.flush()
    audit.record(actor=actor, action="import_mapping.save", object_type="column_mapping",
                 object_id=mapping.id, details={"name": mapping.name, "shared": agency is not None,
                                                "link_type": mapping.link_type})
    db.session.commit()
    return mapping


def delete_mapping(*, actor: Actor, mapping_id: Any) -> None:
    mapping = get_mapping(actor=actor, mapping_id=mapping_id)
    if mapping.owner_id != actor.user_id:
        from taskforce.errors import Forbidden

        audit.record_now(actor=actor, action="import_mapping.delete", outcome="denied",
                         object_type="column_mapping", object_id=mapping.id)
        raise Forbidden("Only the person who made this mapping may delete it.")
    db.session.execute(update(ImportRun).where(ImportRun.mapping_id == mapping.id)
                       .values(mapping_id=None))  # past imports keep it in their options
    audit.record(actor=actor, action="import_mapping.delete", object_type="column_mapping",
                 object_id=mapping.id, details={"name": mapping.name})
    db.session.delete(mapping)
    db.session.commit()


def status_of(imp: ImportRun) -> dict[str, Any]:
    """The live status the page polls (and the API returns)."""
    total = max(int(imp.size or 0), 1)
    done = imp.status in ("done", "failed")
    return {
        "id": imp.id, "case_id": imp.case_id, "kind": imp.kind, "status": imp.status,
        "filename": imp.filename, "sha256": imp.sha256, "size": imp.size,
        "evidence_item_id": imp.evidence_item_id, "mapping_id": imp.mapping_id,
        "progress": 1.0 if done else round(min(int(imp.bytes_read or 0) / total, 1.0), 4),
        "rows_read": imp.rows_read, "rows_loaded": imp.rows_loaded, "rows_bad": imp.rows_bad,
        "rows_skipped": imp.rows_skipped, "bad_rows": imp.bad_rows or [],
        "entities_created": imp.entities_created, "entities_attached": imp.entities_attached,
        "links_created": imp.links_created, "links_merged": imp.links_merged,
        "provenance_ref": imp.provenance_ref, "error": imp.error,
        "created_by": imp.created_by.username if imp.created_by is not None else None,
        "created_at": imp.created_at, "started_at": imp.started_at,
        "finished_at": imp.finished_at,
    }


# The case timeline: each import, when it was loaded ----------------------------------------

def _register_timeline() -> None:
    from taskforce.investigations import timeline

    @timeline.timeline_source("import")
    def _imports_timeline(case: Case, actor: Actor):
        """One event per import (its calls and payments appear through their links)."""
        for imp in db.session.scalars(select(ImportRun).where(ImportRun.case_id == case.id)):
            who = imp.created_by.username if imp.created_by is not None else None
            what = IMPORT_KINDS[imp.kind].lower()
            if imp.status == "done":
                summary = (f"Imported {what}: {imp.rows_loaded:,} rows loaded, "
                           f"{imp.rows_bad:,} bad; {imp.links_created:,} links")
            else:
                summary = f"Import of {what} {imp.status}"
            yield timeline.TimelineEvent(
                at=imp.finished_at or imp.created_at, kind="import", summary=summary, actor=who,
                detail=f"{imp.filename or 'file'} · SHA-256 {imp.sha256} · "
                       f"source {imp.provenance_ref}",
                object_type="import", object_id=imp.id)


_register_timeline()
