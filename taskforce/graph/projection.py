"""The Neo4j projection of entities and links: the only code that writes the graph.

The relational database is the system of record (DESIGN.md, "Where the truth
lives"); this module makes Neo4j hold a copy of it that graph questions can be
asked of. Every function is idempotent, so the outbox drain may replay any batch:

* ``upsert_entities`` / ``upsert_links`` ``MERGE`` on the stable ``id`` and then set
  every property, in ``UNWIND`` batches of ``BATCH_SIZE`` rows per transaction;
  replaying a batch changes nothing.
* A link whose endpoint has not arrived yet ``MERGE``s a bare ``:Entity {id}`` for it
  (no ``cases``, so no query shows it); the entity's own upsert fills it in later.
  The order of arrival therefore does not matter.
* A link whose type or endpoints changed (entity merge/unmerge re-points links) is
  moved: the old relationship with that id is deleted in the same transaction.

Graph model::

    (:Entity:<Kind> {id, kind, label, cases, case_labels, survivor, minor})

``case_labels[i]`` is what case ``cases[i]`` calls the entity (need to know: a
question answers with the label of a case the reader may read); ``label`` is only
the kind (or a survivor's pseudonym), never one case's words.
    -[:<TYPE> {id, cases, first_seen, last_seen, confidence, count, amount}]->
    (:Entity:<Kind>)

Labels and relationship types cannot be query parameters, so they are only ever
taken from the allow-lists below (``KIND_LABELS``, ``LINK_TYPES``), never from input.

Needs an application context (the one graph client, ``taskforce.graph.client``).
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

from taskforce.graph import client

__all__ = [
    "BATCH_SIZE",
    "KIND_LABELS",
    "LINK_TYPES",
    "clear",
    "delete_entities",
    "delete_links",
    "ensure_schema",
    "kind_label",
    "link_rows_by_id",
    "snapshot",
    "upsert_entities",
    "upsert_links",
]

BATCH_SIZE = 5_000

LINK_TYPES: tuple[str, ...] = (
    "CALLED", "TEXTED", "PAID", "OWNS", "USES", "LIVES_AT", "STAYED_AT", "WORKS_AT",
    "RECRUITED", "CONTROLS", "ADVERTISED", "ASSOCIATED_WITH",
)

# Entity kind (as the database spells it) -> node label. Aliases in investigators'
# words map to the same label.
KIND_LABELS: dict[str, str] = {
    "person": "Person",
    "location": "Location",
    "phone": "Phone",
    "email": "Email",
    "bank_account": "BankAccount",
    "crypto_wallet": "CryptoWallet",
    "online_account": "OnlineAccount",
    "ad": "Ad",
    "vehicle": "Vehicle",
    "organization": "Organization",
}
_ALIASES = {"organisation": "organization", "business": "organization", "online_ad": "ad"}
_LABEL_SET = frozenset(KIND_LABELS.values())
_ALL_KIND_LABELS = ":".join(sorted(_LABEL_SET))

# Link properties, in snapshot order.
_LINK_PROPS = ("id", "cases", "first_seen", "last_seen", "confidence", "count", "amount")
_ENTITY_PROPS = ("id", "kind", "label", "cases", "survivor", "minor")


# --------------------------------------------------------------------------- validation

def kind_label(kind: str) -> str:
    """The node label for an entity kind: ``"bank_account"``, ``"BankAccount"`` and
    ``"bank account"`` all give ``"BankAccount"``. ValueError for anything else."""
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError("an entity kind is required")
    if kind in _LABEL_SET:
        return kind
    key = kind.strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    label = KIND_LABELS.get(key)
    if label is None:
        folded = {lab.lower(): lab for lab in _LABEL_SET}
        label = folded.get(key.replace("_", ""))
    if label is None:
        raise ValueError(f"unknown entity kind {kind!r}; known: {', '.join(KIND_LABELS)}")
    return label


def link_type(value: str) -> str:
    """The relationship type for a link type, checked against the allow-list."""
    t = value.strip().upper() if isinstance(value, str) else value
    if t not in LINK_TYPES:
        raise ValueError(f"unknown link type {value!r}; known: {', '.join(LINK_TYPES)}")
    return t


def _id(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise ValueError(f"{what} must be a non-empty string")
    return str(value)


def _cases(value: Any, what: str) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{what}: cases must be a list of case ids")  # noqa: TRY004
    out: set[int] = set()
    for c in value:
        if isinstance(c, bool) or not isinstance(c, int):
            raise ValueError(f"{what}: case ids must be integers, not {c!r}")  # noqa: TRY004
        out.add(c)
    return sorted(out)


def to_datetime(value: Any, what: str) -> datetime | None:
    """ISO 8601 text (a date, or a date and time with or without offset), a date or a
    datetime -> an aware datetime (UTC when no offset is given). None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not an ISO 8601 date or date-time") from None
    else:
        raise ValueError(f"{what}: {value!r} is not an ISO 8601 date or date-time")  # noqa: TRY004
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _number(value: Any, what: str, *, integer: bool = False) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number")  # noqa: TRY004 (callers map ValueError to 422)
    try:
        num = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, not {value!r}") from None
    if not integer and not math.isfinite(num):
        raise ValueError(f"{what} must be a finite number")
    return num


def _entity_row(row: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    eid = _id(row.get("id"), "entity id")
    what = f"entity {eid}"
    label = kind_label(row.get("kind"))
    cases = _cases(row.get("cases"), what)
    case_labels = row.get("case_labels")
    if case_labels is not None:
        raw = row.get("cases")
        if isinstance(case_labels, (str, bytes)) or not isinstance(case_labels, Iterable) \
                or raw is None or len(list(case_labels)) != len(list(raw)):
            raise ValueError(f"{what}: case_labels must give one label per case")
        by_case = dict(zip(list(raw), ["" if v is None else str(v) for v in case_labels],
                           strict=True))
        case_labels = [by_case[c] for c in cases]
    return label, {
        "id": eid,
        "kind": str(row["kind"]),
        "label": "" if row.get("label") is None else str(row["label"]),
        "cases": cases,
        "case_labels": case_labels,
        "survivor": bool(row.get("survivor", False)),
        "minor": bool(row.get("minor", False)),
    }


def _link_row(row: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    lid = _id(row.get("id"), "link id")
    what = f"link {lid}"
    type_ = link_type(row.get("type"))
    source = _id(row.get("source"), f"{what}: source")
    target = _id(row.get("target"), f"{what}: target")
    confidence = _number(row.get("confidence", 1.0), f"{what}: confidence")
    if confidence is None:
        confidence = 1.0
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"{what}: confidence must be between 0 and 1")
    count = _number(row.get("count", 1), f"{what}: count", integer=True)
    first = to_datetime(row.get("first_seen"), f"{what}: first_seen")
    last = to_datetime(row.get("last_seen"), f"{what}: last_seen")
    if first and last and last < first:
        raise ValueError(f"{what}: last_seen is before first_seen")
    return type_, {
        "id": lid, "type": type_, "source": source, "target": target,
        "cases": _cases(row.get("cases"), what),
        # Sent as ISO 8601 text and made a datetime by Cypher: the driver's packing of
        # Python datetimes costs ~60 us a value, a tenth of the whole row.
        "first_seen": first.isoformat() if first else None,
        "last_seen": last.isoformat() if last else None,
        "confidence": confidence, "count": 1 if count is None else count,
        "amount": _number(row.get("amount"), f"{what}: amount"),
    }


def _batches(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    size = BATCH_SIZE
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


def _last_per_id(rows: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, tuple[str, dict]]:
    """Rows keyed by id, the last one winning (as the outbox's order says)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for key, row in rows:
        out.pop(row["id"], None)
        out[row["id"]] = (key, row)
    return out


# --------------------------------------------------------------------------- schema

def ensure_schema() -> None:
    """The uniqueness constraint on ``Entity.id`` and a range index on ``id`` of every
    relationship type, which every lookup of a link uses. Idempotent (``IF NOT
    EXISTS``); waits until they are online."""
    client.write("CREATE CONSTRAINT entity_id IF NOT EXISTS "
                 "FOR (n:Entity) REQUIRE n.id IS UNIQUE")
    for t in LINK_TYPES:
        client.write(f"CREATE INDEX link_id_{t.lower()} IF NOT EXISTS "
                     f"FOR ()-[r:{t}]-() ON (r.id)")
    client.write("CALL db.awaitIndexes(300)", timeout=None)


# --------------------------------------------------------------------------- writes

def upsert_entities(rows: list[dict]) -> int:
    """Create or update entity nodes; returns the number of rows written.

    Rows: ``{"id", "kind", "label", "cases", "survivor", "minor"}`` and optionally
    ``"case_labels"`` (one per case, in the order of ``cases``). A change of kind
    moves the node to the new kind label. Bad rows raise ValueError before anything
    is written.
    """
    checked = _last_per_id(_entity_row(r) for r in rows)
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for label, row in checked.values():
        by_label[label].append(row)
    written = 0
    for label, label_rows in by_label.items():
        cypher = (
            "UNWIND $rows AS row "
            "MERGE (n:Entity {id: row.id}) "
            f"REMOVE n:{_ALL_KIND_LABELS} "
            f"SET n:{label}, n.kind = row.kind, n.label = row.label, n.cases = row.cases, "
            "n.case_labels = row.case_labels, n.survivor = row.survivor, n.minor = row.minor "
            "RETURN count(*) AS n"
        )
        for batch in _batches(label_rows):
            written += client.write(cypher, rows=batch)[0]["n"]
    return written


def _find_links_by_id(var: str = "r", row_var: str = "row") -> str:
    """A ``CALL`` subquery that finds the relationship (of any allowed type) whose id
    is ``row_var.id``: one branch per type, each a seek on that type's id index (an
    untyped ``()-[r {id: ...}]->()`` could use no index). Yields ``var``."""
    # The hint matters: the planner may otherwise pick (and, for a plain USING INDEX,
    # still pick) an index *scan* of a large type, filtered once per row.
    branches = " UNION ALL ".join(
        f"MATCH ()-[x:{t} {{id: {row_var}.id}}]->() USING INDEX SEEK x:{t}(id) RETURN x AS {var}"
        for t in LINK_TYPES)
    return f"CALL ({row_var}) {{ {branches} }}"


def upsert_links(rows: list[dict]) -> int:
    """Create or update link relationships; returns the number of rows written.

    Rows: ``{"id", "type", "source", "target", "cases", "first_seen", "last_seen",
    "confidence", "count", "amount"}`` (dates as ISO 8601 text; stored as Neo4j
    ``datetime``). Missing endpoints are created bare and filled in by their own
    upsert. Bad rows raise ValueError before anything is written.
    """
    checked = _last_per_id(_link_row(r) for r in rows)
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for type_, row in checked.values():
        by_type[type_].append(row)
    written = 0
    for type_, type_rows in by_type.items():
        # One transaction per batch: (1) drop a relationship that has this id but
        # another type or other endpoints (a re-pointed link), found by a seek on each
        # type's id index (hinted: the planner, left alone, has been seen to scan a
        # whole type's index once per row once the graph grew); (2) MERGE the
        # endpoints and the relationship (MERGE's locks keep two writers from
        # creating the same id twice), then set its properties.
        cypher = (
            "UNWIND $rows AS row "
            f"{_find_links_by_id('old', 'row')} "
            "WITH row, old "
            "WHERE type(old) <> row.type OR startNode(old).id <> row.source "
            "   OR endNode(old).id <> row.target "
            "DELETE old "
            "WITH count(*) AS moved "
            "UNWIND $rows AS row "
            "MERGE (s:Entity {id: row.source}) "
            "MERGE (t:Entity {id: row.target}) "
            f"MERGE (s)-[r:{type_} {{id: row.id}}]->(t) "
            "SET r.cases = row.cases, r.first_seen = datetime(row.first_seen), "
            "r.last_seen = datetime(row.last_seen), r.confidence = row.confidence, "
            "r.count = row.count, r.amount = row.amount "
            "RETURN count(*) AS n"
        )
        for batch in _batches(type_rows):
            written += client.write(cypher, rows=batch)[0]["n"]
    return written


def link_rows_by_id(ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stored links with these ids (any type), as upsert rows; for checks."""
    rows = [{"id": _id(i, "link id")} for i in ids]
    out: dict[str, dict[str, Any]] = {}
    for batch in _batches(rows):
        for rec in client.read(
            "UNWIND $rows AS row " + _find_links_by_id("r", "row") +
            " RETURN r {.*, type: type(r), source: startNode(r).id,"
            " target: endNode(r).id} AS link", rows=batch,
        ):
            link = _plain(rec["link"])
            out[link["id"]] = link
    return out


def delete_entities(ids: list[str]) -> int:
    """``DETACH DELETE`` the entity nodes with these ids (their links go with them);
    returns how many nodes were deleted. Unknown ids are ignored."""
    rows = sorted({_id(i, "entity id") for i in ids})
    deleted = 0
    for batch in _batches([{"id": i} for i in rows]):
        deleted += client.write(
            "UNWIND $rows AS row MATCH (n:Entity {id: row.id}) DETACH DELETE n "
            "RETURN count(*) AS n", rows=batch)[0]["n"]
    return deleted


def delete_links(ids: list[str]) -> int:
    """Delete the relationships with these link ids; returns how many were deleted.
    Unknown ids are ignored. Endpoints stay."""
    rows = sorted({_id(i, "link id") for i in ids})
    deleted = 0
    for batch in _batches([{"id": i} for i in rows]):
        deleted += client.write(
            "UNWIND $rows AS row " + _find_links_by_id("r", "row") +
            " DELETE r RETURN count(*) AS n", rows=batch)[0]["n"]
    return deleted


def clear() -> None:
    """Remove every entity and link from the graph (schema stays), in transactions of
    10,000 nodes so a large graph does not need one huge transaction."""
    while True:
        done = client.write(
            "MATCH (n:Entity) WITH n LIMIT 10000 DETACH DELETE n RETURN count(*) AS n",
            timeout=None)[0]["n"]
        if not done:
            return


# --------------------------------------------------------------------------- reading back

def _plain(value: Any) -> Any:
    """Neo4j temporal values -> ISO 8601 text (UTC); lists and maps recursively."""
    if hasattr(value, "to_native"):
        value = value.to_native()
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def snapshot() -> dict:
    """Every entity and link in a canonical, order-independent form, for equality tests:
    ``{"nodes": [...], "links": [...]}`` sorted by id, labels sorted, dates in UTC."""
    nodes = client.read(
        "MATCH (n:Entity) RETURN n.id AS id, labels(n) AS labels, properties(n) AS props",
        timeout=None)
    links = client.read(
        "MATCH (s:Entity)-[r]->(t:Entity) RETURN r.id AS id, type(r) AS type, "
        "s.id AS source, t.id AS target, properties(r) AS props", timeout=None)
    return {
        "nodes": sorted(
            ({"id": n["id"], "labels": sorted(n["labels"]),
              "props": {k: _plain(v) for k, v in sorted(n["props"].items())}} for n in nodes),
            key=lambda n: str(n["id"])),
        "links": sorted(
            ({"id": r["id"], "type": r["type"], "source": r["source"], "target": r["target"],
              "props": {k: _plain(v) for k, v in sorted(r["props"].items())}} for r in links),
            key=lambda r: (str(r["id"]), r["type"], str(r["source"]), str(r["target"]))),
    }
