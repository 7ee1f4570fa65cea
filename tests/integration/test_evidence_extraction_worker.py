"""PDF text extraction in the real Celery worker (its own process, Redis broker): queued
by the upload after its commit; a decompression bomb and an encrypted PDF end "text not
extracted" with the reason, and the same worker goes on to extract the next PDF."""
from __future__ import annotations

import io
import time

import pytest

from taskforce import create_app
from taskforce.evidence import service
from taskforce.evidence.models import EvidenceText
from taskforce.extensions import db
from tests.factories_investigations import make_case, person
from tests.unit.test_evidence_extraction import bomb_pdf, encrypted_pdf, good_pdf

pytestmark = pytest.mark.integration


def _wait_for_text(item_id: int, timeout: float = 90) -> EvidenceText:
    deadline = time.monotonic() + timeout
    while True:
        db.session.rollback()
        text = db.session.get(EvidenceText, item_id)
        if text is not None and text.status != "pending":
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"item {item_id}: text still {text and text.status}")
        time.sleep(0.3)


def test_worker_extracts_and_survives_hostile_pdfs(celery_worker, app_environ):
    environ = {**app_environ, **celery_worker.environ}
    app = create_app(environ=environ)
    with app.app_context():
        from taskforce import evidence

        if "evidence" not in app.blueprints:
            evidence.init_app(app)
        db.create_all()
        _, actor = person()
        case_id = make_case(actor)
        ids = {}
        for name, data in (("bomb", bomb_pdf()), ("locked", encrypted_pdf()),
                           ("good", good_pdf())):
            item = service.ingest(actor=actor, case_id=case_id, stream=io.BytesIO(data),
                                  description=name, filename=f"{name}.pdf")
            ids[name] = item.id
            # committed and answered before the text exists: the worker does that
        bomb = _wait_for_text(ids["bomb"])
        assert bomb.status == "not_extracted" and "decompression" in bomb.reason
        locked = _wait_for_text(ids["locked"])
        assert locked.status == "not_extracted" and "encrypted" in locked.reason
        good = _wait_for_text(ids["good"])
        assert good.status == "extracted" and good.page_count == 2
        hits = service.search_text(actor=actor, case_id=case_id, query="Nightjar")
        assert [h.item.id for h in hits] == [ids["good"]]
        db.session.remove()
