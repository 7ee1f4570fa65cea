"""Health probes, security headers and the one error body."""
from __future__ import annotations

import socket


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthz_answers_without_a_session(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json == {"status": "ok"}


def test_readyz_names_the_service_that_is_down(app, client):
    app.config["NEO4J_URI"] = f"bolt://127.0.0.1:{_closed_port()}"
    resp = client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json
    assert body["ready"] is False
    assert body["services"]["neo4j"]["status"].startswith("down")
    assert body["services"]["database"]["status"] == "ok"


def test_security_headers_on_every_page(client):
    resp = client.get("/healthz")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" not in resp.headers  # no TLS in tests


def test_hsts_behind_tls(app, client):
    app.config["TLS"] = True
    assert "max-age=" in client.get("/healthz").headers["Strict-Transport-Security"]


def test_unknown_api_path_gets_the_one_error_body(client):
    resp = client.get("/api/v1/no-such-thing")
    assert resp.status_code == 404
    err = resp.json["error"]
    assert err["code"] == "not_found" and err["message"] and err["fields"] == {}


def test_openapi_description_is_served(client):
    resp = client.get("/api/openapi.json")
    assert resp.status_code == 200
    spec = resp.json
    assert spec["openapi"].startswith("3.")
    assert any(p.startswith("/api/v1/") for p in spec["paths"]), "no API paths documented"
