"""Audit review pages: the trail, filtered and paginated, and its CSV export."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, render_template, request, stream_with_context
from marshmallow import ValidationError

from taskforce.accounts.permissions import current_actor, requires
from taskforce.audit import service
from taskforce.audit.models import OUTCOMES, format_at
from taskforce.audit.schemas import AuditQuery
from taskforce.audit.service import AuditFilters
from taskforce.errors import Invalid

bp = Blueprint("audit", __name__)

CSV_CHUNK_CHARS = 64 * 1024


@bp.get("/audit")
@requires("admin", "supervisor")
def review():
    filters, page, per_page = parse_filters(request.args)
    result = service.review(actor=current_actor(), filters=filters, page=page, per_page=per_page)
    return render_template("audit/review.html", result=result, filters=filters,
                           args=filters.as_args(), outcomes=OUTCOMES, when=_when)


@bp.get("/audit/export.csv")
@requires("admin", "supervisor")
def export():
    filters, _, _ = parse_filters(request.args)
    rows = service.export(actor=current_actor(), filters=filters)
    filename = f"audit-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.csv"
    return Response(stream_with_context(csv_chunks(rows)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _when(at: datetime) -> str:
    return format_at(at)[:19].replace("T", " ")  # UTC to the second, whatever the DB's zone


def parse_filters(args: Mapping[str, Any]) -> tuple[AuditFilters, int, int]:
    try:
        data = AuditQuery().load(args)
    except ValidationError as err:
        messages = err.messages if isinstance(err.messages, dict) else {"filters": err.messages}
        raise Invalid("Some filters are invalid: " + ", ".join(sorted(messages)),
                      fields=messages) from None
    return AuditFilters.from_mapping(data), data["page"], data["per_page"]


def csv_chunks(rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """CSV text in chunks of about 64 KB, so a large export streams in constant memory."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow([_cell(value) for value in row])
        if buffer.tell() >= CSV_CHUNK_CHARS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def _cell(value: Any) -> Any:
    """Text a spreadsheet would run as a formula (a user agent can be anything) gets a quote."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
