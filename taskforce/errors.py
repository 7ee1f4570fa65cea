"""Domain errors, and the one place that turns them into HTTP answers.

Services raise these; views and API handlers never build error responses.
JSON body everywhere: {"error": {"code", "message", "fields"}}.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, fields: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class Invalid(DomainError):
    status, code = 422, "invalid"


class Unauthorized(DomainError):
    status, code = 401, "unauthorized"


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class NotFound(DomainError):
    status, code = 404, "not_found"


class Conflict(DomainError):
    status, code = 409, "conflict"


class Locked(DomainError):
    status, code = 423, "locked"


class Unavailable(DomainError):
    status, code = 503, "unavailable"


_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
    422: "invalid", 423: "locked", 429: "rate_limited", 500: "internal", 503: "unavailable",
}


def wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and not request.accept_mimetypes["text/html"]


def error_body(status: int, message: str, fields: dict | None = None, code: str | None = None) -> dict:
    return {"error": {"code": code or _HTTP_CODES.get(status, "error"), "message": message,
                      "fields": fields or {}}}


def respond(status: int, message: str, fields: dict | None = None, code: str | None = None):
    if wants_json():
        return jsonify(error_body(status, message, fields, code)), status
    if status == 401:  # a page asked without a session: send the person to sign in
        return redirect(url_for("accounts.login", next=request.full_path.rstrip("?"))), 302
    return render_template("error.html", status=status, message=message, fields=fields or {}), status


def init_app(app: Flask) -> None:
    @app.error_processor
    def _apiflask(err):
        """APIFlask's own errors (input validation) in the one body shape."""
        from taskforce.extensions import db

        db.session.rollback()
        fields = {}
        for location, messages in (err.detail or {}).items():
            if isinstance(messages, dict):
                fields.update(messages)
            else:
                fields[location] = messages
        message = err.message
        if err.status_code == 422:
            message = "Some fields are invalid: " + ", ".join(sorted(fields)) if fields else message
        return error_body(err.status_code, message, fields), err.status_code, err.headers

    @app.errorhandler(DomainError)
    def _domain(err: DomainError):
        from taskforce.extensions import db

        db.session.rollback()  # never a partial write
        return respond(err.status, err.message, err.fields, err.code)

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):
        from taskforce.extensions import db

        db.session.rollback()
        status = err.code or 500
        fields = getattr(err, "data", {}) or {}
        if isinstance(fields, dict) and "messages" in fields:  # webargs/apiflask validation
            fields = fields["messages"]
        message = err.description or err.name
        if status == 400 and "CSRF" in (message or ""):
            message = "The form's CSRF token is missing or invalid: reload the page and try again."
        resp = respond(status, message, fields if isinstance(fields, dict) else {})
        if status == 429 and getattr(err, "retry_after", None):
            resp[0].headers["Retry-After"] = str(err.retry_after)
        return resp

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        from taskforce.extensions import db

        db.session.rollback()
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return respond(500, "Something went wrong on our side; it has been logged.")
