"""Evidence over HTTP: the raw-body API upload, its errors, the pages, download, transfer."""
from __future__ import annotations

import hashlib
import io
import re
import secrets
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from taskforce.evidence.models import CustodyEvent, EvidenceItem
from taskforce.extensions import db
from taskforce.investigations import service as cases
from tests.factories_investigations import api_caller, browser, ensure_registered, make_case, person

RAW = "application/octet-stream"


@pytest.fixture()
def ev_app(app):
    from taskforce import evidence

    ensure_registered(app)
    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    return app


@pytest.fixture()
def setup(ev_app):
    user, actor = person()
    case_id = make_case(actor)
    return user, actor, case_id, api_caller(ev_app, user)


def _upload(caller, case_id, data=b"", *, content_type=RAW, query="description=Phone%20dump",
            headers=None, **kw):
    hdrs = {**caller._headers(), **(headers or {})}
    if content_type:
        hdrs["Content-Type"] = content_type
    return caller.client.post(f"/api/v1/cases/{case_id}/evidence?{query}", data=data,
                              headers=hdrs, **kw)


def _items() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(EvidenceItem))


class Chunks(io.RawIOBase):
    """A body produced on the fly (never held whole in memory)."""

    def __init__(self, size: int, fail_at: int | None = None):
        self.size, self.sent, self.fail_at = size, 0, fail_at
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    # werkzeug's test client measures the body by seeking to its end and back
    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.sent

    def seek(self, pos: int, whence: int = 0) -> int:
        self.sent = self.size if whence == 2 else pos
        return self.sent

    def read(self, n: int = -1) -> bytes:
        if self.fail_at is not None and self.sent >= self.fail_at:
            raise ConnectionResetError("client went away")
        n = min(n if n and n > 0 else 1 << 20, self.size - self.sent, 1 << 20)
        block = (self.sent.to_bytes(8, "big") * ((n // 8) + 1))[:n]
        self.sent += n
        self.sha.update(block)
        return block

    def readinto(self, buffer) -> int:  # werkzeug's LimitedStream reads this way
        block = self.read(len(buffer))
        buffer[:len(block)] = block
        return len(block)


def test_raw_upload_streams_and_records(setup):
    _, _, case_id, caller = setup
    data = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(300_000)
    resp = _upload(caller, case_id, data,
                   query="description=Ad%20screenshot&filename=ad.jpg&source=import",
                   headers={"X-Evidence-Collected-Place": quote("Café Ünter"),
                            "X-Content-SHA256": hashlib.sha256(data).hexdigest()})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["md5"] == hashlib.md5(data).hexdigest()
    assert body["size"] == len(data) and body["content_type"] == "image/png"
    assert body["collected_place"] == "Café Ünter" and body["original_filename"] == "ad.jpg"
    assert body["page_url"] == f"/evidence/{body['id']}"

    detail = caller.get(f"/api/v1/evidence/{body['id']}").get_json()
    assert [e["kind"] for e in detail["custody"]] == ["COLLECTED", "RECEIVED"]
    assert detail["custody"][1]["prev_hash"] == detail["custody"][0]["hash"]

    listed = caller.get(f"/api/v1/cases/{case_id}/evidence").get_json()
    assert [i["id"] for i in listed] == [body["id"]]

    got = caller.get(body["content_url"])
    assert got.status_code == 200 and got.data == data
    assert got.headers["X-Content-SHA256"] == body["sha256"]
    assert "attachment" in got.headers["Content-Disposition"]
    detail = caller.get(f"/api/v1/evidence/{body['id']}").get_json()
    assert detail["custody"][-1]["kind"] == "ACCESSED"


def test_streamed_body_larger_than_the_form_limit(ev_app, setup):
    _, _, case_id, caller = setup
    size = 20 * 1024 * 1024 + 3  # over MAX_CONTENT_LENGTH (16 MiB): only this endpoint allows it
    body = Chunks(size)
    resp = caller.client.post(f"/api/v1/cases/{case_id}/evidence?description=big",
                              input_stream=body, content_length=size,
                              headers={**caller._headers(), "Content-Type": RAW})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["sha256"] == body.sha.hexdigest()
    assert resp.get_json()["size"] == size


def test_multipart_to_the_raw_endpoint_is_415(setup):
    _, _, case_id, caller = setup
    resp = caller.client.post(f"/api/v1/cases/{case_id}/evidence?description=x",
                              data={"file": (io.BytesIO(b"abc"), "a.txt")},
                              headers=caller._headers(), content_type="multipart/form-data")
    assert resp.status_code == 415
    assert "application/octet-stream" in resp.get_json()["error"]["message"]
    assert _items() == 0


def test_empty_body_is_422(setup):
    _, _, case_id, caller = setup
    resp = _upload(caller, case_id, b"")
    assert resp.status_code == 422
    assert "empty" in resp.get_json()["error"]["message"]
    assert _items() == 0


def test_too_large_is_413(ev_app, setup):
    _, _, case_id, caller = setup
    ev_app.config["EVIDENCE_MAX_BYTES"] = 1024
    resp = _upload(caller, case_id, secrets.token_bytes(4096))
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "too_large"
    assert _items() == 0


def test_hash_mismatch_is_422_and_nothing_kept(ev_app, setup):
    _, _, case_id, caller = setup
    resp = _upload(caller, case_id, b"the real bytes",
                   headers={"X-Content-SHA256": "ab" * 32})
    assert resp.status_code == 422
    assert resp.get_json()["error"]["fields"]["sha256"]
    assert _items() == 0
    root = ev_app.config["EVIDENCE_DIR"]
    import pathlib

    assert not [p for p in pathlib.Path(root).rglob("*") if p.is_file()
                and "locks" not in p.parts]


def test_bad_metadata_is_422(setup):
    _, _, case_id, caller = setup
    resp = _upload(caller, case_id, b"abc", query="source=rumour")
    assert resp.status_code == 422
    assert set(resp.get_json()["error"]["fields"]) == {"description", "source"}


def test_client_dropping_midway_leaves_no_record(ev_app, setup):
    _, _, case_id, caller = setup
    size = 10 * 1024 * 1024
    resp = caller.client.post(f"/api/v1/cases/{case_id}/evidence?description=x",
                              input_stream=Chunks(size, fail_at=3 * 1024 * 1024),
                              content_length=size,
                              headers={**caller._headers(), "Content-Type": RAW})
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "upload_interrupted"
    assert _items() == 0
    import pathlib

    root = pathlib.Path(ev_app.config["EVIDENCE_DIR"])
    assert not [p for p in root.rglob("*") if p.is_file()]


def test_outsider_gets_404_everywhere(ev_app, setup):
    _, _, case_id, caller = setup
    item_id = _upload(caller, case_id, b"need to know").get_json()["id"]
    outsider_user, _ = person()
    outsider = api_caller(ev_app, outsider_user)
    for url in (f"/api/v1/evidence/{item_id}", f"/api/v1/evidence/{item_id}/content",
                f"/api/v1/cases/{case_id}/evidence"):
        resp = outsider.get(url)
        assert resp.status_code == 404, url
        assert b"need to know" not in resp.data
    assert _upload(outsider, case_id, b"planted").status_code == 404
    assert outsider.post(f"/api/v1/evidence/{item_id}/verify").status_code == 404
    assert db.session.scalar(select(func.count()).select_from(CustodyEvent)
                             .where(CustodyEvent.kind == "ACCESSED")) == 0


def test_transfer_and_physical_over_the_api(ev_app, setup):
    _user, actor, case_id, caller = setup
    resp = caller.post(f"/api/v1/cases/{case_id}/evidence/physical",
                       json={"description": "Burner phone", "storage_location": "Locker 3"})
    assert resp.status_code == 201, resp.get_json()
    item_id = resp.get_json()["id"]
    other, _ = person()
    cases.add_member(actor=actor, case_id=case_id, user_id=other.id, case_role="investigator")
    resp = caller.post(f"/api/v1/evidence/{item_id}/transfer",
                       json={"to_username": other.username, "reason": "Lab", "place": "HQ"})
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["status"] == "pending"
    transfer_id = resp.get_json()["id"]
    # the receiver accepts: custody moves, with TRANSFERRED in the chain
    resp = api_caller(ev_app, other).post(f"/api/v1/custody-transfers/{transfer_id}/accept",
                                          json={})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["custody"][-1]["kind"] == "TRANSFERRED"
    assert resp.get_json()["item"]["custodian"]["id"] == other.id
    resp = caller.post(f"/api/v1/evidence/{item_id}/transfer", json={"to_username": "nobody",
                                                                     "reason": "x"})
    assert resp.status_code == 422  # the lead manages the case: may reassign, but not to nobody
    assert "to_user" in resp.get_json()["error"]["fields"]
    # a team member who neither holds the item nor manages the case may not move it
    bystander, _ = person()
    cases.add_member(actor=actor, case_id=case_id, user_id=bystander.id,
                     case_role="investigator")
    resp = api_caller(ev_app, bystander).post(f"/api/v1/evidence/{item_id}/transfer",
                                              json={"to_user_id": bystander.id, "reason": "mine"})
    assert resp.status_code == 403


def test_a_hand_over_withdrawn_over_the_api_keeps_the_reason_in_the_chain(ev_app, setup):
    _user, actor, case_id, caller = setup
    item_id = _upload(caller, case_id, b"withdraw me").get_json()["id"]
    other, _ = person()
    cases.add_member(actor=actor, case_id=case_id, user_id=other.id, case_role="investigator")
    assert caller.post(f"/api/v1/evidence/{item_id}/transfer",
                       json={"to_username": other.username, "reason": "Lab"}).status_code == 202
    resp = caller.post(f"/api/v1/evidence/{item_id}/transfer/cancel", json={"reason": "x" * 5000})
    assert resp.status_code == 422  # too long: nothing withdrawn
    resp = caller.post(f"/api/v1/evidence/{item_id}/transfer/cancel",
                       json={"reason": "Lab booked out"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "cancelled"
    last = db.session.scalars(select(CustodyEvent).where(CustodyEvent.item_id == item_id)
                              .order_by(CustodyEvent.seq.desc())).first()
    assert (last.kind, last.reason) == ("TRANSFER_WITHDRAWN", "Lab booked out")
    resp = caller.post(f"/api/v1/evidence/{item_id}/transfer/cancel", json={})
    assert resp.status_code == 409  # nothing waits any more


def test_verify_over_the_api(setup):
    _, _, case_id, caller = setup
    item_id = _upload(caller, case_id, b"verify me").get_json()["id"]
    resp = caller.post(f"/api/v1/evidence/{item_id}/verify")
    assert resp.status_code == 200 and resp.get_json()["ok"] is True


# --- pages --------------------------------------------------------------------------------

def test_page_upload_and_item_page(ev_app):
    page, user = browser(ev_app)
    from taskforce.accounts.permissions import Actor

    case_id = make_case(Actor.for_user(user))
    html = page.get(f"/cases/{case_id}/evidence")
    assert html.status_code == 200
    text = html.data.decode()
    assert 'id="evidence-upload"' in text and "evidence-upload.js" in text
    assert "<script>" not in text  # no inline script
    data = b"%PDF-1.4 interview transcript"
    resp = page.client.post(f"/cases/{case_id}/evidence",
                            data={"csrf_token": page.csrf(), "description": "Interview",
                                  "source": "other", "file": (io.BytesIO(data), "interview.pdf")},
                            content_type="multipart/form-data", headers={"Accept": "text/html"})
    assert resp.status_code == 302, resp.data[:500]
    item_url = resp.headers["Location"]
    item_page = page.get(item_url).data.decode()
    assert hashlib.sha256(data).hexdigest() in item_page
    assert hashlib.md5(data).hexdigest() in item_page
    assert "Received" in item_page and "Collected" in item_page

    item_id = int(re.search(r"/evidence/(\d+)", item_url).group(1))
    got = page.get(f"/evidence/{item_id}/download")
    assert got.data == data
    resp = page.post(f"/evidence/{item_id}/verify")
    assert resp.status_code == 302
    assert "Hash verified" in page.get(item_url).data.decode()


def test_page_upload_without_a_file_shows_the_form_again(ev_app):
    page, user = browser(ev_app)
    from taskforce.accounts.permissions import Actor

    case_id = make_case(Actor.for_user(user))
    resp = page.post(f"/cases/{case_id}/evidence", data={"description": "x"})
    assert resp.status_code == 422
    assert b"Choose a file" in resp.data


def test_js_style_upload_with_the_session_and_csrf_header(ev_app):
    """What evidence-upload.js does: raw body, the session cookie, X-CSRFToken."""
    page, user = browser(ev_app)
    from taskforce.accounts.permissions import Actor

    case_id = make_case(Actor.for_user(user))
    url = f"/api/v1/cases/{case_id}/evidence?description=From%20the%20page&filename=a.bin"
    refused = page.client.post(url, data=b"abc", headers={"Content-Type": RAW})
    assert refused.status_code == 400  # no CSRF token
    resp = page.client.post(url, data=b"abc", headers={"Content-Type": RAW,
                                                        "X-CSRFToken": page.csrf(),
                                                        "Accept": "application/json"})
    assert resp.status_code == 201, resp.get_json()
    assert _items() == 1


def test_every_evidence_endpoint_has_a_rule_and_refuses_anonymous(ev_app):
    """The permission matrix, for our endpoints (until create_app registers them)."""
    from taskforce.accounts.permissions import rule_for

    client = ev_app.test_client()
    seen = 0
    for rule in ev_app.url_map.iter_rules():
        if not rule.endpoint.startswith(("evidence.", "evidence_api.")):
            continue
        with ev_app.test_request_context():
            assert rule_for(rule.endpoint) is not None, rule.endpoint
        url = re.sub(r"<int:\w+>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            resp = client.open(url, method=method, headers={"Accept": "application/json"},
                               data=b"x" if method == "POST" else None,
                               content_type=RAW if method == "POST" else None)
            assert resp.status_code == 401, f"{method} {url}"
            seen += 1
    assert seen >= 12
