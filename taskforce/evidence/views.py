"""Evidence pages: a case's items with the upload forms, and one item with its custody.

The upload form posts multipart (werkzeug spools the file to a temporary
file, then the service streams it into the store): it works without
JavaScript. With JavaScript (static/js/evidence-upload.js) the same form
sends the file as the raw body to the API instead, streamed with a progress
bar. Input the service refuses (Invalid, Conflict) shows the page again
with the message; access refusals go to the one error handler.
"""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from taskforce.accounts.permissions import current_actor, signed_in
from taskforce.errors import Conflict, Invalid
from taskforce.evidence import service
from taskforce.evidence.api import stream_download, upload_limit
from taskforce.evidence.models import CUSTODY_KINDS, INTEGRITY, KINDS, SOURCES

bp = Blueprint("evidence", __name__)

LABELS = {"kinds": KINDS, "sources": SOURCES, "custody": CUSTODY_KINDS, "integrity": INTEGRITY}


@bp.context_processor
def _labels():
    return {"ev": LABELS}


@bp.url_value_preprocessor
def _raise_size_limit(endpoint, values) -> None:
    """Before the CSRF check parses the form: only the upload form may be large."""
    if endpoint == "evidence.upload" and request.mimetype == "multipart/form-data":
        request.max_content_length = upload_limit()


def _form(name: str) -> str:
    return request.form.get(name, "")


def _case_page(case_id: int, *, failed: str | None = None, error=None, status: int = 200):
    page = service.evidence_page(actor=current_actor(), case_id=case_id)
    return render_template("evidence/case.html", page=page, case=page.case, failed=failed,
                           error=error, form=request.form if failed else {},
                           max_bytes=current_app.config.get("EVIDENCE_MAX_BYTES")
                           or upload_limit()), status


@bp.get("/cases/<int:case_id>/evidence")
@signed_in
def case_evidence(case_id: int):
    return _case_page(case_id)


@bp.post("/cases/<int:case_id>/evidence")
@signed_in
def upload(case_id: int):
    upload_file = request.files.get("file")
    try:
        if upload_file is None or not upload_file.filename:
            raise Invalid("Choose a file to upload.", fields={"file": ["Required."]})
        item = service.ingest(
            actor=current_actor(), case_id=case_id, stream=upload_file.stream,
            filename=upload_file.filename, description=_form("description"),
            collected_at=_form("collected_at"), collected_by=_form("collected_by"),
            collected_place=_form("collected_place"), source=_form("source"),
            expected_sha256=_form("sha256"))
    except (Invalid, Conflict) as err:
        return _case_page(case_id, failed="upload", error=err, status=err.status)
    finally:
        if upload_file is not None:
            upload_file.close()
    flash(f"{item.number} stored: SHA-256 {item.sha256}.", "success")
    return redirect(url_for(".item", item_id=item.id))


@bp.post("/cases/<int:case_id>/evidence/physical")
@signed_in
def add_physical(case_id: int):
    try:
        item = service.add_physical_item(
            actor=current_actor(), case_id=case_id, description=_form("description"),
            storage_location=_form("storage_location"), source=_form("source"),
            collected_at=_form("collected_at"), collected_by=_form("collected_by"),
            collected_place=_form("collected_place"))
    except (Invalid, Conflict) as err:
        return _case_page(case_id, failed="physical", error=err, status=err.status)
    flash(f"{item.number} recorded.", "success")
    return redirect(url_for(".item", item_id=item.id))


def _item_page(item_id: int, *, failed: str | None = None, error=None, status: int = 200,
               report=None):
    view = service.get_item(actor=current_actor(), item_id=item_id)
    return render_template("evidence/item.html", view=view, item=view.item, case=view.case,
                           failed=failed, error=error, report=report,
                           form=request.form if failed else {}), status


@bp.get("/evidence/<int:item_id>")
@signed_in
def item(item_id: int):
    return _item_page(item_id)


@bp.get("/evidence/<int:item_id>/download")
@signed_in
def download(item_id: int):
    return stream_download(service.download(actor=current_actor(), item_id=item_id,
                                            reason="Downloaded from the item page"))


@bp.post("/evidence/<int:item_id>/transfer")
@signed_in
def transfer(item_id: int):
    try:
        service.transfer(actor=current_actor(), item_id=item_id,
                         to_username=_form("to_username"), place=_form("place"),
                         reason=_form("reason"))
    except (Invalid, Conflict) as err:
        return _item_page(item_id, failed="transfer", error=err, status=err.status)
    flash("Custody transferred.", "success")
    return redirect(url_for(".item", item_id=item_id, _anchor="custody"))


@bp.post("/evidence/<int:item_id>/verify")
@signed_in
def verify(item_id: int):
    try:
        report = service.verify(actor=current_actor(), item_id=item_id)
    except Conflict as err:
        return _item_page(item_id, failed="verify", error=err, status=err.status)
    flash(report.message, "success" if report.ok else "error")
    return redirect(url_for(".item", item_id=item_id, _anchor="custody"))
