"""Audit filters (query string, shared by the page, the CSV export and the API) and output."""
from __future__ import annotations

import json
from typing import Any

from apiflask import Schema
from apiflask.fields import Boolean, Date, Integer, List, Method, Nested, String
from apiflask.validators import Length, OneOf, Range
from marshmallow import EXCLUDE, ValidationError, pre_load, validates_schema

from taskforce.audit.models import OUTCOMES, AuditEvent, format_at

_DATE_ERROR = {"invalid": "Not a date: use YYYY-MM-DD."}


class AuditQuery(Schema):
    class Meta:
        unknown = EXCLUDE  # other query parameters (cache busters) are not filters

    username = String(validate=Length(max=150), load_default=None)
    case_id = Integer(validate=Range(min=1), load_default=None,
                      error_messages={"invalid": "Not a whole number."})
    action = String(validate=Length(max=120), load_default=None,
                    metadata={"description": "prefix: `login.` matches every login event"})
    outcome = String(validate=OneOf(OUTCOMES), load_default=None)
    date_from = Date(load_default=None, error_messages=_DATE_ERROR,
                     metadata={"description": "first day (UTC), inclusive"})
    date_to = Date(load_default=None, error_messages=_DATE_ERROR,
                   metadata={"description": "last day (UTC), inclusive"})
    page = Integer(validate=Range(min=1, max=100_000), load_default=1)
    per_page = Integer(validate=Range(min=1, max=200), load_default=50)

    @pre_load
    def _blank_is_absent(self, data: Any, **kwargs: Any) -> dict[str, Any]:
        """An empty form field means 'no filter', not an invalid value."""
        return {k: v.strip() if isinstance(v, str) else v for k, v in data.items()
                if not (isinstance(v, str) and not v.strip())}

    @validates_schema
    def _dates_in_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            raise ValidationError("Must not be before date_from.", field_name="date_to")


class AuditEventOut(Schema):
    id = Integer()
    seq = Integer()
    at = Method("_at", metadata={"description": "UTC, microseconds"})
    user_id = Integer(allow_none=True)
    username = String(allow_none=True)
    agency_id = Integer(allow_none=True)
    action = String()
    object_type = String(allow_none=True)
    object_id = String(allow_none=True)
    case_id = Integer(allow_none=True)
    outcome = String()
    status_code = Integer(allow_none=True)
    ip = String(allow_none=True)
    user_agent = String(allow_none=True)
    details = Method("_details")
    prev_hash = String()
    hash = String()

    def _at(self, event: AuditEvent) -> str:
        return format_at(event.at)

    def _details(self, event: AuditEvent) -> Any:
        return json.loads(event.details) if event.details else None


class AuditPageOut(Schema):
    items = List(Nested(AuditEventOut))
    page = Integer()
    per_page = Integer()
    has_next = Boolean()
