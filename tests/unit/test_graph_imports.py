"""Imports of call detail records, bank records and generic CSV through the service, on
SQLite with the local evidence folder and Celery eager (the embedded default).

Covers: a good CDR file (phones, CALLED/TEXTED aggregated per pair with count and
first/last seen), a bad-rows report with line numbers while the good rows load, the
same file again (nothing new, and said so), files that are not CSV (415/422, nothing
written), bank records (PAID with totals, direction), generic CSV with a remembered
mapping, provenance (import and evidence item), the outbox rows and deconfliction
registrations the bulk path writes, need to know, and the custody of the file.
"""
from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from taskforce.audit.models import AuditEvent
from taskforce.deconfliction.models import TargetRegistration
from taskforce.errors import Forbidden, Invalid, NotFound
from taskforce.evidence.models import CustodyEvent, EvidenceItem
from taskforce.extensions import db
from taskforce.graph import imports, service
from taskforce.graph.imports import NotCSV
from taskforce.graph.models import (
    CaseEntity,
    ColumnMapping,
    Entity,
    GraphOutbox,
    Identifier,
    ImportRun,
    Link,
)
from tests.factories_graph import (
    add_phone,
    closed_bolt_uri,
    count,
    counts,
    ensure_graph_registered,
    make_team,
)
from tests.factories_investigations import make_case, person

A, B, C = "+13125550101", "+13125550102", "+13125550103"
ACCOUNT = "021000021:123456789"


@pytest.fixture()
def app_environ(app_environ):
    """Neo4j is down for these tests: outbox rows wait, writes succeed."""
    return {**app_environ, "NEO4J_URI": closed_bolt_uri(), "NEO4J_PASSWORD": "unused"}


@pytest.fixture(autouse=True)
def _registered(app):
    ensure_graph_registered(app)


@pytest.fixture()
def team(app):
    return make_team()


def cdr(rows, header="caller,callee,start,duration,call_type,cell_tower") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


GOOD_CDR = cdr([
    f"{A},{B},2024-03-01T10:00:00,60,voice,001-01-1-1",
    f"{A},{B},2024-03-05T09:00:00,30,voice,",
    f"(312) 555-0101,{B},2024-02-20 08:00:00,0,voice,",  # same caller, other spelling
    f"{B},{A},2024-03-02T11:00:00,12,voice,",
    f"{A},{C},2024-03-03T12:00:00,0,sms,",
])


def start(actor, case_id, data: bytes, kind="cdr", **kw):
    return imports.start_import(actor=actor, case_id=case_id, stream=io.BytesIO(data),
                                kind=kind, filename=kw.pop("filename", f"{kind}.csv"), **kw)


def name(entity: Entity, case_id: int) -> str:
    """The entity's first identifier, or the label this case gave it."""
    if entity.identifiers:
        return entity.identifiers[0].value
    return entity.in_case(case_id).label


def links_by_pair(case_id):
    return {(name(lk.source, case_id), name(lk.target, case_id), lk.type): lk
            for lk in db.session.scalars(select(Link).where(Link.case_id == case_id))}


# Call detail records --------------------------------------------------------------------

def test_a_cdr_file_makes_phones_and_aggregated_called_links(app, team):
    lead = team.lead[1]
    started = start(lead, team.case_id, GOOD_CDR)
    assert started.created
    imp = started.run
    assert imp.status == "done", imp.error
    assert (imp.rows_read, imp.rows_loaded, imp.rows_bad) == (5, 5, 0)
    assert imp.entities_created == 3 and imp.links_created == 3
    phones = db.session.scalars(select(Identifier).where(Identifier.kind == "phone")).all()
    assert sorted(i.value for i in phones) == [A, B, C]
    assert count(CaseEntity) == 3
    links = links_by_pair(team.case_id)
    ab = links[(A, B, "CALLED")]
    assert ab.count == 3
    assert ab.first_seen == datetime(2024, 2, 20, 8, 0, tzinfo=UTC)
    assert ab.last_seen == datetime(2024, 3, 5, 9, 0, tzinfo=UTC)
    assert links[(B, A, "CALLED")].count == 1
    assert links[(A, C, "TEXTED")].count == 1
    assert {ce.label for ce in db.session.scalars(select(CaseEntity))} == {
        "+1 312-555-0101", "+1 312-555-0102", "+1 312-555-0103"}


def test_every_link_names_the_import_and_its_evidence_item(app, team):
    imp = start(team.lead[1], team.case_id, GOOD_CDR).run
    item = db.session.get(EvidenceItem, imp.evidence_item_id)
    assert item.case_id == team.case_id and item.source == "import"
    assert item.sha256 == imp.sha256 and item.size == len(GOOD_CDR)
    links = db.session.scalars(select(Link).where(Link.case_id == team.case_id)).all()
    assert links and {(lk.provenance_kind, lk.provenance_ref) for lk in links} == {
        ("import", f"import-{imp.id}")}
    assert {lk.entered_by_id for lk in links} == {team.lead[0].id}
    # the file's custody: collected, received, then read by the import
    kinds = [e.kind for e in db.session.scalars(
        select(CustodyEvent).where(CustodyEvent.item_id == item.id).order_by(CustodyEvent.seq))]
    assert kinds == ["COLLECTED", "RECEIVED", "ACCESSED"]


def test_outbox_rows_and_deconfliction_registrations_are_written_like_the_service(app, team):
    imp = start(team.lead[1], team.case_id, GOOD_CDR).run
    rows = db.session.scalars(select(GraphOutbox)).all()
    entity_ids = {e.id for e in db.session.scalars(select(Entity))}
    link_ids = {lk.id for lk in db.session.scalars(select(Link))}
    assert {r.object_id for r in rows if r.op == "upsert_entity"} == entity_ids
    assert {r.object_id for r in rows if r.op == "upsert_link"} == link_ids
    regs = db.session.scalars(select(TargetRegistration).where(
        TargetRegistration.case_id == team.case_id)).all()
    assert len(regs) == 3
    ident_entity = {i.entity_id for i in db.session.scalars(select(Identifier))}
    assert {r.entity_id for r in regs} == ident_entity
    load = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "import.load")).one()
    assert load.object_id == str(imp.id) and load.outcome == "success"


def test_an_existing_phone_is_attached_not_duplicated(app, team):
    lead = team.lead[1]
    known = add_phone(lead, team.case_id, A, label="Marcus burner")
    _, other = person(agency=team.other_agency)
    other_case = make_case(other, title="Operation Wren")
    elsewhere = add_phone(other, other_case, B)
    imp = start(lead, team.case_id, GOOD_CDR).run
    assert imp.entities_created == 1 and imp.entities_attached == 1  # C new, B attached
    assert count(Entity) == 3
    db.session.expire_all()
    assert db.session.get(Entity, known.id).in_case(team.case_id).label == "Marcus burner"
    assert team.case_id in db.session.get(Entity, elsewhere.id).case_ids


def test_bad_rows_are_reported_with_line_numbers_and_good_rows_still_load(app, team):
    data = cdr([
        f"{A},{B},2024-03-01T10:00:00,60,voice,",      # line 2: good
        f"not-a-number,{B},2024-03-01T10:00:00,60,voice,",  # 3
        f"{A},{B},yesterday,60,voice,",                # 4
        f"{A},{A},2024-03-01T10:00:00,60,voice,",      # 5
        f"{A},{B},2024-03-01T10:00:00,sixty,voice,",   # 6
        ",,,,,",                                        # 7: blank, not a row
        f"{A},,2024-03-01T10:00:00,1,voice,",          # 8
        f"{B},{C},2024-03-04T10:00:00,5,voice,",       # 9: good
    ])
    imp = start(team.lead[1], team.case_id, data).run
    assert imp.status == "done"
    assert (imp.rows_read, imp.rows_loaded, imp.rows_bad) == (7, 2, 5)
    report = {r["line"]: r["reason"] for r in imp.bad_rows}
    assert sorted(report) == [3, 4, 5, 6, 8]
    assert "caller 'not-a-number'" in report[3]
    assert "start time 'yesterday'" in report[4]
    assert "same number" in report[5]
    assert "duration 'sixty'" in report[6]
    assert "callee is empty" in report[8]
    assert count(Link) == 2
    assert count(Entity) == 3  # A, B, C: nothing made for the ends of bad rows alone


def test_the_same_file_again_creates_nothing_and_says_so(app, team):
    lead = team.lead[1]
    first = start(lead, team.case_id, GOOD_CDR).run
    before = counts() | {"items": count(EvidenceItem), "runs": count(ImportRun)}
    again = start(lead, team.case_id, GOOD_CDR, filename="renamed.csv")
    assert not again.created and again.run.id == first.id
    assert "already imported" in again.message
    assert counts() | {"items": count(EvidenceItem), "runs": count(ImportRun)} == before
    # the same bytes into another case are a new import there
    other_case = make_case(lead, title="Operation Heron")
    elsewhere = start(lead, other_case, GOOD_CDR)
    assert elsewhere.created and elsewhere.run.status == "done"


@pytest.mark.parametrize("data, error, words", [
    (b"%PDF-1.7\n%binary\x00\x01", NotCSV, "application/pdf"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", NotCSV, "image/png"),
    (b"caller,callee,start,duration\n" + b"+13125550101,+13125550102,2024-01-01,1\n" * 300
     + b"+13125550101,\x00\x00,x,1\n", NotCSV, "NUL bytes (binary data) on line 302"),
    (b"\x00\x01\x02\x03binary", NotCSV, "application/octet-stream"),
    (b"caller,callee,start,duration\n+13125550101,caf\xe9,x,1\n", Invalid,
     "not UTF-8 text (line 2"),
    (b"name,phone,notes\nA,B,C\n", Invalid, "no column for caller, callee, start, duration"),
    (b"just one line of words without commas\n", Invalid, "header row"),
    (b"", Invalid, "empty"),
])
def test_a_file_that_is_not_csv_is_refused_and_nothing_is_written(app, team, data, error,
                                                                  words):
    before = counts() | {"items": count(EvidenceItem), "runs": count(ImportRun)}
    with pytest.raises(error) as caught:
        start(team.lead[1], team.case_id, data)
    assert words in caught.value.message
    assert caught.value.status == (415 if error is NotCSV else 422)
    assert counts() | {"items": count(EvidenceItem), "runs": count(ImportRun)} == before


# Need to know ---------------------------------------------------------------------------

def test_an_outsider_cannot_import_nor_see_imports(app, team):
    imp = start(team.lead[1], team.case_id, GOOD_CDR).run
    outsider = team.outsider[1]
    with pytest.raises(NotFound):
        start(outsider, team.case_id, cdr([f"{A},{C},2024-01-01T00:00:00,1,voice,"]))
    with pytest.raises(NotFound):
        imports.get_import(actor=outsider, run_id=imp.id)
    with pytest.raises(NotFound):
        imports.list_imports(actor=outsider, case_id=team.case_id)
    # a partner agency with read access sees the imports but may not import
    reader = team.partner_investigator[1]
    assert imports.get_import(actor=reader, run_id=imp.id).id == imp.id
    with pytest.raises(Forbidden):
        start(reader, team.case_id, cdr([f"{A},{C},2024-01-01T00:00:00,1,voice,"]))
    assert count(ImportRun) == 1


# Bank records ---------------------------------------------------------------------------

BANK = (
    b"date,amount,direction,counterparty_name,counterparty_account,memo\n"
    b"2024-01-10,150.00,credit,CARLOS KING,086506337:9313761892,ZELLE PAYMENT FROM\n"
    b"2024-02-10,200.00,credit,CARLOS KING,086506337:9313761892,ZELLE PAYMENT FROM\n"
    b"2024-01-28,61.95,debit,CROSSROADS LODGE,,POS PURCHASE\n"
    b"2024-03-28,38.05,debit,Crossroads  Lodge,,POS PURCHASE\n"
    b"2024-03-04,100.00,debit,,,ATM WITHDRAWAL\n"
    b"2024-03-05,lots,debit,X,,bad amount\n"
    b"2024-09-03,1885.36,credit,CASH APP,cashapp:marcnels389,CASH APP*TRANSFER\n"
)


def test_bank_records_make_accounts_and_paid_links_with_totals(app, team):
    imp = start(team.lead[1], team.case_id, BANK, kind="bank", account=ACCOUNT).run
    assert imp.status == "done", imp.error
    assert (imp.rows_read, imp.rows_loaded, imp.rows_skipped, imp.rows_bad) == (7, 5, 1, 1)
    assert imp.bad_rows == [{"line": 7, "reason": "amount 'lots' is not an amount of money"}]
    links = links_by_pair(team.case_id)
    payer = links[("086506337:9313761892", ACCOUNT, "PAID")]
    assert payer.count == 2 and payer.amount == Decimal("350.00")
    assert payer.source.in_case(team.case_id).props == {"holder": "CARLOS KING"}
    assert payer.first_seen == datetime(2024, 1, 10, tzinfo=UTC)
    assert payer.last_seen == datetime(2024, 2, 10, tzinfo=UTC)
    motel = links[(ACCOUNT, "CROSSROADS LODGE", "PAID")]  # one, for both spellings
    assert motel.count == 2 and motel.amount == Decimal("100.00")
    assert motel.target.kind == "organization"
    cash_app = [k for k in links if k[1] == ACCOUNT and k[0] != "086506337:9313761892"]
    assert len(cash_app) == 1 and links[cash_app[0]].source.kind == "online_account"


def test_bank_records_need_the_statement_account(app, team):
    with pytest.raises(Invalid) as caught:
        start(team.lead[1], team.case_id, BANK, kind="bank")
    assert "account" in caught.value.fields
    with pytest.raises(Invalid) as caught:
        start(team.lead[1], team.case_id, BANK, kind="bank", account="123")
    assert "account" in caught.value.fields
    assert count(ImportRun) == 0 and count(EvidenceItem) == 0


# Generic CSV with a remembered mapping -----------------------------------------------------

def test_a_generic_csv_loads_through_a_saved_mapping(app, team):
    lead = team.lead[1]
    mapping = imports.save_mapping(
        actor=lead, name="Motel registers", source_column="Guest Phone", source_kind="phone",
        target_column="Address", target_kind="address", link_type="stayed_at",
        date_column="Checked In", shared=True)
    data = ("Guest Phone,Address,Checked In\n"
            f"{A},\"1200 W Main St, Springfield, IL 62704\",2024-05-01\n"
            f"{A},\"1200 W Main St, Springfield, IL 62704\",2024-06-01\n"
            f"{B},nowhere,2024-06-02\n").encode()
    imp = start(lead, team.case_id, data, kind="generic", mapping_id=mapping.id).run
    assert imp.status == "done", imp.error
    assert (imp.rows_loaded, imp.rows_bad) == (2, 1)
    [link] = db.session.scalars(select(Link)).all()
    assert link.type == "STAYED_AT" and link.count == 2
    assert link.target.kind == "location"
    assert imp.options["link_type"] == "STAYED_AT" and imp.mapping_id == mapping.id
    # shared with the agency: a colleague sees it; another agency does not
    colleague = team.investigator[1]
    assert [m.id for m in imports.list_mappings(actor=colleague)] == [mapping.id]
    assert imports.list_mappings(actor=team.outsider[1]) == []
    with pytest.raises(NotFound):
        start(team.outsider[1], team.case_id, data, kind="generic", mapping_id=mapping.id)


def test_a_mapping_naming_a_missing_column_is_refused(app, team):
    lead = team.lead[1]
    mapping = imports.save_mapping(
        actor=lead, name="Texts", source_column="From", source_kind="phone",
        target_column="To", target_kind="phone", link_type="TEXTED")
    with pytest.raises(Invalid) as caught:
        start(lead, team.case_id, b"Sender,To\n1,2\n", kind="generic", mapping_id=mapping.id)
    assert "'From'" in caught.value.message
    with pytest.raises(Invalid) as caught:
        start(lead, team.case_id, b"From,To\n1,2\n", kind="generic")
    assert "mapping_id" in caught.value.fields
    assert count(ImportRun) == 0


def test_a_mapping_is_checked_and_only_its_owner_changes_it(app, team):
    lead = team.lead[1]
    with pytest.raises(Invalid) as caught:
        imports.save_mapping(actor=lead, name="", source_column="a", source_kind="shoe",
                             target_column="a", target_kind="phone", link_type="LIKES")
    assert {"name", "source_kind", "link_type", "target_column"} <= set(caught.value.fields)
    mapping = imports.save_mapping(actor=lead, name="Calls", source_column="a",
                                   source_kind="phone", target_column="b", target_kind="phone",
                                   link_type="CALLED", shared=True)
    with pytest.raises(Forbidden):
        imports.save_mapping(actor=team.investigator[1], mapping_id=mapping.id, name="Mine",
                             source_column="a", source_kind="phone", target_column="b",
                             target_kind="phone", link_type="CALLED")
    imports.delete_mapping(actor=lead, mapping_id=mapping.id)
    assert count(ColumnMapping) == 0


def test_a_link_entered_by_hand_and_an_import_stay_separate_statements(app, team):
    lead = team.lead[1]
    a = add_phone(lead, team.case_id, A)
    b = add_phone(lead, team.case_id, B)
    service.add_link(actor=lead, case_id=team.case_id, source_id=a.id, target_id=b.id,
                     type="CALLED")
    start(lead, team.case_id, GOOD_CDR)
    called = db.session.scalars(select(Link).where(Link.source_id == a.id,
                                                   Link.target_id == b.id)).all()
    assert sorted(lk.provenance_kind for lk in called) == ["import", "manual"]


def test_a_job_the_broker_cannot_take_fails_the_run_and_the_same_file_retries_it(app, team):
    """Broker down (a closed port): the file is kept, the run says it could not be
    queued, and importing the same file again (broker back) runs that same run."""
    celery = app.extensions["celery"]
    port = closed_bolt_uri().rsplit(":", 1)[1]
    celery.conf.update(task_always_eager=False, broker_url=f"redis://127.0.0.1:{port}/0",
                       task_publish_retry=False, broker_connection_retry=False,
                       broker_connection_timeout=1)
    try:
        first = start(team.lead[1], team.case_id, GOOD_CDR)
    finally:
        celery.conf.update(task_always_eager=True, broker_url="memory://")
    assert first.created and first.run.status == "failed"
    assert "Could not queue the import job" in first.run.error
    assert count(Link) == 0 and count(EvidenceItem) == 1
    again = start(team.lead[1], team.case_id, GOOD_CDR)
    assert not again.created and again.run.id == first.run.id
    assert again.run.status == "done" and count(Link) == 3 and count(EvidenceItem) == 1


def test_the_case_timeline_shows_the_import_and_its_dated_calls(app, team):
    from taskforce.investigations import service as cases

    imp = start(team.lead[1], team.case_id, GOOD_CDR).run
    events = cases.timeline(actor=team.investigator[1], case_id=team.case_id)
    [event] = [e for e in events if e.kind == "import"]
    assert event.object_id == imp.id and "5 rows loaded, 0 bad; 3 links" in event.summary
    assert imp.sha256 in event.detail
    firsts = [e for e in events if e.kind == "link" and e.summary.startswith("First seen")]
    assert len(firsts) == 3
    with pytest.raises(NotFound):
        cases.timeline(actor=team.outsider[1], case_id=team.case_id)


def test_cell_sites_are_linked_only_when_asked_and_to_the_named_party(app, team):
    lead = team.lead[1]
    imp = start(lead, team.case_id, GOOD_CDR, cell_sites="caller").run
    assert imp.status == "done", imp.error
    sites = links_by_pair(team.case_id)
    [site] = [lk for k, lk in sites.items() if k[2] == "ASSOCIATED_WITH"]
    assert site.source.identifiers[0].value == A and site.target.kind == "location"
    membership = site.target.in_case(team.case_id)
    assert membership.label == "Cell site 001-01-1-1"
    assert membership.props == {"location_kind": "other"}
    assert site.count == 1 and site.first_seen == datetime(2024, 3, 1, 10, tzinfo=UTC)
    # not asked: no cell site entity; asked without the column, or for bank records: 422
    other_case = make_case(lead, title="Operation Kite")
    plain = start(lead, other_case, GOOD_CDR).run
    assert plain.links_created == 3
    with pytest.raises(Invalid) as caught:
        start(lead, other_case, cdr([f"{A},{B},2024-01-01T00:00:00,1"],
                                    header="caller,callee,start,duration"), cell_sites="caller")
    assert "cell_sites" in caught.value.fields
    with pytest.raises(Invalid) as caught:
        start(lead, other_case, BANK, kind="bank", account=ACCOUNT, cell_sites="callee")
    assert "cell_sites" in caught.value.fields


def test_carrier_spellings_crlf_bom_and_us_dates_are_read(app, team):
    data = ("\ufeffCalling Number,Called Number,Start Time,Duration\r\n"
            f"{A},{B},2024-01-01 10:00:00,5\r\n"
            f"\"+1 (312) 555-0101\",{B},03/02/2024 10:00 PM,7\r\n"
            f"{A},{C},2024-01-01T10:00:00-06:00,1\r\n").encode()
    imp = start(team.lead[1], team.case_id, data).run
    assert imp.status == "done" and imp.rows_bad == 0, imp.bad_rows
    links = links_by_pair(team.case_id)
    ab = links[(A, B, "CALLED")]
    assert ab.count == 2 and ab.last_seen == datetime(2024, 3, 2, 22, 0, tzinfo=UTC)
    assert links[(A, C, "CALLED")].first_seen == datetime(2024, 1, 1, 16, 0, tzinfo=UTC)
