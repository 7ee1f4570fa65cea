"""Account pages: sign-in, MFA, password, API tokens, agency and user admin.

Thin: parse the form, call the service, render. Domain errors that belong to
a form (Invalid, Conflict) are shown on the form; the rest go to the one
error handler.
"""
from __future__ import annotations

import time
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import login_user, logout_user

from taskforce.accounts import PENDING_KEY, SESSION_KEY, reset_session, service
from taskforce.accounts.models import AGENCY_LEVELS, TOKEN_SCOPES
from taskforce.accounts.permissions import ROLES, current_actor, public, requires, signed_in
from taskforce.errors import Conflict, Forbidden, Invalid, Locked, Unauthorized
from taskforce.extensions import limiter

bp = Blueprint("accounts", __name__)

PENDING_SECONDS = 5 * 60  # time allowed between the password and the second factor
RATE_LIMITED = ("Too many sign-in attempts from this address or for this account. "
                "Wait a minute, then try again.")


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _submitted_username() -> str:
    return "login-name:" + request.form.get("username", "").strip().lower()[:64]


def _pending_user_key() -> str:
    return f"login-user:{(session.get(PENDING_KEY) or {}).get('user_id')}"


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site: never an open redirect to someone else's."""
    if not target or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _form_int(name: str, label: str) -> int:
    raw = request.form.get(name, "").strip()
    try:
        return int(raw)
    except ValueError:
        raise Invalid(f"{label} must be a whole number.", fields={name: ["Not a number."]})


def _pending(stage: str) -> dict | None:
    pending = session.get(PENDING_KEY)
    if not pending or pending.get("stage") != stage or pending.get("until", 0) < time.time():
        session.pop(PENDING_KEY, None)
        return None
    return pending


def _start_over(message: str = "Sign in again: the sign-in took longer than 5 minutes."):
    session.pop(PENDING_KEY, None)
    flash(message, "info")
    return redirect(url_for("accounts.login"))


def _begin_browser_session(signed: service.SignedIn) -> None:
    # A fresh cookie: nothing from before sign-in survives (no session fixation).
    reset_session()
    login_user(signed.user)
    session[SESSION_KEY] = signed.session_token


# == sign-in ==================================================================

@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit(_login_limit, methods=["POST"], error_message=RATE_LIMITED)
@limiter.limit(_login_limit, key_func=_submitted_username, methods=["POST"],
               error_message=RATE_LIMITED)
def login():
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_actor().authenticated:
            return redirect(next_url or url_for("web.dashboard"))
        return render_template("accounts/login.html", next=next_url, username="")
    username = request.form.get("username", "")
    try:
        step = service.check_password(actor=current_actor(), username=username,
                                      password=request.form.get("password", ""))
    except (Unauthorized, Locked, Forbidden) as err:
        return render_template("accounts/login.html", error=err.message, next=next_url,
                               username=username), err.status
    reset_session()
    session[PENDING_KEY] = {"user_id": step.user_id, "until": time.time() + PENDING_SECONDS,
                            "stage": "enrol" if step.needs_enrolment else "mfa",
                            "next": next_url}
    return redirect(url_for("accounts.mfa_enrol" if step.needs_enrolment
                            else "accounts.login_mfa"))


@bp.route("/login/mfa", methods=["GET", "POST"])
@public
@limiter.limit(_login_limit, methods=["POST"], error_message=RATE_LIMITED)
@limiter.limit(_login_limit, key_func=_pending_user_key, methods=["POST"],
               error_message=RATE_LIMITED)
def login_mfa():
    pending = _pending("mfa")
    if pending is None:
        return _start_over()
    if request.method == "GET":
        return render_template("accounts/login_mfa.html")
    try:
        signed = service.complete_sign_in(actor=current_actor(), user_id=pending["user_id"],
                                          code=request.form.get("code", ""))
    except Locked as err:
        session.pop(PENDING_KEY, None)
        return render_template("accounts/login.html", error=err.message, username=""), err.status
    except Unauthorized as err:
        return render_template("accounts/login_mfa.html", error=err.message), err.status
    _begin_browser_session(signed)
    if signed.recovery_codes_left is not None:
        flash(f"You signed in with a recovery code; {signed.recovery_codes_left} left. "
              "Ask an administrator to reset your sign-in if your phone is lost.", "info")
    return redirect(pending.get("next") or url_for("web.dashboard"))


@bp.route("/mfa/enrol", methods=["GET", "POST"])
@public
@limiter.limit(_login_limit, methods=["POST"], error_message=RATE_LIMITED)
def mfa_enrol():
    pending = _pending("enrol")
    if pending is None:
        return _start_over()
    actor = current_actor()
    enrolment = service.begin_enrolment(actor=actor, user_id=pending["user_id"])
    if request.method == "GET":
        return render_template("accounts/mfa_enrol.html", enrolment=enrolment)
    try:
        signed, codes = service.confirm_enrolment(actor=actor, user_id=pending["user_id"],
                                                  code=request.form.get("code", ""))
    except Locked as err:
        session.pop(PENDING_KEY, None)
        return render_template("accounts/login.html", error=err.message, username=""), err.status
    except (Invalid, Unauthorized) as err:
        return render_template("accounts/mfa_enrol.html", enrolment=enrolment,
                               error=err.message), err.status
    next_url = pending.get("next")
    _begin_browser_session(signed)
    # Shown in this one response and never stored in the clear: there is no second look.
    return render_template("accounts/recovery_codes.html", codes=codes,
                           next=next_url or url_for("web.dashboard"))


@bp.post("/logout")
@signed_in
def logout():
    sid = session.get(SESSION_KEY)
    if sid:
        service.end_session(actor=current_actor(), session_token=sid)
    logout_user()
    reset_session()
    flash("You are signed out.", "info")
    return redirect(url_for("accounts.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@signed_in
def change_password():
    actor = current_actor()
    if request.method == "GET":
        return render_template("accounts/change_password.html",
                               forced=actor.extra.get("must_change_password"))
    try:
        service.change_password(
            actor=actor, current_password=request.form.get("current_password", ""),
            new_password=request.form.get("new_password", ""),
            new_password_again=request.form.get("new_password_again", ""),
            session_token=session.get(SESSION_KEY),
        )
    except Locked as err:
        logout_user()
        reset_session()
        flash(err.message, "error")
        return redirect(url_for("accounts.login"))
    except Invalid as err:
        return render_template("accounts/change_password.html", error=err.message,
                               fields=err.fields,
                               forced=actor.extra.get("must_change_password")), err.status
    flash("Your password is changed. Any other sessions of yours were signed out.", "success")
    return redirect(url_for("web.dashboard"))


# == API tokens ===============================================================

@bp.route("/account/tokens", methods=["GET", "POST"])
@signed_in
def tokens():
    actor = current_actor()
    created = error = None
    fields: dict = {}
    status = 200
    if request.method == "POST":
        try:
            created = service.create_token(
                actor=actor, name=request.form.get("name", ""),
                scope=request.form.get("scope", ""),
                expires_in_days=_form_int("expires_in_days", "Expiry"))
            status = 201
        except Invalid as err:
            error, fields, status = err.message, err.fields, err.status
    return render_template("accounts/tokens.html", tokens=service.list_tokens(actor=actor),
                           created=created, error=error, fields=fields, scopes=TOKEN_SCOPES,
                           max_days=service.TOKEN_MAX_DAYS, now=service.utcnow()), status


@bp.post("/account/tokens/<int:token_id>/revoke")
@signed_in
def revoke_token(token_id: int):
    token = service.revoke_token(actor=current_actor(), token_id=token_id)
    flash(f"Token {token.prefix} ({token.name}) is revoked.", "success")
    return redirect(url_for("accounts.tokens"))


# == agencies (admin) ==========================================================

@bp.get("/admin/agencies")
@requires("admin")
def agencies():
    return render_template("accounts/agencies.html",
                           agencies=service.list_agencies(actor=current_actor()))


@bp.route("/admin/agencies/new", methods=["GET", "POST"])
@requires("admin")
def new_agency():
    form = {"name": "", "level": "local", "ori": "", "active": True}
    if request.method == "POST":
        form = {"name": request.form.get("name", ""), "level": request.form.get("level", ""),
                "ori": request.form.get("ori", ""), "active": "active" in request.form}
        try:
            agency = service.create_agency(actor=current_actor(), **form)
        except (Invalid, Conflict) as err:
            return render_template("accounts/agency_form.html", form=form, agency=None,
                                   levels=AGENCY_LEVELS, error=err.message,
                                   fields=err.fields), err.status
        flash(f"Agency {agency.name} ({agency.ori}) created.", "success")
        return redirect(url_for("accounts.agencies"))
    return render_template("accounts/agency_form.html", form=form, agency=None,
                           levels=AGENCY_LEVELS)


@bp.route("/admin/agencies/<int:agency_id>/edit", methods=["GET", "POST"])
@requires("admin")
def edit_agency(agency_id: int):
    actor = current_actor()
    agency = service.get_agency(actor=actor, agency_id=agency_id)
    form = {"name": agency.name, "level": agency.level, "ori": agency.ori,
            "active": agency.active}
    if request.method == "POST":
        form = {"name": request.form.get("name", ""), "level": request.form.get("level", ""),
                "ori": request.form.get("ori", ""), "active": "active" in request.form}
        try:
            service.update_agency(actor=actor, agency_id=agency_id, **form)
        except (Invalid, Conflict) as err:
            return render_template("accounts/agency_form.html", form=form, agency=agency,
                                   levels=AGENCY_LEVELS, error=err.message,
                                   fields=err.fields), err.status
        flash(f"Agency {form['name']} saved.", "success")
        return redirect(url_for("accounts.agencies"))
    return render_template("accounts/agency_form.html", form=form, agency=agency,
                           levels=AGENCY_LEVELS)


# == users (admin; supervisors read their agency and unlock) ==================

@bp.get("/admin/users")
@requires("admin", "supervisor")
def users():
    actor = current_actor()
    return render_template("accounts/users.html", users=service.list_users(actor=actor),
                           now=service.utcnow(), can_admin=actor.has_role("admin"))


@bp.route("/admin/users/new", methods=["GET", "POST"])
@requires("admin")
def new_user():
    actor = current_actor()
    form = {"username": "", "full_name": "", "email": "", "agency_id": None, "roles": []}
    agencies_ = [a for a in service.list_agencies(actor=actor) if a.active]
    if request.method == "POST":
        form = {"username": request.form.get("username", ""),
                "full_name": request.form.get("full_name", ""),
                "email": request.form.get("email", ""),
                "roles": request.form.getlist("roles"), "agency_id": None}
        try:
            form["agency_id"] = _form_int("agency_id", "Agency")
            user, temporary = service.create_user(actor=actor, **form)
        except (Invalid, Conflict) as err:
            return render_template("accounts/user_form.html", form=form, agencies=agencies_,
                                   roles=ROLES, error=err.message, fields=err.fields), err.status
        return render_template("accounts/user_created.html", user=user,
                               temporary_password=temporary), 201
    return render_template("accounts/user_form.html", form=form, agencies=agencies_, roles=ROLES)


@bp.get("/admin/users/<int:user_id>")
@requires("admin", "supervisor")
def user(user_id: int):
    actor = current_actor()
    return render_template("accounts/user.html",
                           user=service.get_user(actor=actor, user_id=user_id),
                           roles=ROLES, now=service.utcnow(), can_admin=actor.has_role("admin"))


def _user_action(user_id: int, action, done: str, **kwargs):
    try:
        action(actor=current_actor(), user_id=user_id, **kwargs)
    except (Invalid, Conflict) as err:
        flash(err.message, "error")
    else:
        flash(done, "success")
    return redirect(url_for("accounts.user", user_id=user_id))


@bp.post("/admin/users/<int:user_id>/roles")
@requires("admin")
def user_roles(user_id: int):
    return _user_action(user_id, service.set_roles, "Roles saved.",
                        roles=request.form.getlist("roles"))


@bp.post("/admin/users/<int:user_id>/deactivate")
@requires("admin")
def user_deactivate(user_id: int):
    return _user_action(user_id, service.deactivate_user,
                        "Account deactivated; its sessions were ended.")


@bp.post("/admin/users/<int:user_id>/reactivate")
@requires("admin")
def user_reactivate(user_id: int):
    return _user_action(user_id, service.reactivate_user, "Account reactivated.")


@bp.post("/admin/users/<int:user_id>/unlock")
@requires("admin", "supervisor")
def user_unlock(user_id: int):
    return _user_action(user_id, service.unlock_user, "Account unlocked.")


@bp.post("/admin/users/<int:user_id>/reset")
@requires("admin")
def user_reset(user_id: int):
    actor = current_actor()
    temporary = service.reset_sign_in(actor=actor, user_id=user_id)
    return render_template("accounts/user_created.html",
                           user=service.get_user(actor=actor, user_id=user_id),
                           temporary_password=temporary, reset=True)
