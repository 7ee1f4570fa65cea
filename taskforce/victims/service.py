"""Survivor and minor alerts: the only place that raises, reads and works them.

Raising (`evaluate`)
    Runs in a background job (tasks.evaluate_links) after any commit that wrote case
    memberships or links (hooks.py watches the session, so pages, the API and imports
    are all covered). A person who is a survivor (a victim in any case: the graph gives
    them a pseudonym) or a minor (under 18 by a date of birth any case recorded) raises:

    ``in_case``       added to a case (or given a new role in it): "linked to case as victim"
    ``link``          a link in a case touches them: "linked in the case (RECRUITED)"
    ``one_link``      a link in case X joins them to an entity that is also in case Y,
                      where they are not: Y is told, "one link from a case entity (CALLED)",
                      with X's lead as the point of contact and nothing else of X
    ``other_agency``  they are in cases of two agencies: each side is told, with the
                      other side's lead as the point of contact

    Each fact is told to every agency concerned with the case (its lead agency and the
    partner agencies granted it): one alert per agency, unique on (survivor, case,
    reason, link, agency), so nothing is alerted twice. The agency's active victim
    specialists get one email each, holding the alert numbers and links only.

Checks owed (`run_checks`, `sweep`, `outbox_status`)
    hooks.py writes an outbox row (models.AlertCheck) in the transaction of the
    memberships and links, and asks for it at once after the commit (the fast path);
    `sweep` (every few seconds, Celery beat) runs what is still waiting, so a job the
    broker refused loses nothing. A check is claimed in the transaction that writes
    its alerts (on PostgreSQL SELECT ... FOR UPDATE SKIP LOCKED, then
    `processed_at` set where still empty), so the fast path and the sweep never both
    raise from it; and alert keys are unique anyway. A failure is counted on the row
    (attempts, last_error, retry_at with backoff); after CHECK_ATTEMPTS_MAX it waits
    for a person, logged and counted by `outbox_status`.

Working (`acknowledge`, `record_follow_up`)
    The alerted agency's victim specialists acknowledge an alert and record what they
    did (contacted, services offered, referred, a note): who and when, audited.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from taskforce.accounts.models import User, UserRole, utcnow
from taskforce.accounts.permissions import Actor
from taskforce.audit import service as audit
from taskforce.errors import Conflict, Forbidden, NotFound
from taskforce.extensions import db
from taskforce.investigations import policy as case_policy
from taskforce.investigations.models import Case
from taskforce.validation import FieldErrors as _Errors
from taskforce.validation import as_id as _as_id
from taskforce.victims import policy
from taskforce.victims.models import (
    ALERT_STATUSES,
    FOLLOW_UP_ACTIONS,
    AlertCheck,
    AlertFollowUp,
    SurvivorAlert,
)

log = logging.getLogger(__name__)

__all__ = [
    "acknowledge",
    "evaluate",
    "get_alert",
    "list_alerts",
    "open_count",
    "outbox_status",
    "record_follow_up",
    "run_checks",
    "sweep",
]

SYSTEM = Actor.system("victims")
SURVIVOR_ROLE = "victim"  # graph.models.SURVIVOR_ROLE: the person's role in a case
NOTE_MAX = 2000
PER_PAGE = 50
PER_PAGE_MAX = 200
LINKS_PER_ENTITY_MAX = 2000  # a hub's links looked at when it joins a case
CHUNK = 500  # ids per IN (...): well under SQLite's limit on bound parameters
_NOT_FOUND = "No such alert, or it is not addressed to you."
# The outbox of checks owed (AlertCheck): a check still waiting this long after its
# commit is the sweep's (the fast-path job was refused, or is late); one that failed
# waits RETRY_BASE_SECONDS * 2**(attempts - 1), at most RETRY_MAX_SECONDS, and after
# CHECK_ATTEMPTS_MAX failures waits for a person. Done checks are kept KEEP_DONE_DAYS.
SWEEP_AFTER_SECONDS = 2.0
SWEEP_BATCH = 200
RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 300.0
CHECK_ATTEMPTS_MAX = 8
KEEP_DONE_DAYS = 7
ERROR_MAX = 2000


def now() -> datetime:
    """The clock every function here reads (tests replace it)."""
    return utcnow()


# --------------------------------------------------------------------------- who is a subject

def _minor(obj: Any, today: date) -> bool:
    """Under 18 by the date of birth this object records. Tolerant of where the graph
    keeps it (on the case membership, or on the entity)."""
    minor_on = getattr(obj, "minor_on", None)
    if not callable(minor_on):
        return False
    try:
        return bool(minor_on(today))
    except Exception:  # noqa: BLE001  (a bad date of birth makes nobody a minor)
        return False


def _subject(entity: Any, today: date) -> tuple[bool, bool] | None:
    """(survivor, minor) for a person who is either; None for anyone or anything else."""
    if entity is None or entity.kind != "person" or getattr(entity, "merged_into_id", None):
        return None
    memberships = list(entity.case_links)
    survivor = entity.pseudonym is not None or any(ce.role == SURVIVOR_ROLE for ce in memberships)
    minor = _minor(entity, today) or any(_minor(ce, today) for ce in memberships)
    return (survivor, minor) if survivor or minor else None


def _in_case(entity: Any, case_id: int) -> bool:
    return any(ce.case_id == case_id for ce in entity.case_links)


# --------------------------------------------------------------------------- raising

@dataclass(frozen=True)
class _Fact:
    entity_id: int
    case_id: int
    contact_case_id: int
    reason: str
    link_key: str
    survivor: bool
    minor: bool
    role: str | None = None
    link_type: str | None = None
    link_id: int | None = None


@dataclass
class _Facts:
    today: date
    found: dict[tuple, _Fact] = field(default_factory=dict)
    subjects: dict[int, tuple[bool, bool] | None] = field(default_factory=dict)

    def subject(self, entity: Any) -> tuple[bool, bool] | None:
        if entity.id not in self.subjects:
            self.subjects[entity.id] = _subject(entity, self.today)
        return self.subjects[entity.id]

    def add(self, entity: Any, case_id: int, contact_case_id: int, reason: str, link_key: str,
            **extra: Any) -> None:
        survivor, minor = self.subjects[entity.id]
        fact = _Fact(entity_id=entity.id, case_id=case_id, contact_case_id=contact_case_id,
                     reason=reason, link_key=link_key, survivor=survivor, minor=minor, **extra)
        self.found.setdefault((fact.entity_id, fact.case_id, reason, link_key), fact)


def _case(case_id: int, cache: dict[int, Case | None]) -> Case | None:
    if case_id not in cache:
        cache[case_id] = db.session.get(Case, case_id)
    return cache[case_id]


def _from_membership(facts: _Facts, ce: Any, cases: dict[int, Case | None]) -> None:
    entity = ce.entity
    case = _case(ce.case_id, cases)
    if entity is None or case is None or not facts.subject(entity):
        return
    facts.add(entity, ce.case_id, ce.case_id, "in_case", f"m{ce.id}:{ce.role or '-'}",
              role=ce.role)
    for other in entity.case_links:
        other_case = _case(other.case_id, cases)
        if other.case_id == ce.case_id or other_case is None \
                or other_case.agency_id == case.agency_id:
            continue
        facts.add(entity, ce.case_id, other.case_id, "other_agency", f"c{other.case_id}")
        facts.add(entity, other.case_id, ce.case_id, "other_agency", f"c{ce.case_id}")


def _one_link_from_members(facts: _Facts, memberships: Sequence[Any]) -> None:
    """Whatever joined a case (a phone, an account, a place...): a survivor linked to it
    in another case is now one link from this case's entities. Only links whose other
    end is a person can matter, so only those are read, a chunk of ids at a time."""
    from taskforce.graph.models import Entity, Link

    by_case: dict[int, set[int]] = defaultdict(set)
    for ce in memberships:
        by_case[ce.case_id].add(ce.entity_id)
    other = aliased(Entity)
    for case_id, entity_ids in sorted(by_case.items()):
        for chunk in _chunks(sorted(entity_ids)):
            for mine_col, other_col in ((Link.source_id, Link.target_id),
                                        (Link.target_id, Link.source_id)):
                links = db.session.scalars(
                    select(Link).join(other, other.id == other_col)
                    .where(mine_col.in_(chunk), Link.case_id != case_id,
                           other.kind == "person")
                    .order_by(Link.id).limit(LINKS_PER_ENTITY_MAX * len(chunk)))
                for link in links:
                    other_end = link.target if mine_col is Link.source_id else link.source
                    if facts.subject(other_end) and not _in_case(other_end, case_id):
                        facts.add(other_end, case_id, link.case_id, "one_link", f"l{link.id}",
                                  link_type=link.type, link_id=link.id)


def _chunks(ids: Sequence[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for i in range(0, len(ids), size):
        yield list(ids[i:i + size])


def _from_link(facts: _Facts, link: Any) -> None:
    for end, other_end in ((link.source, link.target), (link.target, link.source)):
        if end is None or other_end is None or not facts.subject(end):
            continue
        facts.add(end, link.case_id, link.case_id, "link", f"l{link.id}",
                  link_type=link.type, link_id=link.id)
        for ce in other_end.case_links:
            if ce.case_id != link.case_id and not _in_case(end, ce.case_id):
                facts.add(end, ce.case_id, link.case_id, "one_link", f"l{link.id}",
                          link_type=link.type, link_id=link.id)


def _concerned_agencies(case: Case) -> list[int]:
    """The case's lead agency and every partner agency granted it."""
    return list(dict.fromkeys([case.agency_id] + [g.agency_id for g in case.active_grants]))


def _alert_key(fact: _Fact, agency_id: int) -> str:
    return f"{fact.entity_id}:{fact.case_id}:{fact.reason}:{fact.link_key}:a{agency_id}"


def evaluate(*, case_entity_ids: Iterable[int] = (), link_ids: Iterable[int] = (),
             entity_ids: Iterable[int] = (), bulk: Iterable[tuple[str, int, int]] = (),
             check_id: int | None = None) -> list[SurvivorAlert]:
    """Raise the alerts these memberships, links and entities call for; return the new
    ones. `bulk` names rows a bulk insert wrote: (kind, case id, the table's highest id
    before it). Idempotent: facts already alerted are skipped (and a concurrent
    evaluation that raised the same alert first makes this one retry and skip it).
    `check_id`: the outbox row asking for it, marked processed in the same transaction
    as the alerts; if another run has it (or had it), this one raises nothing."""
    ce_ids, link_ids = set(case_entity_ids), set(link_ids)
    for kind, case_id, floor in bulk:
        more_ce, more_links = _bulk_rows(kind, int(case_id), int(floor))
        ce_ids.update(more_ce)
        link_ids.update(more_links)
    for attempt in (1, 2):
        try:
            return _evaluate(sorted(ce_ids), sorted(link_ids), sorted(set(entity_ids)),
                             check_id)
        except IntegrityError:
            db.session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _end_quietly(check_id: int | None) -> None:
    """Nothing to alert: keep the check's mark, drop anything else."""
    if check_id is None:
        db.session.rollback()
    else:
        db.session.commit()


def _bulk_rows(kind: str, case_id: int, floor: int) -> tuple[list[int], list[int]]:
    from taskforce.graph.models import CaseEntity, Entity, Link

    if kind == "case_entities":
        return list(db.session.scalars(select(CaseEntity.id).where(
            CaseEntity.case_id == case_id, CaseEntity.id > floor))), []
    # Only a link with a person at one end can touch a survivor or a minor.
    src, tgt = aliased(Entity), aliased(Entity)
    return [], list(db.session.scalars(
        select(Link.id).join(src, src.id == Link.source_id).join(tgt, tgt.id == Link.target_id)
        .where(Link.case_id == case_id, Link.id > floor,
               or_(src.kind == "person", tgt.kind == "person"))))


def _claim(check_id: int | None) -> bool:
    """Take the check in this transaction (committed with the alerts, undone with a
    rollback). False when another run holds it or has done it: on PostgreSQL the row
    lock is skipped, not waited for; elsewhere the conditional update decides (SQLite
    has one writer at a time, so the second sees the first's mark)."""
    if check_id is None:
        return True
    query = select(AlertCheck.id).where(AlertCheck.id == check_id,
                                        AlertCheck.processed_at.is_(None))
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    if db.session.scalar(query) is None:
        return False
    done = db.session.execute(
        update(AlertCheck).where(AlertCheck.id == check_id, AlertCheck.processed_at.is_(None))
        .values(processed_at=utcnow(), retry_at=None)
        .execution_options(synchronize_session=False))
    return done.rowcount == 1


def _evaluate(ce_ids: list[int], link_ids: list[int], entity_ids: list[int],
              check_id: int | None = None) -> list[SurvivorAlert]:
    from taskforce.graph.models import CaseEntity, Link

    facts = _Facts(today=now().date())
    cases: dict[int, Case | None] = {}
    memberships = [ce for chunk in _chunks(ce_ids) for ce in db.session.scalars(
        select(CaseEntity).where(CaseEntity.id.in_(chunk)))]
    links = [lk for chunk in _chunks(link_ids) for lk in db.session.scalars(
        select(Link).where(Link.id.in_(chunk)))]
    for chunk in _chunks(entity_ids):  # became a survivor or a minor: everything it touches
        memberships += db.session.scalars(
            select(CaseEntity).where(CaseEntity.entity_id.in_(chunk)))
        links += db.session.scalars(
            select(Link).where(or_(Link.source_id.in_(chunk), Link.target_id.in_(chunk)))
            .order_by(Link.id).limit(LINKS_PER_ENTITY_MAX * len(chunk)))
    for ce in memberships:
        _from_membership(facts, ce, cases)
    _one_link_from_members(facts, memberships)
    for link in links:
        _from_link(facts, link)
    # What was read above is read again under the claim (below) only for the alert keys:
    # the facts are about rows that committed before the check did.
    if not _claim(check_id):
        db.session.rollback()
        return []
    if not facts.found:
        _end_quietly(check_id)
        return []

    wanted: dict[str, tuple[_Fact, int]] = {}
    for fact in facts.found.values():
        case = _case(fact.case_id, cases)
        if case is None:
            continue
        for agency_id in _concerned_agencies(case):
            wanted[_alert_key(fact, agency_id)] = (fact, agency_id)
    seen = {key for chunk in _chunks(sorted(wanted)) for key in db.session.scalars(
        select(SurvivorAlert.key).where(SurvivorAlert.key.in_(chunk)))}
    at = now()
    created: list[SurvivorAlert] = []
    for key, (fact, agency_id) in wanted.items():
        if key in seen:
            continue
        alert = SurvivorAlert(
            key=key, agency_id=agency_id, entity_id=fact.entity_id, case_id=fact.case_id,
            contact_case_id=fact.contact_case_id, reason=fact.reason, role=fact.role,
            link_type=fact.link_type, link_id=fact.link_id, survivor=fact.survivor,
            minor=fact.minor, status="new", created_at=at)
        db.session.add(alert)
        created.append(alert)
    if not created:
        _end_quietly(check_id)
        return []
    db.session.flush()
    recipients = _specialists({a.agency_id for a in created})
    for alert in created:
        if recipients.get(alert.agency_id):
            alert.emailed_at = at  # the notice is queued in this transaction (below)
        # No name, no identifier: the audit trail says what was alerted to whom, and why.
        audit.record(actor=SYSTEM, action="survivor_alert.raise", object_type="survivor_alert",
                     object_id=alert.id, case_id=alert.case_id,
                     details={"number": alert.number, "reason": alert.reason,
                              "agency_id": alert.agency_id, "entity_id": alert.entity_id,
                              "link_id": alert.link_id,
                              "recipients": len(recipients.get(alert.agency_id, []))})
    _send_notices(created, recipients)
    db.session.commit()  # the alerts and their notices, or neither; the notices leave now
    return created


def _specialists(agency_ids: Iterable[int]) -> dict[int, list[User]]:
    ids = sorted(set(agency_ids))
    out: dict[int, list[User]] = defaultdict(list)
    if not ids:
        return out
    for user in db.session.scalars(
            select(User).join(UserRole, UserRole.user_id == User.id)
            .where(UserRole.role == policy.SPECIALIST, User.agency_id.in_(ids),
                   User.active.is_(True)).order_by(User.id)).unique():
        out[user.agency_id].append(user)
    return out


def alert_url(alert_id: int) -> str:
    base = (current_app.config.get("BASE_URL") or "http://localhost:5000").rstrip("/")
    return f"{base}/victims/alerts/{alert_id}"


def alert_email(items: Sequence[tuple[str, int]]) -> tuple[str, str]:
    """(subject, body) of the notice: alert numbers and links, nothing else (no name,
    no pseudonym, no identifier, no case)."""
    if len(items) == 1:
        number, alert_id = items[0]
        subject = f"Survivor alert {number}"
        lines = [f"A new survivor alert, {number}, is addressed to your agency.", "",
                 "Sign in to see it and to acknowledge it:", alert_url(alert_id)]
    else:
        subject = f"{len(items)} new survivor alerts"
        lines = [(f"{len(items)} new survivor alerts are addressed to your agency. "
                  "Sign in to see them and to acknowledge them:"), ""]
        lines += [f"{number}: {alert_url(alert_id)}" for number, alert_id in items]
    lines += ["", "This message holds no names or case details, by design."]
    return subject, "\n".join(lines) + "\n"


def _send_notices(alerts: Sequence[SurvivorAlert], recipients: dict[int, list[User]]) -> None:
    """One email per specialist (never a shared list), queued in the mail outbox in the
    alerts' own transaction: it exists if and only if they commit.

    Sent by this job at once after the commit (`now=True`): a second trip through the
    queue would wait behind whatever else the same commit queued (the graph drain,
    imports), and the alert is due within seconds. A relay that refuses leaves the
    notice in the outbox, which retries it with backoff (mail's sweep).
    """
    from taskforce import mail

    per_address: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for alert in alerts:
        for user in recipients.get(alert.agency_id, []):
            if user.email:
                per_address[user.email.lower()].append((alert.number, alert.id))
    for address, items in sorted(per_address.items()):
        subject, body = alert_email(items)
        mail.queue([address], subject, body, about="survivor_alert", now=True)


# --------------------------------------------------------------------------- checks owed

def run_checks(check_ids: Iterable[Any]) -> list[SurvivorAlert]:
    """Run these outbox rows, each at most once (one already done, or being run
    elsewhere, is skipped). A failing check is recorded on its row and the others
    still run. Returns the alerts raised."""
    raised: list[SurvivorAlert] = []
    for check_id in sorted({int(i) for i in check_ids}):
        raised += _run_check(check_id)
    return raised


def _run_check(check_id: int) -> list[SurvivorAlert]:
    check = db.session.get(AlertCheck, check_id)
    if check is None or check.processed_at is not None:
        db.session.rollback()
        return []
    what = {"case_entity_ids": list(check.case_entity_ids or ()),
            "link_ids": list(check.link_ids or ()),
            "entity_ids": list(check.entity_ids or ()),
            "bulk": [tuple(b) for b in check.bulk or ()]}
    db.session.rollback()  # end the read: the claim is taken in the evaluation's transaction
    try:
        return evaluate(**what, check_id=check_id)
    except Exception as error:  # noqa: BLE001  (recorded on the row; the sweep tries again)
        db.session.rollback()
        _failed(check_id, error)
        return []


def _failed(check_id: int, error: BaseException) -> None:
    try:
        check = db.session.get(AlertCheck, check_id)
        if check is None or check.processed_at is not None:
            db.session.rollback()
            return
        check.attempts = (check.attempts or 0) + 1
        check.last_error = f"{type(error).__name__}: {error}"[:ERROR_MAX]
        wait = min(RETRY_BASE_SECONDS * 2 ** (check.attempts - 1), RETRY_MAX_SECONDS)
        check.retry_at = utcnow() + timedelta(seconds=wait)
        attempts = check.attempts
        db.session.commit()
    except Exception:  # the database itself is in trouble: the row waits as it was
        db.session.rollback()
        log.exception("victims: survivor-alert check %s failed and could not be recorded",
                      check_id)
        return
    if attempts >= CHECK_ATTEMPTS_MAX:
        log.error("victims: survivor-alert check %s failed %s times and is no longer "
                  "tried: %s", check_id, attempts, error, exc_info=error)
    else:
        log.warning("victims: survivor-alert check %s failed (attempt %s); tried again "
                    "later: %s", check_id, attempts, error, exc_info=error)


@dataclass
class SweepResult:
    due: int = 0  # checks found waiting past their time
    alerts: list[SurvivorAlert] = field(default_factory=list)
    forgotten: int = 0  # checks done more than KEEP_DONE_DAYS ago, deleted

    def as_dict(self) -> dict[str, Any]:
        return {"due": self.due, "alerts": [a.number for a in self.alerts],
                "forgotten": self.forgotten}


def sweep(*, older_than: float = SWEEP_AFTER_SECONDS, limit: int = SWEEP_BATCH) -> SweepResult:
    """Run the checks still waiting `older_than` seconds after their commit (the job
    asked for at the commit was refused, lost or failed), oldest first, and delete
    checks done long ago. Safe to run while fast-path jobs run, and twice at once."""
    at = utcnow()
    due = list(db.session.scalars(
        select(AlertCheck.id)
        .where(AlertCheck.processed_at.is_(None),
               AlertCheck.attempts < CHECK_ATTEMPTS_MAX,
               AlertCheck.created_at <= at - timedelta(seconds=older_than),
               or_(AlertCheck.retry_at.is_(None), AlertCheck.retry_at <= at))
        .order_by(AlertCheck.id).limit(limit)))
    db.session.rollback()
    result = SweepResult(due=len(due))
    if due:
        log.info("victims: the sweep runs %s survivor-alert checks left waiting", len(due))
        result.alerts = run_checks(due)
    old = list(db.session.scalars(
        select(AlertCheck.id).where(AlertCheck.processed_at.is_not(None),
                                    AlertCheck.processed_at < at - timedelta(days=KEEP_DONE_DAYS))
        .order_by(AlertCheck.id).limit(10 * limit)))
    if old:
        db.session.execute(delete(AlertCheck).where(AlertCheck.id.in_(old)))
        result.forgotten = len(old)
    db.session.commit()
    return result


def outbox_status() -> dict[str, Any]:
    """Counts for a health page: checks waiting, failing (to be tried again), and
    given up (failed CHECK_ATTEMPTS_MAX times: a person must look), and the age in
    seconds of the oldest check waiting. Numbers only."""
    waiting = AlertCheck.processed_at.is_(None)

    def count(*where: Any) -> int:
        return db.session.scalar(select(func.count(AlertCheck.id)).where(waiting, *where)) or 0

    status: dict[str, Any] = {
        "waiting": count(),
        "failing": count(AlertCheck.attempts > 0, AlertCheck.attempts < CHECK_ATTEMPTS_MAX),
        "given_up": count(AlertCheck.attempts >= CHECK_ATTEMPTS_MAX)}
    oldest = db.session.scalar(select(func.min(AlertCheck.created_at)).where(waiting))
    db.session.rollback()
    status["oldest_waiting_seconds"] = (round((utcnow() - oldest).total_seconds(), 1)
                                        if oldest is not None else None)
    return status


# --------------------------------------------------------------------------- reading

@dataclass
class AlertView:
    """An alert as one actor may see it."""

    alert: SurvivorAlert
    case: Case | None
    revealed: bool
    name: str | None  # the survivor's name, only when revealed
    pseudonym: str
    poc: dict[str, str]
    case_number: str | None  # the alert's own case, when the actor may know it
    can_act: bool

    @property
    def subject_label(self) -> str:
        return self.name if self.revealed and self.name else self.pseudonym


def _pseudonym(entity: Any) -> str:
    if entity is not None and entity.pseudonym:
        return entity.pseudonym
    return f"Minor #{entity.id}" if entity is not None else "Survivor"


def _name_in_case(entity: Any, case_id: int) -> str | None:
    """What the case calls the person: its own label (graph keeps it per case), or the
    entity's."""
    for ce in entity.case_links:
        if ce.case_id == case_id:
            return getattr(ce, "label", None) or getattr(entity, "label", None) or None
    return None


def point_of_contact(case: Case | None) -> dict[str, str]:
    """The case's lead investigator: name, agency, phone, email. The phone is the one
    the lead gave as point of contact when registering the case's targets, if any."""
    if case is None:
        return {"name": "", "agency": "", "phone": "", "email": ""}
    lead = case.lead_investigator
    return {"name": lead.full_name, "agency": case.agency.name if case.agency else "",
            "phone": _lead_phone(case.id, lead.id), "email": lead.email or ""}


def _lead_phone(case_id: int, user_id: int) -> str:
    try:
        from taskforce.deconfliction.models import TargetRegistration
    except ImportError:  # deconfliction not installed: no phone on record
        return ""
    return db.session.scalar(
        select(TargetRegistration.poc_phone)
        .where(TargetRegistration.case_id == case_id, TargetRegistration.poc_user_id == user_id,
               TargetRegistration.poc_phone != "")
        .order_by(TargetRegistration.id.desc()).limit(1)) or ""


def _view(actor: Actor, alert: SurvivorAlert, case: Case | None = None) -> AlertView:
    from taskforce.graph.models import Entity

    case = case if case is not None else db.session.get(Case, alert.case_id)
    entity = db.session.get(Entity, alert.entity_id)
    in_case = entity is not None and _in_case(entity, alert.case_id)
    revealed = policy.reveals_name(actor, alert, case, in_case)
    contact = db.session.get(Case, alert.contact_case_id) if alert.contact_case_id else None
    knows_case = case is not None and (actor.agency_id == case.agency_id
                                       or case_policy.can_read(actor, case))
    return AlertView(alert=alert, case=case, revealed=revealed,
                     name=_name_in_case(entity, alert.case_id) if revealed else None,
                     pseudonym=_pseudonym(entity), poc=point_of_contact(contact),
                     case_number=case.number if knows_case else None,
                     can_act=policy.may_act(actor, alert))


@dataclass
class AlertList:
    items: list[AlertView]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def list_alerts(*, actor: Actor, status: Any = None, page: Any = 1,
                per_page: Any = PER_PAGE) -> AlertList:
    """The alerts the actor may see, newest first (a specialist: their agency's; a
    case lead: the lead agency's alerts on their cases)."""
    errors = _Errors()
    status = errors.choice("status", status or None, ALERT_STATUSES, required=False)
    page_no = errors.integer("page", page or 1)
    size = errors.integer("per_page", per_page or PER_PAGE)
    if size is not None and size > PER_PAGE_MAX:
        errors.add("per_page", f"At most {PER_PAGE_MAX}.")
    errors.raise_if_any()
    query = policy.visible_alerts(select(SurvivorAlert), actor)
    if status:
        query = query.where(SurvivorAlert.status == status)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(query.order_by(SurvivorAlert.created_at.desc(),
                                             SurvivorAlert.id.desc())
                              .offset((page_no - 1) * size).limit(size)).all()
    items = [_view(actor, a) for a in rows]
    audit.record(actor=actor, action="survivor_alert.list", object_type="survivor_alert",
                 details={"status": status, "page": page_no, "returned": len(items),
                          "revealed": [v.alert.id for v in items if v.revealed]})
    db.session.commit()
    return AlertList(items=items, total=total, page=page_no, per_page=size)


def open_count(*, actor: Actor) -> int:
    """New alerts addressed to the specialist's agency (the badge). A number only."""
    return db.session.scalar(
        policy.open_alerts(select(func.count(SurvivorAlert.id)), actor)) or 0


def _load(actor: Actor, alert_id: Any, *, act: bool, attempt: str
          ) -> tuple[SurvivorAlert, Case | None]:
    row_id = _as_id(alert_id)
    alert = db.session.get(SurvivorAlert, row_id) if row_id is not None else None
    case = db.session.get(Case, alert.case_id) if alert is not None else None
    if alert is None or not policy.may_view(actor, alert, case):
        db.session.rollback()
        audit.record_now(actor=actor, action=attempt, outcome="denied",
                         object_type="survivor_alert", object_id=alert_id)
        raise NotFound(_NOT_FOUND)
    if act and not policy.may_act(actor, alert):
        db.session.rollback()
        audit.record_now(actor=actor, action=attempt, outcome="denied",
                         object_type="survivor_alert", object_id=alert.id,
                         case_id=alert.case_id)
        raise Forbidden("Only the victim specialists of the alerted agency act on this alert.")
    return alert, case


def get_alert(*, actor: Actor, alert_id: Any) -> AlertView:
    alert, case = _load(actor, alert_id, act=False, attempt="survivor_alert.read")
    view = _view(actor, alert, case)
    audit.record(actor=actor, action="survivor_alert.read", object_type="survivor_alert",
                 object_id=alert.id, case_id=alert.case_id,
                 details={"number": alert.number, "revealed": view.revealed})
    db.session.commit()
    return view


# --------------------------------------------------------------------------- working

def _acknowledge(actor: Actor, alert: SurvivorAlert, at: datetime) -> None:
    alert.status = "acknowledged"
    alert.acknowledged_at = at
    alert.acknowledged_by_id = actor.user_id
    audit.record(actor=actor, action="survivor_alert.acknowledge", object_type="survivor_alert",
                 object_id=alert.id, case_id=alert.case_id, details={"number": alert.number})


def acknowledge(*, actor: Actor, alert_id: Any) -> AlertView:
    """The specialist has seen the alert and takes it on."""
    alert, case = _load(actor, alert_id, act=True, attempt="survivor_alert.acknowledge")
    if alert.status != "new":
        who = alert.acknowledged_by.full_name if alert.acknowledged_by else "someone"
        raise Conflict(f"Already acknowledged by {who}.")
    _acknowledge(actor, alert, now())
    db.session.commit()
    return _view(actor, alert, case)


def record_follow_up(*, actor: Actor, alert_id: Any, action: Any, note: Any = "") -> AlertView:
    """Record what was done (contacted, services offered, referred, a note). A follow-up
    on an alert nobody acknowledged yet acknowledges it too."""
    alert, case = _load(actor, alert_id, act=True, attempt="survivor_alert.follow_up")
    errors = _Errors()
    if isinstance(note, str) and "\x00" in note:
        errors.add("note", "Must not contain NUL characters.")
        note = ""
    action = errors.choice("action", action, FOLLOW_UP_ACTIONS)
    note = errors.text("note", note, max_len=NOTE_MAX, required=action == "note")
    errors.raise_if_any()
    at = now()
    if alert.status == "new":
        _acknowledge(actor, alert, at)
    follow_up = AlertFollowUp(alert_id=alert.id, action=action, note=note, by_id=actor.user_id,
                              at=at)
    db.session.add(follow_up)
    db.session.flush()
    # The note may name people: the trail records that one was written, not its words.
    audit.record(actor=actor, action="survivor_alert.follow_up", object_type="survivor_alert",
                 object_id=alert.id, case_id=alert.case_id,
                 details={"number": alert.number, "action": action,
                          "follow_up_id": follow_up.id, "note_chars": len(note)})
    db.session.commit()
    db.session.refresh(alert)
    return _view(actor, alert, case)
