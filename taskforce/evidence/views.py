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

from taskforce.accounts.permissions import current_actor, requires, signed_in
from taskforce.errors import Conflict, Invalid
from taskforce.evidence import packages, service
from taskforce.evidence.api import pdf_response, stream_download, stream_package, upload_limit
from taskforce.evidence.models import (
    CUSTODY_KINDS,
    INTEGRITY,
    KINDS,
    PACKAGE_STATUSES,
    SOURCES,
    STATES,
    TRANSFER_STATUSES,
)

bp = Blueprint("evidence", __name__)

LABELS = {"kinds": KINDS, "sources": SOURCES, "custody": CUSTODY_KINDS, "integrity": INTEGRITY,
          "states": STATES, "transfers": TRANSFER_STATUSES, "packages": PACKAGE_STATUSES}


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
        request_ = service.transfer(actor=current_actor(), item_id=item_id,
                                    to_username=_form("to_username"), place=_form("place"),
                                    reason=_form("reason"))
    except (Invalid, Conflict) as err:
        return _item_page(item_id, failed="transfer", error=err, status=err.status)
    flash(f"Hand-over asked: {request_.to_user.username} must accept it before custody "
          "moves.", "success")
    return redirect(url_for(".item", item_id=item_id, _anchor="custody"))


@bp.post("/evidence/<int:item_id>/transfer/cancel")
@signed_in
def cancel_transfer(item_id: int):
    try:
        service.cancel_transfer(actor=current_actor(), item_id=item_id, reason=_form("reason"))
    except (Invalid, Conflict) as err:
        return _item_page(item_id, failed="transfer", error=err, status=err.status)
    flash("Hand-over withdrawn.", "success")
    return redirect(url_for(".item", item_id=item_id, _anchor="custody"))


@bp.get("/evidence/transfers")
@signed_in
def transfers(failed=None, error=None, status: int = 200):
    rows = service.incoming_transfers(actor=current_actor())
    return render_template("evidence/transfers.html", transfers=rows, failed=failed,
                           error=error, form=request.form if failed else {}), status


@bp.post("/evidence/transfers/<int:transfer_id>/accept")
@signed_in
def accept_transfer(transfer_id: int):
    try:
        event = service.accept_transfer(actor=current_actor(), transfer_id=transfer_id,
                                        place=_form("place"), note=_form("note"))
    except (Invalid, Conflict) as err:
        return transfers(failed=f"t{transfer_id}", error=err, status=err.status)
    flash("You now hold the item: the hand-over is in its chain of custody.", "success")
    return redirect(url_for(".item", item_id=event.item_id, _anchor="custody"))


@bp.post("/evidence/transfers/<int:transfer_id>/refuse")
@signed_in
def refuse_transfer(transfer_id: int):
    try:
        service.refuse_transfer(actor=current_actor(), transfer_id=transfer_id,
                                note=_form("note"))
    except (Invalid, Conflict) as err:
        return transfers(failed=f"t{transfer_id}", error=err, status=err.status)
    flash("Hand-over refused; the giver keeps the item.", "success")
    return redirect(url_for(".transfers"))


def _lifecycle(item_id: int, section: str, fn, done: str, **fields):
    try:
        fn(actor=current_actor(), item_id=item_id, **{k: _form(v) for k, v in fields.items()})
    except (Invalid, Conflict) as err:
        return _item_page(item_id, failed=section, error=err, status=err.status)
    flash(done, "success")
    return redirect(url_for(".item", item_id=item_id, _anchor="custody"))


@bp.post("/evidence/<int:item_id>/check-out")
@signed_in
def check_out(item_id: int):
    return _lifecycle(item_id, "check_out", service.check_out, "Checked out.", to="to",
                      place="place", reason="reason", expected_return_at="expected_return_at")


@bp.post("/evidence/<int:item_id>/check-in")
@signed_in
def check_in(item_id: int):
    return _lifecycle(item_id, "check_in", service.check_in, "Checked in.", place="place",
                      reason="reason", condition="condition")


@bp.post("/evidence/<int:item_id>/seal")
@signed_in
def seal(item_id: int):
    return _lifecycle(item_id, "seal", service.seal, "Sealed.", seal_number="seal_number",
                      place="place", reason="reason")


@bp.post("/evidence/<int:item_id>/release")
@signed_in
def release(item_id: int):
    return _lifecycle(item_id, "release", service.release, "Released from custody.",
                      released_to="released_to", place="place", reason="reason")


@bp.post("/evidence/<int:item_id>/dispose")
@requires("supervisor")
def dispose(item_id: int):
    return _lifecycle(item_id, "dispose", service.dispose, "Disposal recorded.",
                      method="method", place="place", reason="reason")


@bp.post("/evidence/<int:item_id>/survivor-flag")
@signed_in
def survivor_flag(item_id: int):
    try:
        item = service.flag_survivor_item(actor=current_actor(), item_id=item_id,
                                          identifies=_form("identifies") or "0",
                                          reason=_form("reason"))
    except (Invalid, Conflict) as err:
        return _item_page(item_id, failed="survivor", error=err, status=err.status)
    flash("Marked as identifying a survivor: withheld from packages until released."
          if item.identifies_survivor else "No longer marked as identifying a survivor.",
          "success")
    return redirect(url_for(".item", item_id=item_id))


@bp.post("/evidence/<int:item_id>/survivor-release")
@requires("victim_specialist")
def survivor_release_item(item_id: int):
    try:
        service.release_survivor_item(actor=current_actor(), item_id=item_id,
                                      reason=_form("reason"))
    except (Invalid, Conflict) as err:
        return _item_page(item_id, failed="survivor", error=err, status=err.status)
    flash("Released into prosecutor packages.", "success")
    return redirect(url_for(".item", item_id=item_id))


@bp.get("/evidence/<int:item_id>/custody-report.pdf")
@signed_in
def item_custody_report(item_id: int):
    return pdf_response(service.item_custody_report(actor=current_actor(), item_id=item_id,
                                                    place="web page"))


@bp.get("/cases/<int:case_id>/evidence/custody-report.pdf")
@signed_in
def case_custody_report(case_id: int):
    return pdf_response(service.case_custody_report(actor=current_actor(), case_id=case_id,
                                                    place="web page"))


@bp.post("/cases/<int:case_id>/evidence/legal-hold")
@signed_in  # the role is checked after the case (an outsider gets 404, as everywhere)
def legal_hold(case_id: int):
    try:
        if _form("action") == "clear":
            service.clear_legal_hold(actor=current_actor(), case_id=case_id,
                                     reason=_form("reason"))
            flash("Legal hold cleared.", "success")
        else:
            service.set_legal_hold(actor=current_actor(), case_id=case_id,
                                   reason=_form("reason"))
            flash("Legal hold set on every item of the case.", "success")
    except (Invalid, Conflict) as err:
        return _case_page(case_id, failed="hold", error=err, status=err.status)
    return redirect(url_for(".case_evidence", case_id=case_id, _anchor="hold"))


@bp.post("/cases/<int:case_id>/evidence/survivor-releases")
@signed_in  # the role is checked after the case (an outsider gets 404, as everywhere)
def survivor_release(case_id: int):
    try:
        service.release_survivor_identity(actor=current_actor(), case_id=case_id,
                                          entity_id=_form("entity_id"), reason=_form("reason"))
    except (Invalid, Conflict) as err:
        return _case_page(case_id, failed="survivors", error=err, status=err.status)
    flash("Released: packages built from now on show this survivor's identity.", "success")
    return redirect(url_for(".case_evidence", case_id=case_id, _anchor="survivors"))


@bp.post("/cases/<int:case_id>/evidence/packages")
@signed_in
def request_package(case_id: int):
    try:
        package = packages.request_package(actor=current_actor(), case_id=case_id,
                                          item_ids=request.form.getlist("item_ids"),
                                          title=_form("title"),
                                          bates_prefix=_form("bates_prefix"))
    except (Invalid, Conflict) as err:
        return _case_page(case_id, failed="package", error=err, status=err.status)
    flash(f"Package {package.number} is being built.", "success")
    return redirect(url_for(".package", package_id=package.id))


def _package_page(package_id: int, *, failed=None, error=None, status: int = 200):
    view = packages.get_package(actor=current_actor(), package_id=package_id)
    return render_template("evidence/package.html", view=view, package=view.package,
                           case=view.case, failed=failed, error=error, now=service.now(),
                           form=request.form if failed else {}), status


@bp.get("/packages/<int:package_id>")
@signed_in
def package(package_id: int):
    return _package_page(package_id)


@bp.get("/packages")
@signed_in
def my_packages():
    grants = packages.my_packages(actor=current_actor())
    return render_template("evidence/packages.html", grants=grants, now=service.now())


@bp.get("/packages/<int:package_id>/download")
@signed_in
def download_package(package_id: int):
    return stream_package(packages.download_package(actor=current_actor(),
                                                   package_id=package_id, place="web page"))


@bp.post("/packages/<int:package_id>/grants")
@signed_in
def grant_package(package_id: int):
    try:
        packages.grant_package_access(actor=current_actor(), package_id=package_id,
                                     to_username=_form("to_username"),
                                     expires_at=_form("expires_at"))
    except (Invalid, Conflict) as err:
        return _package_page(package_id, failed="grant", error=err, status=err.status)
    flash("Access given.", "success")
    return redirect(url_for(".package", package_id=package_id, _anchor="access"))


@bp.post("/packages/<int:package_id>/grants/<int:grant_id>/revoke")
@signed_in
def revoke_package_grant(package_id: int, grant_id: int):
    packages.revoke_package_access(actor=current_actor(), package_id=package_id,
                                  grant_id=grant_id)
    flash("Access withdrawn.", "success")
    return redirect(url_for(".package", package_id=package_id, _anchor="access"))


@bp.post("/evidence/<int:item_id>/verify")
@signed_in
def verify(item_id: int):
    try:
        report = service.verify(actor=current_actor(), item_id=item_id)
    except Conflict as err:
        return _item_page(item_id, failed="verify", error=err, status=err.status)
    flash(report.message, "success" if report.ok else "error")
    return redirect(url_for(".item", item_id=item_id, _anchor="custody"))


# --- integrity alerts, extracted text, suggested entities (storage / sweep / text helper) --

@bp.get("/evidence/alerts")
@signed_in
def integrity_alerts():
    return render_template("evidence/alerts.html",
                           alerts=service.integrity_alerts(actor=current_actor()))


@bp.get("/cases/<int:case_id>/evidence/search")
@signed_in
def search_text(case_id: int):
    q = request.args.get("q", "")
    hits, error, status = None, None, 200
    if q.strip():
        try:
            hits = service.search_text(actor=current_actor(), case_id=case_id, query=q)
        except Invalid as err:
            error, status = err, err.status
    else:  # the empty form: still the one access check (and its audit)
        service.evidence_page(actor=current_actor(), case_id=case_id)
    return render_template("evidence/text_search.html", case_id=case_id, q=q, hits=hits,
                           error=error), status


def _text_page(item_id: int, *, failed: str | None = None, error=None, status: int = 200):
    from taskforce.evidence.models import SUGGESTION_KINDS, SUGGESTION_STATUSES

    view = service.item_text(actor=current_actor(), item_id=item_id)
    return render_template("evidence/text.html", view=view, kinds=SUGGESTION_KINDS,
                           statuses=SUGGESTION_STATUSES, failed=failed, error=error), status


@bp.get("/evidence/<int:item_id>/text")
@signed_in
def item_text(item_id: int):
    return _text_page(item_id)


def _decide(suggestion_id: int, *, accept: bool):
    try:
        decided = service.decide_suggestion(actor=current_actor(), suggestion_id=suggestion_id,
                                            accept=accept, platform=_form("platform") or None)
    except (Invalid, Conflict) as err:
        item_id = _form("item_id")  # the page the form was on (checked again by item_text)
        if not item_id.isdigit():
            raise
        return _text_page(int(item_id), failed="suggestion", error=err, status=err.status)
    flash("Added to the case." if accept else "Dismissed.", "success")
    return redirect(url_for(".item_text", item_id=decided.item_id, _anchor="suggestions"))


@bp.post("/evidence/suggestions/<int:suggestion_id>/accept")
@signed_in
def accept_suggestion(suggestion_id: int):
    return _decide(suggestion_id, accept=True)


@bp.post("/evidence/suggestions/<int:suggestion_id>/dismiss")
@signed_in
def dismiss_suggestion(suggestion_id: int):
    return _decide(suggestion_id, accept=False)


# --- storage location and printable labels (storage location / label helper) ------------

from taskforce.evidence.api import label_response


@bp.context_processor
def _label_helpers():
    from markupsafe import Markup

    def evidence_qr_svg(item_id: int) -> Markup:
        return Markup(service.item_qr_svg(item_id))  # segno's own SVG markup: no user text

    return {"evidence_qr_svg": evidence_qr_svg}


@bp.post("/evidence/<int:item_id>/storage-location")
@signed_in
def move_item(item_id: int):
    try:
        service.move_item(actor=current_actor(), item_id=item_id,
                          storage_location=_form("storage_location"), reason=_form("reason"),
                          place=_form("place"))
    except (Invalid, Conflict) as err:
        return _item_page(item_id, failed="move", error=err, status=err.status)
    flash("Storage location changed: recorded in the chain of custody.", "success")
    return redirect(url_for(".item", item_id=item_id, _anchor="label"))


@bp.get("/evidence/<int:item_id>/label.pdf")
@signed_in
def item_label(item_id: int):
    return label_response(service.item_label(actor=current_actor(), item_id=item_id,
                                             place="web page"))
