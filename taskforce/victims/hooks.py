"""Watching the database commit for what may concern a survivor.

Every path that writes case memberships or links (the graph pages, the API,
imports, merges, a console script) goes through a SQLAlchemy session, so the
watch hangs there rather than in any one service: `after_flush` notes the
CaseEntity and Link rows written (and entities whose details or pseudonym
changed), `do_orm_execute` notes bulk inserts of them (imports), `after_commit`
sends their ids to tasks.evaluate_links, and a rollback forgets them. Nothing is sent for work that did not commit.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import event, func, inspect, select
from sqlalchemy.orm import ORMExecuteState, Session

log = logging.getLogger(__name__)

_PENDING = "victims_alert_watch"  # Session.info key: ids written in this transaction
BATCH = 2000  # ids per job message: a large import becomes several small jobs
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


def _after_commit(session: Session) -> None:
    found = session.info.pop(_PENDING, None)
    if not found or not any(found.values()) or not has_app_context():
        return
    from taskforce.victims import tasks

    ce_ids, link_ids, entity_ids = (sorted(i for i in found[k] if i is not None)
                                    for k in ("case_entities", "links", "entities"))
    bulk = [[kind, case_id, floor] for (kind, case_id), floor in sorted(found["bulk"].items())]
    size = max(len(ce_ids), len(link_ids), len(entity_ids), 1 if bulk else 0)
    # Its own queue when the deployment names one (DESIGN.md: a long import or a slow
    # graph drain must never delay an alert); else the default queue.
    queue = current_app.config.get("VICTIMS_ALERT_QUEUE") or None
    for start in range(0, size, BATCH):
        part = slice(start, start + BATCH)
        try:
            tasks.evaluate_links.apply_async(
                (ce_ids[part], link_ids[part], entity_ids[part], bulk if start == 0 else None),
                queue=queue)
        except Exception:  # what is committed stays committed; the log says what was missed
            log.exception("victims: could not queue the survivor-alert check "
                          "(memberships %s, links %s)", ce_ids[part][:20], link_ids[part][:20])


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def install() -> None:
    """Listen on every session (idempotent: one app or many, once)."""
    for name, fn in (("after_flush", _after_flush), ("do_orm_execute", _on_execute),
                     ("after_commit", _after_commit), ("after_rollback", _after_rollback)):
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)
