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

from taskforce.accounts.permissions import current_actor, signed_in
from taskforce.errors import Invalid
from taskforce.evidence import service
from taskforce.evidence.schemas import (
    ItemDetailOut,
    ItemOut,
    PhysicalIn,
    TransferIn,
    VerifyOut,
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
        expected_sha256=_meta("sha256"))
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
@bp.output(ItemDetailOut)
@bp.doc(summary="Transfer custody to another person who may see the case",
        responses={404: NOT_FOUND})
def transfer(item_id: int, json_data):
    actor = current_actor()
    service.transfer(actor=actor, item_id=item_id, **json_data)
    return service.get_item(actor=actor, item_id=item_id)


@bp.post("/evidence/<int:item_id>/verify")
@signed_in
@bp.output(VerifyOut)
@bp.doc(summary="Re-hash the stored bytes now (appends VERIFIED, with the result)",
        responses={404: NOT_FOUND, 503: "Evidence store unavailable"})
def verify(item_id: int):
    return service.verify(actor=current_actor(), item_id=item_id)


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
