"""A case network in the formats other tools read: FollowTheMoney JSON lines (OCCRP
Aleph), CSV for i2 Analyst's Notebook (nodes.csv / links.csv) and GraphML.

Pure writers: they take the network as schemas.network_out serialised it for one
reader (survivors and what they use already pseudonymised, details withheld where
the reader may not see them), so an export shows exactly what the page shows and
cannot forget to redact. The service (service.export_case) loads, audits and calls
these; nothing here touches the database.

FollowTheMoney has no schema for a phone or an email address (they are property
values there), so:

* a person keeps, in ``Person.phone`` / ``Person.email``, the numbers and addresses
  of the phones and emails the case says they USE or OWN;
* each phone and email is also a ``LegalEntity`` (a concrete Thing: "whoever holds
  this number") carrying that ``phone``/``email``, so links to it keep their end;
* calls and texts become ``Call`` (with ``callerNumber``/``receiverNumber``),
  payments ``Payment``, ownership of an asset ``Ownership``, work ``Employment``,
  ties between people ``Associate``, and anything else ``UnknownLink`` (its ``role``
  says the link type).
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

ID_PREFIX = "tf"

FTM_ENTITY_SCHEMA = {
    "person": "Person",
    "location": "Address",
    "phone": "LegalEntity",
    "email": "LegalEntity",
    "bank_account": "BankAccount",
    "crypto_wallet": "CryptoWallet",
    "online_account": "UserAccount",
    "ad": "Article",
    "vehicle": "Vehicle",
    "organization": "Organization",
}
_ASSETS = {"bank_account", "vehicle"}  # FtM Asset subtypes we have
_LEGAL = {"person", "phone", "email", "organization"}  # FtM LegalEntity (or a subtype)
_SEXES = {"female": "female", "male": "male", "other": "other"}

# i2 Analyst's Notebook entity types by kind (its standard palette names).
I2_TYPES = {
    "person": "Person", "location": "Address", "phone": "Telephone", "email": "Email Address",
    "bank_account": "Account", "crypto_wallet": "Account", "online_account": "Internet Account",
    "ad": "Document", "vehicle": "Vehicle", "organization": "Organization",
}


def entity_ftm_id(entity_id: int) -> str:
    return f"{ID_PREFIX}-entity-{entity_id}"


def link_ftm_id(link_id: int) -> str:
    return f"{ID_PREFIX}-link-{link_id}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _day(value: Any) -> str | None:
    """FtM dates: ISO 8601, to the second at most, no offset."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    return _text(value)[:19]


def _idents(entity: dict, kind: str) -> list[str]:
    return [i["value"] for i in entity.get("identifiers", []) if i["kind"] == kind]


def _put(props: dict[str, list[str]], name: str, *values: Any) -> None:
    for v in values:
        if v not in (None, "", []):
            props.setdefault(name, [])
            if str(v) not in props[name]:
                props[name].append(str(v))


# FollowTheMoney ------------------------------------------------------------------------

def ftm_lines(network: dict) -> list[str]:
    """One FollowTheMoney entity per line (``{"id", "schema", "properties"}``), entities
    first, then the links as interval entities."""
    entities = {e["id"]: e for e in network["entities"]}
    uses: dict[int, list[int]] = {}
    for lk in network["links"]:
        if lk["type"] in ("USES", "OWNS"):
            a, b = lk["source"]["id"], lk["target"]["id"]
            uses.setdefault(a, []).append(b)
            uses.setdefault(b, []).append(a)
    out: list[dict] = []
    for e in network["entities"]:
        props: dict[str, list[str]] = {}
        p = e.get("props") or {}
        _put(props, "name", e["label"])
        _put(props, "notes", p.get("notes"))
        kind = e["kind"]
        if kind == "person":
            _put(props, "alias", *(p.get("aliases") or []),
                 *[n for n in p.get("names") or [] if n != e["label"]])
            _put(props, "birthDate", p.get("dob"))
            _put(props, "gender", _SEXES.get(p.get("sex")))
            for other in uses.get(e["id"], []):
                near = entities.get(other)
                if near is not None and near["kind"] == "phone":
                    _put(props, "phone", *_idents(near, "phone"))
                if near is not None and near["kind"] == "email":
                    _put(props, "email", *_idents(near, "email"))
        elif kind == "location":
            _put(props, "full", p.get("address") or e["label"])
            if p.get("lat") is not None and p.get("lon") is not None:
                _put(props, "latitude", p["lat"])
                _put(props, "longitude", p["lon"])
        elif kind == "phone":
            _put(props, "phone", *_idents(e, "phone"))
        elif kind == "email":
            _put(props, "email", *_idents(e, "email"))
        elif kind == "bank_account":
            _put(props, "accountNumber", *_idents(e, "bank_account"))
            _put(props, "bankName", p.get("bank"))
        elif kind == "crypto_wallet":
            _put(props, "publicKey", *_idents(e, "crypto_wallet"))
        elif kind == "online_account":
            _put(props, "username", p.get("handle"), *_idents(e, "online_account"))
            _put(props, "service", p.get("platform"))
        elif kind == "ad":
            _put(props, "title", p.get("title") or e["label"])
            _put(props, "sourceUrl", *_idents(e, "url"))
        elif kind == "vehicle":
            _put(props, "registrationNumber", *_idents(e, "vehicle_plate"))
            _put(props, "model", " ".join(x for x in (p.get("make"), p.get("model")) if x))
        elif kind == "organization":
            _put(props, "address", p.get("address"))
        if e.get("survivor") or e.get("shielded") or e.get("redacted"):
            _put(props, "keywords", "survivor" if e.get("survivor") else "protected")
        out.append({"id": entity_ftm_id(e["id"]), "schema": FTM_ENTITY_SCHEMA[kind],
                    "properties": props})
    for lk in network["links"]:
        out.append(_ftm_link(lk, entities))
    return [json.dumps(x, sort_keys=True, ensure_ascii=False) for x in out]


def _ftm_link(lk: dict, entities: dict[int, dict]) -> dict:
    src, tgt = lk["source"], lk["target"]
    s, t = entity_ftm_id(src["id"]), entity_ftm_id(tgt["id"])
    props: dict[str, list[str]] = {}
    _put(props, "startDate", _day(lk.get("first_seen")))
    _put(props, "endDate", _day(lk.get("last_seen")))
    words = lk["type"].replace("_", " ").lower()
    summary = f"{words}" + (f", {lk['count']} times" if lk.get("count", 1) > 1 else "")
    _put(props, "summary", summary)
    ltype = lk["type"]
    if ltype in ("CALLED", "TEXTED"):
        schema = "Call"
        _put(props, "caller", s)
        _put(props, "receiver", t)
        for name, end in (("callerNumber", src), ("receiverNumber", tgt)):
            near = entities.get(end["id"])
            if near is not None and near["kind"] == "phone":
                _put(props, name, *_idents(near, "phone"))
    elif ltype == "PAID":
        schema = "Payment"
        for role, end, ref in (("payer", src, s), ("beneficiary", tgt, t)):
            if end["kind"] in _LEGAL:
                _put(props, role, ref)
            elif end["kind"] == "bank_account":
                _put(props, f"{role}Account", ref)
        _put(props, "amount", lk.get("amount"))
        if lk.get("amount") is not None:
            _put(props, "currency", "USD")
        _put(props, "date", _day(lk.get("first_seen")))
    elif ltype == "OWNS" and src["kind"] in _LEGAL and tgt["kind"] in _ASSETS:
        schema = "Ownership"
        _put(props, "owner", s)
        _put(props, "asset", t)
    elif ltype == "WORKS_AT" and src["kind"] == "person" and tgt["kind"] == "organization":
        schema = "Employment"
        _put(props, "employee", s)
        _put(props, "employer", t)
    elif ltype in ("ASSOCIATED_WITH", "RECRUITED", "CONTROLS") and src["kind"] == "person" \
            and tgt["kind"] == "person":
        schema = "Associate"
        _put(props, "person", s)
        _put(props, "associate", t)
        _put(props, "relationship", words)
    else:
        schema = "UnknownLink"
        _put(props, "subject", s)
        _put(props, "object", t)
        _put(props, "role", words)
    return {"id": link_ftm_id(lk["id"]), "schema": schema, "properties": props}


# i2 Analyst's Notebook CSV ---------------------------------------------------------------

NODE_COLUMNS = ("entity_id", "i2_type", "kind", "label", "role", "survivor", "protected",
                "minor", "identifiers", "date_of_birth", "address", "latitude", "longitude",
                "notes")
LINK_COLUMNS = ("link_id", "from_id", "to_id", "link_type", "first_seen", "last_seen", "count",
                "amount", "confidence", "source_kind", "source_ref")


def _csv(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([_csv_cell(v) for v in row])
    return buf.getvalue()


def _csv_cell(value: Any) -> str:
    text = _text(value)
    # a cell a spreadsheet would run as a formula is written as text
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def nodes_csv(network: dict) -> str:
    rows = []
    for e in network["entities"]:
        p = e.get("props") or {}
        rows.append((e["id"], I2_TYPES[e["kind"]], e["kind"], e["label"], e.get("role") or "",
                     "yes" if e.get("survivor") else "no",
                     "yes" if e.get("redacted") else "no", "yes" if e.get("minor") else "no",
                     "; ".join(i["display"] for i in e.get("identifiers", [])),
                     p.get("dob", ""), p.get("address", ""), p.get("lat", ""), p.get("lon", ""),
                     p.get("notes", "")))
    return _csv(NODE_COLUMNS, rows)


def links_csv(network: dict) -> str:
    rows = [(lk["id"], lk["source"]["id"], lk["target"]["id"], lk["type"], lk.get("first_seen"),
             lk.get("last_seen"), lk.get("count"), lk.get("amount") if lk.get("amount")
             is not None else "", lk.get("confidence"), lk["provenance"]["kind"],
             lk["provenance"]["ref"] or "") for lk in network["links"]]
    return _csv(LINK_COLUMNS, rows)


# GraphML -------------------------------------------------------------------------------

_NODE_KEYS = (("label", "string"), ("kind", "string"), ("role", "string"),
              ("survivor", "boolean"), ("protected", "boolean"), ("minor", "boolean"),
              ("identifiers", "string"))
_EDGE_KEYS = (("type", "string"), ("first_seen", "string"), ("last_seen", "string"),
              ("count", "int"), ("amount", "double"), ("confidence", "double"),
              ("source_kind", "string"), ("source_ref", "string"))


def graphml(network: dict) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">']
    for name, kind in _NODE_KEYS:
        lines.append(f'  <key id="n_{name}" for="node" attr.name="{name}" attr.type="{kind}"/>')
    for name, kind in _EDGE_KEYS:
        lines.append(f'  <key id="e_{name}" for="edge" attr.name="{name}" attr.type="{kind}"/>')
    lines.append(f'  <graph id={quoteattr("case-" + str(network["case_id"]))} '
                 'edgedefault="directed">')
    for e in network["entities"]:
        values = {"label": e["label"], "kind": e["kind"], "role": e.get("role") or "",
                  "survivor": "true" if e.get("survivor") else "false",
                  "protected": "true" if e.get("redacted") else "false",
                  "minor": "true" if e.get("minor") else "false",
                  "identifiers": "; ".join(i["display"] for i in e.get("identifiers", []))}
        lines.append(f'    <node id="n{e["id"]}">')
        lines += [f'      <data key="n_{k}">{escape(v)}</data>' for k, v in values.items()]
        lines.append("    </node>")
    for lk in network["links"]:
        values = {"type": lk["type"], "first_seen": _text(lk.get("first_seen")),
                  "last_seen": _text(lk.get("last_seen")), "count": _text(lk.get("count")),
                  "amount": _text(lk.get("amount")), "confidence": _text(lk.get("confidence")),
                  "source_kind": lk["provenance"]["kind"],
                  "source_ref": lk["provenance"]["ref"] or ""}
        lines.append(f'    <edge id="e{lk["id"]}" source="n{lk["source"]["id"]}" '
                     f'target="n{lk["target"]["id"]}">')
        lines += [f'      <data key="e_{k}">{escape(v)}</data>' for k, v in values.items() if v]
        lines.append("    </edge>")
    lines += ["  </graph>", "</graphml>", ""]
    return "\n".join(lines)


FORMATS = {
    "ftm.jsonl": ("application/x-ndjson", lambda n: "\n".join(ftm_lines(n)) + "\n"),
    "nodes.csv": ("text/csv", nodes_csv),
    "links.csv": ("text/csv", links_csv),
    "graph.graphml": ("application/graphml+xml", graphml),
}
