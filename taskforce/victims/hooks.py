"""Watching the database commit for what may concern a survivor.

Every path that writes case memberships or links (the graph pages, the API,
imports, merges, a console script) goes through a SQLAlchemy session, so the
watch hangs there rather than in any one service: `after_flush` notes the
CaseEntity and Link rows written (and entities whose details or pseudonym
changed), `do_orm_execute` notes bulk inserts of them (imports).

`before_commit` writes what was noted into the outbox (models.AlertCheck), in the
same transaction: the check exists if and only if the links committed, and a
refused job cannot lose it. One row per BATCH ids (a bulk insert is one entry,
whatever its size), so a million-row import adds one row, not a million.
`after_commit` asks for the check at once (tasks.run_alert_checks, naming the rows);
if the broker refuses, the rows wait for the periodic sweep. A rollback forgets
what was noted; a savepoint's commit or rollback changes nothing (the outer
transaction decides).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import event, func, inspect, select
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

from taskforce.accounts.models import utcnow

log = logging.getLogger(__name__)

_PENDING = "victims_alert_watch"  # Session.info key: ids written in this transaction
_WRITTEN = "victims_alert_checks"  # Session.info key: outbox rows this commit wrote
BATCH = 2000  # ids per outbox row: a large write becomes several small checks
# Publishing the fast-path job: a blip is retried briefly, a broker that is down is not
# waited for (the commit's caller would wait): the sweep runs the committed checks.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
                 "interval_max": 0.2}
_CE_FIELDS = ("role", "props", "entity_id", "case_id")
_LINK_FIELDS = ("source_id", "target_id", "case_id")
_ENTITY_FIELDS = ("pseudonym", "props")


def _changed(obj: Any, names: tuple[str, ...]) -> bool:
    state = inspect(obj)
    attrs = state.mapper.attrs
    return any(name in attrs and state.attrs[name].history.has_changes() for name in names)


def _pending(session: Session) -> dict[str, Any]:
    return session.info.setdefault(
        _PENDING, {"case_entities": set(), "links": set(), "entities": set(), "bulk": {}})


def _after_flush(session: Session, flush_context: Any) -> None:
    from taskforce.graph.models import CaseEntity, Entity, Link

    found: dict[str, Any] | None = None

    def pending() -> dict[str, Any]:
        return _pending(session)

    for obj in session.new:
        if isinstance(obj, CaseEntity):
            found = found or pending()
            found["case_entities"].add(obj.id)
        elif isinstance(obj, Link):
            found = found or pending()
            found["links"].add(obj.id)
    for obj in session.dirty:
        if isinstance(obj, CaseEntity) and _changed(obj, _CE_FIELDS):
            found = found or pending()
            found["case_entities"].add(obj.id)
        elif isinstance(obj, Link) and _changed(obj, _LINK_FIELDS):
            found = found or pending()
            found["links"].add(obj.id)
        elif isinstance(obj, Entity) and _changed(obj, _ENTITY_FIELDS):
            found = found or pending()
            found["entities"].add(obj.id)


def _on_execute(state: ORMExecuteState) -> None:
    """Bulk writes (`session.execute(insert(Link), rows)`, as imports do) flush no
    objects, so after_flush never sees them: note, per case, the highest id the table
    had before the insert; the job then looks at that case's rows above it."""
    if not state.is_insert or state.bind_mapper is None:
        return
    from taskforce.graph.models import CaseEntity, Link

    model = state.bind_mapper.class_
    if model not in (CaseEntity, Link):
        return
    params = state.parameters
    rows = params if isinstance(params, (list, tuple)) else [params] if params else []
    case_ids = {r.get("case_id") for r in rows if isinstance(r, Mapping)} - {None}
    if not case_ids:
        return
    kind = "links" if model is Link else "case_entities"
    bulk = _pending(state.session)["bulk"]
    new = [c for c in case_ids if (kind, c) not in bulk]
    if not new:
        return
    with state.session.no_autoflush:
        floor = state.session.scalar(select(func.max(model.id))) or 0
    for case_id in new:
        bulk[(kind, case_id)] = floor


def _rows(found: dict[str, Any]) -> list[dict[str, Any]]:
    ce_ids, link_ids, entity_ids = (sorted(i for i in found[k] if i is not None)
                                    for k in ("case_entities", "links", "entities"))
    bulk = [[kind, case_id, floor] for (kind, case_id), floor in sorted(found["bulk"].items())]
    size = max(len(ce_ids), len(link_ids), len(entity_ids), 1 if bulk else 0)
    at = utcnow()
    return [{"case_entity_ids": ce_ids[start:start + BATCH],
             "link_ids": link_ids[start:start + BATCH],
             "entity_ids": entity_ids[start:start + BATCH],
             "bulk": bulk if start == 0 else [], "created_at": at, "attempts": 0}
            for start in range(0, size, BATCH)]


def _before_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint: the outer commit writes the check
        return
    session.flush()  # what is still pending is noted by after_flush now, not after us
    found = session.info.pop(_PENDING, None)
    if not found or not any(found.values()):
        return
    from taskforce.victims.models import AlertCheck

    checks = [AlertCheck(**row) for row in _rows(found)]
    session.add_all(checks)
    session.flush()
    session.info[_WRITTEN] = [c.id for c in checks]


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return
    check_ids = session.info.pop(_WRITTEN, None)
    if not check_ids or not has_app_context():
        return  # no app to send the job with: the sweep runs the checks
    from taskforce.jobs import dispatch, no_broker
    from taskforce.victims import tasks

    eager = no_broker()
    # Its own queue when the deployment names one (DESIGN.md: a long import or a slow
    # graph drain must never delay an alert); else the default queue.
    queue = current_app.config.get("VICTIMS_ALERT_QUEUE") or None
    for n, check_id in enumerate(check_ids):  # a job each: a large write runs in parallel
        try:
            # In-process (no broker, no beat), the first job also runs checks an
            # earlier failure left waiting. A refused publish is not retried for long
            # here: the checks are committed and the sweep runs them.
            dispatch(tasks.run_alert_checks, ([check_id],), {"sweep": eager and n == 0},
                     queue=queue, retry_policy=PUBLISH_RETRY)
        except Exception as exc:  # noqa: BLE001  (committed stays committed: the sweep runs it)
            log.warning("victims: could not queue the survivor-alert checks %s (%s: %s); "
                        "the sweep will run them", check_ids[n:n + 20], type(exc).__name__,
                        exc)
            return


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """A rollback (or a close without commit) forgets what was noted; a savepoint
    that ends leaves the outer transaction's notes alone (ids of rows it rolled back
    find nothing when the check runs)."""
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
        session.info.pop(_WRITTEN, None)


def install() -> None:
    """Listen on every session (idempotent: one app or many, once)."""
    for name, fn in (("after_flush", _after_flush), ("do_orm_execute", _on_execute),
                     ("before_commit", _before_commit), ("after_commit", _after_commit),
                     ("after_transaction_end", _after_transaction_end)):
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)
