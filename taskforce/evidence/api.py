"""Evidence JSON API. Thin: parse, call the service, serialise.

The upload takes the file as the RAW request body
(`Content-Type: application/octet-stream`), read from `request.stream` in
chunks as it arrives: nothing buffers the whole body, whatever its size. Its
metadata comes in the query string or in headers (header values
percent-encoded, as headers carry no UTF-8):

    description      X-Evidence-Description   required
    filename         X-Evidence-Filename
    source           X-Evidence-Source        device, subpoena_return, import, other
    collected_at     X-Evidence-Collected-At  ISO 8601, UTC unless a zone is given
    collected_by     X-Evidence-Collected-By  default: you
    collected_place  X-Evidence-Collected-Place
    sha256           X-Content-SHA256         optional: refused with 422 if the bytes differ

415 for another content type (a multipart form goes to the page), 422 for an
empty body or bad metadata, 413 past EVIDENCE_MAX_BYTES, 503 if the store
cannot be reached; in every one of these no record is made.
"""
from __future__ import annotations

from urllib.parse import quote, unquote

from apiflask import APIBlueprint
from flask import Response, current_app, request
from werkzeug.exceptions import UnsupportedMediaType

from taskforce.accounts.permissions import current_actor, requires, signed_in
from taskforce.errors import Invalid
from taskforce.evidence import packages, service
from taskforce.evidence.schemas import (
    CheckInIn,
    CheckOutIn,
    DecisionIn,
    DisposeIn,
    GrantIn,
    GrantOut,
    ItemDetailOut,
    ItemOut,
    LegalHoldOut,
    MyGrantOut,
    PackageIn,
    PackageOut,
    PhysicalIn,
    ReasonIn,
    ReleaseIn,
    SealIn,
    SurvivorFlagIn,
    SurvivorReleaseIn,
    SurvivorReleaseOut,
    TransferIn,
    TransferOut,
    VerifyOut,
    WithdrawIn,
)
from taskforce.evidence.storage import DEFAULT_MAX_BYTES
from taskforce.investigations.policy import WRITE
from taskforce.investigations.service import get_case_or_404

bp = APIBlueprint("evidence_api", __name__, url_prefix="/api/v1", tag="Evidence")

NOT_FOUND = "No such case or item, or it is not shared with you"
RAW = "application/octet-stream"
_META = {  # query parameter -> header
    "description": "X-Evidence-Description",
    "filename": "X-Evidence-Filename",
    "source": "X-Evidence-Source",
    "collected_at": "X-Evidence-Collected-At",
    "collected_by": "X-Evidence-Collected-By",
    "collected_place": "X-Evidence-Collected-Place",
    "sha256": "X-Content-SHA256",
}


def upload_limit() -> int:
    return int(current_app.config.get("EVIDENCE_MAX_BYTES") or DEFAULT_MAX_BYTES)


@bp.url_value_preprocessor
def _raise_size_limit(endpoint, values) -> None:
    """Runs before the app's before_request hooks (which may read the body for the
    CSRF check): only the raw upload may be larger than MAX_CONTENT_LENGTH."""
    if endpoint == "evidence_api.upload" and request.mimetype == RAW:
        request.max_content_length = upload_limit()


def _meta(name: str) -> str | None:
    value = request.args.get(name)
    if value is None:
        header = request.headers.get(_META[name])
        value = unquote(header) if header is not None else None
    return value


@bp.post("/cases/<int:case_id>/evidence")
@signed_in
@bp.output(ItemOut, status_code=201)
@bp.doc(summary="Upload a file as evidence (raw body, any size)",
        description="Send the file itself as the body with Content-Type "
                    "application/octet-stream; metadata in the query string (description, "
                    "filename, source, collected_at, collected_by, collected_place, sha256) "
                    "or X-Evidence-* headers. SHA-256 and MD5 are computed while the bytes "
                    "stream into the evidence store; the item exists only once they are "
                    "stored. 413 past the size limit, 415 for another content type, 422 for "
                    "an empty body, bad metadata or a sha256 the bytes do not match, 503 if "
                    "the store cannot be reached.",
        responses={404: NOT_FOUND, 413: "Too large", 415: "Not application/octet-stream",
                   503: "Evidence store unavailable"})
def upload(case_id: int):
    # Access first: a case the caller may not see answers 404 whatever was sent.
    get_case_or_404(actor=current_actor(), case_id=case_id, action=WRITE,
                    attempt="evidence.upload")
    if request.mimetype != RAW:
        raise UnsupportedMediaType(
            f"Send the file itself as the request body with Content-Type {RAW} "
            f"(this was {request.mimetype or 'no content type'}); forms upload from the "
            "case's evidence page.")
    if request.content_length == 0:
        raise Invalid("The upload is empty: there are no bytes to store.",
                      fields={"file": ["Empty."]})
    item = service.ingest(
        actor=current_actor(), case_id=case_id, stream=request.stream,
        filename=_meta("filename"), description=_meta("description"),
        collected_at=_meta("collected_at"), collected_by=_meta("collected_by"),
        collected_place=_meta("collected_place"), source=_meta("source"),
        expected_sha256=_meta("sha256"), length=request.content_length)
    return item, 201


@bp.post("/cases/<int:case_id>/evidence/physical")
@signed_in
@bp.input(PhysicalIn)
@bp.output(ItemOut, status_code=201)
@bp.doc(summary="Record a physical item", responses={404: NOT_FOUND})
def add_physical(case_id: int, json_data):
    return service.add_physical_item(actor=current_actor(), case_id=case_id, **json_data), 201


@bp.get("/cases/<int:case_id>/evidence")
@signed_in
@bp.output(ItemOut(many=True))
@bp.doc(summary="A case's evidence items", responses={404: NOT_FOUND})
def list_items(case_id: int):
    return service.list_items(actor=current_actor(), case_id=case_id)


@bp.get("/evidence/<int:item_id>")
@signed_in
@bp.output(ItemDetailOut)
@bp.doc(summary="An evidence item with its whole chain of custody",
        responses={404: NOT_FOUND})
def get_item(item_id: int):
    return service.get_item(actor=current_actor(), item_id=item_id)


@bp.get("/evidence/<int:item_id>/content")
@signed_in
@bp.doc(summary="Download an item's bytes (appends ACCESSED to its custody)",
        responses={404: NOT_FOUND, 409: "A physical item", 503: "Evidence store unavailable"})
def download(item_id: int):
    return stream_download(service.download(actor=current_actor(), item_id=item_id,
                                            reason=request.args.get("reason", "")))


@bp.post("/evidence/<int:item_id>/transfer")
@signed_in
@bp.input(TransferIn)
@bp.output(TransferOut, status_code=202)
@bp.doc(summary="Hand custody to another person who may see the case",
        description="The hand-over waits for the receiver to accept it "
                    "(POST /custody-transfers/<id>/accept); TRANSFERRED is appended then.",
        responses={404: NOT_FOUND, 403: "Neither the custodian nor a manager of the case",
                   409: "Another hand-over waits, or the item cannot move now"})
def transfer(item_id: int, json_data):
    return service.transfer(actor=current_actor(), item_id=item_id, **json_data), 202


@bp.post("/evidence/<int:item_id>/transfer/cancel")
@signed_in
@bp.input(WithdrawIn)
@bp.output(TransferOut)
@bp.doc(summary="Withdraw a hand-over not yet accepted (appends TRANSFER_WITHDRAWN)",
        responses={404: NOT_FOUND, 409: "No hand-over of this item is waiting"})
def cancel_transfer(item_id: int, json_data):
    return service.cancel_transfer(actor=current_actor(), item_id=item_id, **json_data)


@bp.get("/custody-transfers")
@signed_in
@bp.output(TransferOut(many=True))
@bp.doc(summary="Hand-overs waiting for you to accept or refuse")
def incoming_transfers():
    return service.incoming_transfers(actor=current_actor())


@bp.post("/custody-transfers/<int:transfer_id>/accept")
@signed_in
@bp.input(DecisionIn)
@bp.output(ItemDetailOut)
@bp.doc(summary="Accept a hand-over: you become the custodian (appends TRANSFERRED)",
        responses={404: "No such hand-over waiting for you", 409: "Already decided"})
def accept_transfer(transfer_id: int, json_data):
    actor = current_actor()
    event = service.accept_transfer(actor=actor, transfer_id=transfer_id, **json_data)
    return service.get_item(actor=actor, item_id=event.item_id)


@bp.post("/custody-transfers/<int:transfer_id>/refuse")
@signed_in
@bp.input(DecisionIn)
@bp.output(TransferOut)
@bp.doc(summary="Refuse a hand-over (a note saying why is required)",
        responses={404: "No such hand-over waiting for you", 409: "Already decided"})
def refuse_transfer(transfer_id: int, json_data):
    return service.refuse_transfer(actor=current_actor(), transfer_id=transfer_id,
                                   note=json_data.get("note"))


def _lifecycle(fn, item_id: int, json_data):
    actor = current_actor()
    fn(actor=actor, item_id=item_id, **json_data)
    return service.get_item(actor=actor, item_id=item_id)


@bp.post("/evidence/<int:item_id>/check-out")
@signed_in
@bp.input(CheckOutIn)
@bp.output(ItemDetailOut)
@bp.doc(summary="Check the item out (to a lab, to court): CHECKED_OUT",
        responses={404: NOT_FOUND, 409: "Not in a state to be checked out"})
def check_out(item_id: int, json_data):
    return _lifecycle(service.check_out, item_id, json_data)


@bp.post("/evidence/<int:item_id>/check-in")
@signed_in
@bp.input(CheckInIn)
@bp.output(ItemDetailOut)
@bp.doc(summary="Check the item back in: CHECKED_IN",
        responses={404: NOT_FOUND, 409: "Not checked out"})
def check_in(item_id: int, json_data):
    return _lifecycle(service.check_in, item_id, json_data)


@bp.post("/evidence/<int:item_id>/seal")
@signed_in
@bp.input(SealIn)
@bp.output(ItemDetailOut)
@bp.doc(summary="Seal the item under a numbered seal: SEALED", responses={404: NOT_FOUND})
def seal(item_id: int, json_data):
    return _lifecycle(service.seal, item_id, json_data)


@bp.post("/evidence/<int:item_id>/release")
@signed_in
@bp.input(ReleaseIn)
@bp.output(ItemDetailOut)
@bp.doc(summary="Release the item from custody for good (case managers): RELEASED",
        responses={404: NOT_FOUND, 403: "Not a manager of the case"})
def release(item_id: int, json_data):
    return _lifecycle(service.release, item_id, json_data)


@bp.post("/evidence/<int:item_id>/dispose")
@requires("supervisor")
@bp.input(DisposeIn)
@bp.output(ItemDetailOut)
@bp.doc(summary="Dispose of the item, on a supervisor's authority: DISPOSED",
        responses={404: NOT_FOUND, 409: "The case is under a legal hold"})
def dispose(item_id: int, json_data):
    return _lifecycle(service.dispose, item_id, json_data)


@bp.post("/evidence/<int:item_id>/survivor-flag")
@signed_in
@bp.input(SurvivorFlagIn)
@bp.output(ItemOut)
@bp.doc(summary="Mark (or unmark) an item as identifying a survivor",
        description="A marked item is withheld from prosecutor packages until a victim "
                    "specialist releases it. The case team may mark; only a victim "
                    "specialist or the case lead may unmark.", responses={404: NOT_FOUND})
def survivor_flag(item_id: int, json_data):
    return service.flag_survivor_item(actor=current_actor(), item_id=item_id, **json_data)


@bp.post("/evidence/<int:item_id>/survivor-release")
@requires("victim_specialist")
@bp.input(ReasonIn)
@bp.output(ItemOut)
@bp.doc(summary="Release a survivor-identifying item into packages (victim specialists)",
        responses={404: NOT_FOUND})
def survivor_release_item(item_id: int, json_data):
    return service.release_survivor_item(actor=current_actor(), item_id=item_id, **json_data)


@bp.post("/cases/<int:case_id>/survivor-releases")
@signed_in  # the role is checked after the case (an outsider gets 404, as everywhere)
@bp.input(SurvivorReleaseIn)
@bp.output(SurvivorReleaseOut, status_code=201)
@bp.doc(summary="Release a survivor's identity for this case's packages (victim "
                "specialists)", responses={404: NOT_FOUND})
def survivor_release(case_id: int, json_data):
    return service.release_survivor_identity(actor=current_actor(), case_id=case_id,
                                             **json_data), 201


@bp.post("/cases/<int:case_id>/legal-hold")
@signed_in  # the role is checked after the case (an outsider gets 404, as everywhere)
@bp.input(ReasonIn)
@bp.output(LegalHoldOut, status_code=201)
@bp.doc(summary="Put every item of the case under a legal hold (supervisors)",
        responses={404: NOT_FOUND, 409: "Already held", 503: "Evidence store unavailable"})
def set_legal_hold(case_id: int, json_data):
    return service.set_legal_hold(actor=current_actor(), case_id=case_id, **json_data), 201


@bp.post("/cases/<int:case_id>/legal-hold/clear")
@signed_in  # the role is checked after the case (an outsider gets 404, as everywhere)
@bp.input(ReasonIn)
@bp.output(LegalHoldOut)
@bp.doc(summary="Clear the case's legal hold (supervisors)",
        responses={404: NOT_FOUND, 409: "Not held", 503: "Evidence store unavailable"})
def clear_legal_hold(case_id: int, json_data):
    return service.clear_legal_hold(actor=current_actor(), case_id=case_id, **json_data)


@bp.get("/evidence/<int:item_id>/custody-report")
@signed_in
@bp.doc(summary="The item's custody report (PDF; appends ACCESSED)",
        responses={200: {"description": "application/pdf"}, 404: NOT_FOUND})
def item_custody_report(item_id: int):
    return pdf_response(service.item_custody_report(actor=current_actor(), item_id=item_id,
                                                    place="API"))


@bp.get("/cases/<int:case_id>/custody-report")
@signed_in
@bp.doc(summary="The custody report of every item of the case (PDF; appends ACCESSED)",
        responses={200: {"description": "application/pdf"}, 404: NOT_FOUND,
                   409: "No evidence yet"})
def case_custody_report(case_id: int):
    return pdf_response(service.case_custody_report(actor=current_actor(), case_id=case_id,
                                                    place="API"))


@bp.post("/cases/<int:case_id>/packages")
@signed_in
@bp.input(PackageIn)
@bp.output(PackageOut, status_code=202)
@bp.doc(summary="Build a prosecutor package from items of the case (a background job)",
        description="Prosecutors on the case and its lead. Poll the package until status is "
                    "ready, then download content_url.",
        responses={404: NOT_FOUND, 403: "Neither a prosecutor on the case nor its lead"})
def request_package(case_id: int, json_data):
    return packages.request_package(actor=current_actor(), case_id=case_id, **json_data), 202


@bp.get("/cases/<int:case_id>/packages")
@signed_in
@bp.output(PackageOut(many=True))
@bp.doc(summary="The case's packages (those shared with you, or all if you manage it)",
        responses={404: NOT_FOUND})
def list_packages(case_id: int):
    return packages.list_packages(actor=current_actor(), case_id=case_id)


@bp.get("/packages")
@signed_in
@bp.output(MyGrantOut(many=True))
@bp.doc(summary="The packages shared with you, with each one's expiry (expired ones too)")
def my_packages():
    return packages.my_packages(actor=current_actor())


@bp.get("/packages/<int:package_id>")
@signed_in
@bp.output(PackageOut)
@bp.doc(summary="A package: status, hash, Bates range, items",
        responses={404: "No such package, or not shared with you"})
def get_package(package_id: int):
    return packages.get_package(actor=current_actor(), package_id=package_id).package


@bp.get("/packages/<int:package_id>/content")
@signed_in
@bp.doc(summary="Download the package ZIP (ACCESSED on each item; audited)",
        responses={403: "Your access expired", 404: "No such package, or not shared with "
                   "you", 409: "Not built yet"})
def download_package(package_id: int):
    return stream_package(packages.download_package(actor=current_actor(),
                                                   package_id=package_id, place="API"))


@bp.post("/packages/<int:package_id>/grants")
@signed_in
@bp.input(GrantIn)
@bp.output(GrantOut, status_code=201)
@bp.doc(summary="Give a prosecutor read-only access to the package until a date",
        responses={404: "No such package", 403: "Not a manager of the case"})
def grant_package(package_id: int, json_data):
    return packages.grant_package_access(actor=current_actor(), package_id=package_id,
                                        **json_data), 201


@bp.post("/packages/<int:package_id>/grants/<int:grant_id>/revoke")
@signed_in
@bp.output(GrantOut)
@bp.doc(summary="Withdraw a prosecutor's access to the package",
        responses={404: "No such package or access"})
def revoke_package_grant(package_id: int, grant_id: int):
    return packages.revoke_package_access(actor=current_actor(), package_id=package_id,
                                         grant_id=grant_id)


@bp.post("/evidence/<int:item_id>/verify")
@signed_in
@bp.output(VerifyOut)
@bp.doc(summary="Re-hash the stored bytes now (appends VERIFIED, with the result)",
        responses={404: NOT_FOUND, 503: "Evidence store unavailable"})
def verify(item_id: int):
    return service.verify(actor=current_actor(), item_id=item_id)


def pdf_response(report: service.Report) -> Response:
    resp = Response(report.data, mimetype="application/pdf")
    resp.headers["Content-Disposition"] = f'attachment; filename="{report.filename}"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


def stream_package(dl: packages.PackageDownload) -> Response:
    resp = Response(dl.chunks, mimetype="application/zip", direct_passthrough=True)
    resp.headers["Content-Length"] = str(dl.size)
    resp.headers["Content-Disposition"] = f'attachment; filename="{dl.filename}"'
    resp.headers["X-Content-SHA256"] = dl.package.sha256 or ""
    resp.headers["Cache-Control"] = "no-store"
    return resp


def stream_download(dl: service.Download) -> Response:
    """The bytes as an attachment, streamed chunk by chunk."""
    ascii_name = dl.filename.encode("ascii", "replace").decode().replace('"', "_")
    resp = Response(dl.chunks, mimetype=dl.content_type, direct_passthrough=True)
    resp.headers["Content-Length"] = str(dl.size)
    resp.headers["Content-Disposition"] = (
        f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(dl.filename)}")
    resp.headers["X-Content-SHA256"] = dl.item.sha256 or ""
    resp.headers["X-Evidence-Number"] = dl.item.number
    return resp


# --- integrity alerts, extracted text, suggested entities (storage / sweep / text helper) --
# Their schemas live here (schemas.py is another part's file), plain apiflask Schemas.

from apiflask import Schema as _Schema
from apiflask.fields import DateTime as _DateTime
from apiflask.fields import Integer as _Integer
from apiflask.fields import List as _List
from apiflask.fields import Nested as _Nested
from apiflask.fields import String as _String


class IntegrityAlertOut(_Schema):
    id = _Integer()
    item_id = _Integer()
    case_id = _Integer()
    problem = _String()
    expected_sha256 = _String()
    actual_sha256 = _String(allow_none=True)
    detected_at = _DateTime()
    read_at = _DateTime(allow_none=True)


class IntegrityAlertsOut(_Schema):
    alerts = _List(_Nested(IntegrityAlertOut))


@bp.get("/evidence/integrity-alerts")
@signed_in
@bp.output(IntegrityAlertsOut)
@bp.doc(summary="Your integrity alerts",
        description="Raised by the integrity sweep when an item's stored bytes no longer match "
                    "their recorded SHA-256 or are missing; addressed to the case lead and the "
                    "lead agency's supervisors. Listing them marks them read.")
def integrity_alerts():
    return {"alerts": service.integrity_alerts(actor=current_actor())}


class EvidenceTextHitOut(_Schema):
    item_id = _Integer(attribute="item.id")
    number = _String(attribute="item.number")
    page_no = _Integer()
    snippet = _String()


class EvidenceTextSearchOut(_Schema):
    hits = _List(_Nested(EvidenceTextHitOut))


class EvidenceTextQuery(_Schema):
    q = _String(required=True, metadata={"description": "Words that must all appear on a page"})


class EntitySuggestionOut(_Schema):
    id = _Integer()
    item_id = _Integer()
    kind = _String()
    value = _String()
    found_as = _String()
    page_no = _Integer()
    context = _String()
    status = _String()
    entity_id = _Integer(allow_none=True)
    decided_at = _DateTime(allow_none=True)


class EvidencePageOut(_Schema):
    page_no = _Integer()
    text = _String()


class EvidenceTextOut(_Schema):
    item_id = _Integer(attribute="item.id")
    status = _String(attribute="text.status", allow_none=True)
    reason = _String(attribute="text.reason", allow_none=True)
    page_count = _Integer(attribute="text.page_count", allow_none=True)
    metadata = _String(attribute="text.doc_metadata", allow_none=True)
    pages = _List(_Nested(EvidencePageOut))
    suggestions = _List(_Nested(EntitySuggestionOut))


class AcceptSuggestionIn(_Schema):
    platform = _String(load_default=None, metadata={"description": "The site, for an ad id"})


@bp.get("/cases/<int:case_id>/evidence/search")
@signed_in
@bp.input(EvidenceTextQuery, location="query")
@bp.output(EvidenceTextSearchOut)
@bp.doc(summary="Search the text of a case's evidence",
        description="Pages of the case's PDFs whose extracted text holds every word.",
        responses={404: NOT_FOUND})
def search_text(case_id: int, query_data):
    return {"hits": service.search_text(actor=current_actor(), case_id=case_id,
                                        query=query_data["q"])}


@bp.get("/evidence/<int:item_id>/text")
@signed_in
@bp.output(EvidenceTextOut)
@bp.doc(summary="An item's extracted text and suggested entities",
        description="status: pending, extracted or not_extracted (then reason says why: "
                    "encrypted, malformed, over the time or memory bound...).",
        responses={404: NOT_FOUND})
def item_text(item_id: int):
    view = service.item_text(actor=current_actor(), item_id=item_id)
    return {"item": view.item, "text": view.text, "pages": view.pages,
            "suggestions": view.suggestions}


@bp.post("/evidence/suggestions/<int:suggestion_id>/accept")
@signed_in
@bp.input(AcceptSuggestionIn)
@bp.output(EntitySuggestionOut)
@bp.doc(summary="Accept a suggested entity: add it to the case",
        description="Added through the graph service with a note naming the evidence item "
                    "and page it was found on. An ad id needs its platform.",
        responses={404: NOT_FOUND, 409: "Already decided"})
def accept_suggestion(suggestion_id: int, json_data):
    return service.decide_suggestion(actor=current_actor(), suggestion_id=suggestion_id,
                                     accept=True, platform=json_data.get("platform"))


@bp.post("/evidence/suggestions/<int:suggestion_id>/dismiss")
@signed_in
@bp.output(EntitySuggestionOut)
@bp.doc(summary="Dismiss a suggested entity", responses={404: NOT_FOUND, 409: "Already decided"})
def dismiss_suggestion(suggestion_id: int):
    return service.decide_suggestion(actor=current_actor(), suggestion_id=suggestion_id,
                                     accept=False)


# --- storage location and printable labels (storage location / label helper) ------------

from taskforce.evidence.schemas import MoveIn


@bp.post("/evidence/<int:item_id>/storage-location")
@signed_in
@bp.input(MoveIn)
@bp.output(ItemDetailOut)
@bp.doc(summary="Move a physical item to another storage location (appends MOVED)",
        description="The custodian or a manager of the case. The chain of custody records "
                    "who moved it, when, why, and the old and new locations.",
        responses={404: NOT_FOUND, 403: "Neither the custodian nor a manager of the case",
                   409: "A digital file, or an item checked out, released or disposed of"})
def move_item(item_id: int, json_data):
    return _lifecycle(service.move_item, item_id, json_data)


@bp.get("/evidence/<int:item_id>/label")
@signed_in
@bp.doc(summary="The item's printable label (PDF, 4 x 2 in) with its QR code",
        description="Case and item number, description (cut to fit), collected by and at, "
                    "storage location (or a SHA-256 prefix), and a QR code of the item's page "
                    "(which needs sign-in and access to the case). Never a survivor's name. "
                    "Printing is audited; it is not a custody event.",
        responses={200: {"description": "application/pdf"}, 404: NOT_FOUND})
def item_label(item_id: int):
    return label_response(service.item_label(actor=current_actor(), item_id=item_id,
                                             place="API"))


def label_response(label: service.Report) -> Response:
    """Inline, so the browser shows it ready to print; never cached."""
    resp = Response(label.data, mimetype="application/pdf")
    resp.headers["Content-Disposition"] = f'inline; filename="{label.filename}"'
    resp.headers["Cache-Control"] = "no-store"
    return resp
