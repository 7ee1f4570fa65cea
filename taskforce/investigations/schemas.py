"""API schemas: what the JSON API takes (validated by APIFlask, 422 on bad input)
and what it gives back (documented in the OpenAPI description).

The service validates again (it is also called from pages and tasks); the
schemas here give API callers the same vocabularies up front.
"""
from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Boolean, Date, DateTime, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range

from taskforce.investigations.models import (
    CASE_ROLES,
    CASE_STATUSES,
    LEAD_OUTCOMES,
    LEAD_SOURCES,
    LEAD_STATUSES,
    OFFENCES,
    PARTNER_ACCESS,
)
from taskforce.investigations.service import PER_PAGE_MAX, REASON_MAX, TEXT_MAX, TITLE_MAX

_MEMBER_ROLES = [r for r in CASE_ROLES if r != "lead"]


# In ------------------------------------------------------------------------

class CaseQuery(Schema):
    status = String(validate=OneOf(list(CASE_STATUSES)),
                    metadata={"description": "only cases in this status"})
    offence = String(validate=OneOf(list(OFFENCES)),
                     metadata={"description": "only cases with this offence type"})
    q = String(validate=Length(max=TITLE_MAX),
               metadata={"description": "words in the title or case number"})
    page = Integer(load_default=1, validate=Range(min=1))
    per_page = Integer(load_default=50, validate=Range(min=1, max=PER_PAGE_MAX))


class CaseIn(Schema):
    title = String(required=True, validate=Length(min=1, max=TITLE_MAX))
    offences = List(String(validate=OneOf(list(OFFENCES))), required=True,
                    validate=Length(min=1), metadata={"description": "one or more offence types"})
    summary = String(load_default="", validate=Length(max=TEXT_MAX))


class StatusIn(Schema):
    status = String(required=True, validate=OneOf(list(CASE_STATUSES)))
    reason = String(required=True, validate=Length(min=1, max=REASON_MAX),
                    metadata={"description": "why: kept in the status history"})


class MemberIn(Schema):
    user_id = Integer(required=True)
    case_role = String(required=True, validate=OneOf(_MEMBER_ROLES),
                       metadata={"description": "the lead changes through /lead"})


class LeadChangeIn(Schema):
    user_id = Integer(required=True, metadata={"description": "a current team member"})


class PartnerIn(Schema):
    agency_id = Integer(required=True)
    access = String(required=True, validate=OneOf(list(PARTNER_ACCESS)))


class LeadQuery(Schema):
    status = String(validate=OneOf(list(LEAD_STATUSES)))


class LeadIn(Schema):
    title = String(required=True, validate=Length(min=1, max=TITLE_MAX))
    source = String(required=True, validate=OneOf(list(LEAD_SOURCES)))
    details = String(load_default="", validate=Length(max=TEXT_MAX))
    source_reference = String(load_default="", validate=Length(max=100),
                              metadata={"description": "e.g. the CyberTipline report number"})
    received_on = Date(load_default=None, allow_none=True)
    assignee_id = Integer(load_default=None, allow_none=True,
                          metadata={"description": "a team member; the lead is then assigned"})


class LeadAssignIn(Schema):
    assignee_id = Integer(required=True, metadata={"description": "a team member"})


class LeadCloseIn(Schema):
    outcome = String(required=True, validate=OneOf(list(LEAD_OUTCOMES)))
    outcome_notes = String(load_default="", validate=Length(max=TEXT_MAX))


class TaskIn(Schema):
    title = String(required=True, validate=Length(min=1, max=TITLE_MAX))
    assignee_id = Integer(load_default=None, allow_none=True)
    due_on = Date(load_default=None, allow_none=True)


class NoteIn(Schema):
    body = String(required=True, validate=Length(min=1, max=TEXT_MAX))
    event_on = Date(load_default=None, allow_none=True,
                    metadata={"description": "when what the note tells happened"})


# Out -----------------------------------------------------------------------

class UserRef(Schema):
    id = Integer()
    username = String()
    full_name = String()


class AgencyRef(Schema):
    id = Integer()
    name = String()
    ori = String()
    level = String()


class MemberOut(Schema):
    id = Integer()
    user = Nested(UserRef)
    case_role = String()
    added_by = Nested(UserRef)
    added_at = DateTime()
    removed_by = Nested(UserRef, allow_none=True)
    removed_at = DateTime(allow_none=True)


class GrantOut(Schema):
    id = Integer()
    agency = Nested(AgencyRef)
    access = String()
    granted_by = Nested(UserRef)
    granted_at = DateTime()
    revoked_by = Nested(UserRef, allow_none=True)
    revoked_at = DateTime(allow_none=True)


class StatusChangeOut(Schema):
    id = Integer()
    from_status = String(allow_none=True)
    to_status = String()
    reason = String()
    changed_by = Nested(UserRef)
    changed_at = DateTime()


class CaseSummaryOut(Schema):
    id = Integer()
    number = String(metadata={"description": "lead agency ORI, year, sequence"})
    title = String()
    status = String()
    offences = List(String())
    agency = Nested(AgencyRef, metadata={"description": "the lead agency"})
    lead_investigator = Nested(UserRef)
    opened_at = DateTime()
    updated_at = DateTime()
    closed_at = DateTime(allow_none=True)


class CaseListOut(Schema):
    items = List(Nested(CaseSummaryOut))
    total = Integer()
    page = Integer()
    per_page = Integer()
    pages = Integer()


# Nested copies under names of their own: APIFlask registers a response schema
# by name, and a class first met nested would otherwise appear twice in the spec.
class TeamMemberItem(MemberOut):
    pass


class PartnerItem(GrantOut):
    pass


class StatusHistoryItem(StatusChangeOut):
    pass


class CaseOut(CaseSummaryOut):
    summary = String()
    your_access = String(metadata={"description": "read, contribute or manage"})
    team = List(Nested(TeamMemberItem), attribute="active_members")
    partners = List(Nested(PartnerItem), attribute="active_grants")
    status_history = List(Nested(StatusHistoryItem), attribute="status_changes")


class LeadOut(Schema):
    id = Integer()
    case_id = Integer()
    title = String()
    details = String()
    source = String()
    source_reference = String()
    received_on = Date(allow_none=True)
    status = String()
    assignee = Nested(UserRef, allow_none=True)
    outcome = String(allow_none=True)
    outcome_notes = String()
    created_by = Nested(UserRef)
    created_at = DateTime()
    assigned_at = DateTime(allow_none=True)
    worked_at = DateTime(allow_none=True)
    closed_at = DateTime(allow_none=True)


class TaskOut(Schema):
    id = Integer()
    case_id = Integer()
    title = String()
    assignee = Nested(UserRef, allow_none=True)
    due_on = Date(allow_none=True)
    done = Boolean()
    done_at = DateTime(allow_none=True)
    done_by = Nested(UserRef, allow_none=True)
    created_by = Nested(UserRef)
    created_at = DateTime()


class NoteOut(Schema):
    id = Integer()
    case_id = Integer()
    author = Nested(UserRef)
    body = String()
    event_on = Date(allow_none=True)
    created_at = DateTime()


class TimelineEventOut(Schema):
    at = DateTime()
    all_day = Boolean(metadata={"description": "only the date is known"})
    kind = String(metadata={"description": "the source: status, team, partner, lead, task, "
                                           "note, and those other packages register"})
    summary = String()
    detail = String()
    actor = String(allow_none=True)
    object_type = String(allow_none=True)
    object_id = Integer(allow_none=True)


class TimelineOut(Schema):
    events = List(Nested(TimelineEventOut))
