"""JSON API over the audit trail: the same filters and access rule as the review page."""
from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from taskforce.accounts.permissions import current_actor, requires
from taskforce.audit import service
from taskforce.audit.schemas import AuditPageOut, AuditQuery
from taskforce.audit.service import AuditFilters, AuditPage

bp = APIBlueprint("audit_api", __name__, url_prefix="/api/v1", tag="Audit")


@bp.get("/audit")
@requires("admin", "supervisor")
@bp.input(AuditQuery, location="query", arg_name="query")
@bp.output(AuditPageOut)
@bp.doc(summary="Search the audit trail",
        description="Newest first. Admins read every event; supervisors those of their "
                    "own agency. The search is itself audited (`audit.review`).")
def search(query: dict[str, Any]) -> AuditPage:
    return service.review(actor=current_actor(), filters=AuditFilters.from_mapping(query),
                          page=query["page"], per_page=query["per_page"])
