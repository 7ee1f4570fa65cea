"""Evidence API schemas: what the JSON API takes and gives back.

The upload itself takes no schema: its body is the file, raw
(application/octet-stream), and its metadata comes in the query string or in
X-Evidence-* headers (see api.py). The service validates everything again.
"""
from __future__ import annotations

import json

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Function, Integer, List, Method, Nested, String
from apiflask.validators import Length, OneOf
from flask import url_for

from taskforce.evidence.models import SOURCES
from taskforce.evidence.service import DESCRIPTION_MAX, NAME_MAX, PLACE_MAX, REASON_MAX


class PersonRef(Schema):
    id = Integer()
    username = String()
    full_name = String()


# In ------------------------------------------------------------------------

class PhysicalIn(Schema):
    description = String(required=True, validate=Length(min=1, max=DESCRIPTION_MAX))
    storage_location = String(required=True, validate=Length(min=1, max=PLACE_MAX),
                              metadata={"description": "where the item is kept (room, locker, "
                                                       "bag number)"})
    source = String(load_default="other", validate=OneOf(list(SOURCES)))
    collected_at = String(metadata={"description": "ISO 8601; UTC unless a zone is given; "
                                                   "default now"})
    collected_by = String(validate=Length(max=NAME_MAX),
                          metadata={"description": "default: you"})
    collected_place = String(load_default="", validate=Length(max=PLACE_MAX))


class ReasonIn(Schema):
    reason = String(required=True, validate=Length(min=1, max=REASON_MAX))


class DecisionIn(Schema):
    place = String(load_default="", validate=Length(max=PLACE_MAX))
    note = String(load_default="", validate=Length(max=REASON_MAX),
                  metadata={"description": "required to refuse"})


class WithdrawIn(Schema):
    reason = String(load_default="", validate=Length(max=REASON_MAX),
                    metadata={"description": "why the hand-over is withdrawn (in the chain)"})


class CheckOutIn(Schema):
    to = String(required=True, validate=Length(min=1, max=PLACE_MAX),
                metadata={"description": "where it goes (the lab, the court)"})
    reason = String(required=True, validate=Length(min=1, max=REASON_MAX))
    place = String(load_default="", validate=Length(max=PLACE_MAX))
    expected_return_at = String(metadata={"description": "ISO 8601, UTC unless a zone is "
                                                         "given; not in the past"})


class CheckInIn(Schema):
    place = String(load_default="", validate=Length(max=PLACE_MAX))
    reason = String(load_default="", validate=Length(max=REASON_MAX))
    condition = String(load_default="", validate=Length(max=REASON_MAX))


class SealIn(Schema):
    seal_number = String(required=True, validate=Length(min=1, max=NAME_MAX))
    place = String(load_default="", validate=Length(max=PLACE_MAX))
    reason = String(load_default="", validate=Length(max=REASON_MAX))


class ReleaseIn(Schema):
    released_to = String(required=True, validate=Length(min=1, max=PLACE_MAX))
    place = String(load_default="", validate=Length(max=PLACE_MAX))
    reason = String(required=True, validate=Length(min=1, max=REASON_MAX))


class DisposeIn(Schema):
    method = String(required=True, validate=Length(min=1, max=PLACE_MAX),
                    metadata={"description": "how (destroyed, returned, wiped)"})
    place = String(load_default="", validate=Length(max=PLACE_MAX))
    reason = String(required=True, validate=Length(min=1, max=REASON_MAX))


class SurvivorFlagIn(Schema):
    identifies = Boolean(load_default=True)
    reason = String(load_default="", validate=Length(max=REASON_MAX))


class SurvivorReleaseIn(Schema):
    entity_id = Integer(required=True)
    reason = String(required=True, validate=Length(min=1, max=REASON_MAX))


class PackageIn(Schema):
    item_ids = List(Integer(), required=True, validate=Length(min=1, max=1000))
    title = String(load_default="", validate=Length(max=NAME_MAX))
    bates_prefix = String(validate=Length(max=24),
                          metadata={"description": "default: PACKAGE_BATES_PREFIX"})


class GrantIn(Schema):
    to_user_id = Integer(metadata={"description": "the prosecutor (or to_username)"})
    to_username = String(validate=Length(max=64))
    expires_at = String(metadata={"description": "ISO 8601; default PACKAGE_ACCESS_DAYS "
                                                 "from now"})


class TransferIn(Schema):
    to_user_id = Integer(metadata={"description": "the receiver (or to_username)"})
    to_username = String(validate=Length(max=64))
    place = String(load_default="", validate=Length(max=PLACE_MAX))
    reason = String(required=True, validate=Length(min=1, max=REASON_MAX))


# Out -----------------------------------------------------------------------

def _details(event) -> dict | None:
    return json.loads(event.details) if event.details else None


class CustodyEventOut(Schema):
    seq = Integer()
    kind = String()
    at = DateTime()
    user_id = Integer(allow_none=True)
    username = String(allow_none=True)
    user_name = String(allow_none=True, metadata={"description": "name at the time"})
    place = String(metadata={"description": "where"})
    reason = String(metadata={"description": "why"})
    details = Function(_details)
    prev_hash = String(metadata={"description": "hash of the item's event before this one "
                                                "(for seq 1: the item's genesis hash)"})
    hash = String()


class ItemOut(Schema):
    id = Integer()
    case_id = Integer()
    number = String(metadata={"description": "<case number>-E0001"})
    kind = String(metadata={"description": "digital or physical"})
    description = String()
    source = String()
    collected_by = String()
    collected_at = DateTime()
    collected_place = String()
    size = Integer(allow_none=True)
    sha256 = String(allow_none=True)
    md5 = String(allow_none=True)
    content_type = String(allow_none=True, metadata={"description": "detected from the bytes"})
    original_filename = String(allow_none=True)
    storage_key = String(allow_none=True)
    storage_location = String(allow_none=True)
    custodian = Nested(PersonRef, allow_none=True)
    integrity = String(metadata={"description": "unverified, ok, mismatch or missing"})
    last_verified_at = DateTime(allow_none=True)
    custody_seq = Integer(metadata={"description": "events in the chain"})
    custody_hash = String(allow_none=True, metadata={"description": "hash of the last event"})
    created_at = DateTime()
    created_by = Nested(PersonRef, allow_none=True)
    state = String(metadata={"description": "in_custody, checked_out, sealed, released or "
                                            "disposed"})
    checked_out_to = String(allow_none=True)
    expected_return_at = DateTime(allow_none=True)
    identifies_survivor = Boolean()
    survivor_released_at = DateTime(allow_none=True)
    page_url = Method("_page_url")
    content_url = Method("_content_url")

    def _page_url(self, item) -> str:
        return url_for("evidence.item", item_id=item.id)

    def _content_url(self, item) -> str | None:
        if item.kind != "digital":
            return None
        return url_for("evidence_api.download", item_id=item.id)


class TransferOut(Schema):
    id = Integer()
    item_id = Integer()
    from_user = Nested(PersonRef, allow_none=True)
    to_user = Nested(PersonRef)
    requested_by = Nested(PersonRef, allow_none=True)
    requested_at = DateTime()
    place = String()
    reason = String()
    status = String(metadata={"description": "pending, accepted, refused or cancelled"})
    decided_at = DateTime(allow_none=True)
    decision_note = String(allow_none=True)
    accept_url = Method("_accept_url")

    def _accept_url(self, t) -> str:
        return url_for("evidence_api.accept_transfer", transfer_id=t.id)


class LegalHoldOut(Schema):
    id = Integer()
    case_id = Integer()
    reason = String()
    set_by = Nested(PersonRef, allow_none=True)
    set_at = DateTime()
    cleared_by = Nested(PersonRef, allow_none=True)
    cleared_at = DateTime(allow_none=True)
    clear_reason = String(allow_none=True)
    active = Boolean()


class ItemDetailOut(Schema):
    item = Nested(ItemOut)
    custody = List(Nested(CustodyEventOut), attribute="events")
    can_transfer = Boolean()
    pending_transfer = Nested(TransferOut, allow_none=True)
    legal_hold = Nested(LegalHoldOut, allow_none=True)


class SurvivorReleaseOut(Schema):
    id = Integer()
    case_id = Integer()
    entity_id = Integer()
    released_at = DateTime()


class GrantOut(Schema):
    id = Integer()
    package_id = Integer()
    user = Nested(PersonRef)
    expires_at = DateTime()
    granted_by = Nested(PersonRef, allow_none=True)
    granted_at = DateTime()
    revoked_at = DateTime(allow_none=True)


class PackageEntryOut(Schema):
    item_id = Integer()
    number = String(attribute="item.number")
    withheld = Boolean()
    withheld_reason = String(allow_none=True)


class PackageOut(Schema):
    id = Integer()
    case_id = Integer()
    number = String(metadata={"description": "<case number>-P01"})
    title = String()
    status = String(metadata={"description": "building, ready or failed"})
    progress = Integer(metadata={"description": "percent, while building"})
    error = String(allow_none=True)
    bates_prefix = String()
    bates_first = Integer(allow_none=True)
    bates_last = Integer(allow_none=True)
    size = Integer(allow_none=True)
    sha256 = String(allow_none=True, metadata={"description": "of the ZIP, as stored"})
    md5 = String(allow_none=True)
    key_fingerprint = String(allow_none=True, metadata={
        "description": "SHA-256 of the Ed25519 public key that signed the manifest"})
    created_by = Nested(PersonRef, allow_none=True)
    created_at = DateTime()
    finished_at = DateTime(allow_none=True)
    items = List(Nested(PackageEntryOut), attribute="entries")
    page_url = Method("_page_url")
    content_url = Method("_content_url")

    def _page_url(self, p) -> str:
        return url_for("evidence.package", package_id=p.id)

    def _content_url(self, p) -> str | None:
        return url_for("evidence_api.download_package", package_id=p.id) \
            if p.status == "ready" else None


class VerifyOut(Schema):
    item_id = Integer()
    number = String()
    ok = Boolean()
    expected_sha256 = String()
    actual_sha256 = String(allow_none=True)
    expected_md5 = String(allow_none=True)
    actual_md5 = String(allow_none=True)
    expected_size = Integer()
    actual_size = Integer(allow_none=True)
    problem = String(allow_none=True)
    message = String()


class MyGrantOut(Schema):
    id = Integer()
    expires_at = DateTime()
    granted_by = Nested(PersonRef, allow_none=True)
    package = Nested(PackageOut)


# --- storage location and printable labels (storage location / label helper) ------------

class MoveIn(Schema):
    storage_location = String(required=True, validate=Length(min=1, max=PLACE_MAX),
                              metadata={"description": "the new place it is kept (room, "
                                                       "locker, shelf, bag number)"})
    reason = String(required=True, validate=Length(min=1, max=REASON_MAX),
                    metadata={"description": "why it was moved"})
    place = String(load_default="", validate=Length(max=PLACE_MAX),
                   metadata={"description": "where the move was recorded (default: the new "
                                            "location)"})
