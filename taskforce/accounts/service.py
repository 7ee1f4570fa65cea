"""Accounts service: the only code that changes agencies, accounts, sessions and tokens.

Every function takes keyword-only arguments with the acting `Actor`, raises
domain errors, writes its audit record in the same transaction as the change,
and commits. Failed sign-ins are committed before the error is raised, so the
failure count and its audit record survive the error handler's rollback.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from taskforce.accounts import mfa, passwords, policy
from taskforce.accounts.models import (
    AGENCY_LEVELS,
    TOKEN_SCOPES,
    Agency,
    ApiToken,
    RecoveryCode,
    User,
    UserRole,
    UserSession,
    utcnow,
)
from taskforce.accounts.permissions import ROLES, Actor
from taskforce.audit import service as audit
from taskforce.errors import Conflict, Forbidden, Invalid, Locked, NotFound, Unauthorized
from taskforce.extensions import db

GENERIC_LOGIN_FAILURE = "Invalid username or password."
BAD_CODE = "That code is not valid, or it has already been used. Enter the current code."
ORI_PATTERN = re.compile(r"^[A-Z]{2}[A-Z0-9]{7}$")
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
TOKEN_PATTERN = re.compile(r"^tf_([0-9a-f]{8})_([A-Za-z0-9_-]{40,64})$")
TOKEN_MAX_DAYS = 365
TOUCH_EVERY = timedelta(seconds=30)  # write last_seen_at / last_used_at at most this often
SESSION_MAX_HOURS = 12  # NIST 63B AAL2: sign in again after 12 hours, active or not


def _config(key: str, default: Any = None) -> Any:
    return current_app.config.get(key, default)


def _commit(conflict_message: str) -> None:
    """Commit; a unique constraint lost to a concurrent writer is a 409, not a 500."""
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise Conflict(conflict_message) from exc


def _require(allowed: bool, message: str = "You may not do this.") -> None:
    if not allowed:
        raise Forbidden(message)


def _fmt(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


# == agencies ================================================================

def _clean_agency(*, name: str | None, level: str | None, ori: str | None
                  ) -> dict[str, str]:
    fields: dict[str, list[str]] = {}
    out: dict[str, str] = {}
    if name is not None:
        name = " ".join(name.split())
        if not 2 <= len(name) <= 200:
            fields["name"] = ["Agency name must be 2 to 200 characters."]
        out["name"] = name
    if level is not None:
        level = level.strip().lower()
        if level not in AGENCY_LEVELS:
            fields["level"] = [f"Level must be one of: {', '.join(AGENCY_LEVELS)}."]
        out["level"] = level
    if ori is not None:
        ori = ori.strip().upper()
        if not ORI_PATTERN.match(ori):
            fields["ori"] = [("ORI must be 9 characters: 2 letters (the state) then 7 "
                              "letters or digits, e.g. OH0180000.")]
        out["ori"] = ori
    if fields:
        raise Invalid("Some agency fields are invalid: " + ", ".join(sorted(fields)),
                      fields=fields)
    return out


def _agency_clash(*, name: str | None, ori: str | None, other_than: int | None = None) -> None:
    if name is not None:
        q = select(Agency.id).where(func.lower(Agency.name) == name.lower())
        if other_than:
            q = q.where(Agency.id != other_than)
        if db.session.scalar(q) is not None:
            raise Conflict(f"An agency named {name!r} already exists.",
                           fields={"name": ["Already in use."]})
    if ori is not None:
        q = select(Agency.id).where(Agency.ori == ori)
        if other_than:
            q = q.where(Agency.id != other_than)
        if db.session.scalar(q) is not None:
            raise Conflict(f"An agency with ORI {ori} already exists.",
                           fields={"ori": ["Already in use."]})


def list_agencies(*, actor: Actor) -> list[Agency]:
    _require(actor.authenticated or policy.is_console(actor), "Sign in to see agencies.")
    return list(db.session.scalars(select(Agency).order_by(Agency.name)))


def get_agency(*, actor: Actor, agency_id: int) -> Agency:
    _require(policy.can_manage_agencies(actor), "Only an administrator manages agencies.")
    agency = db.session.get(Agency, agency_id)
    if agency is None:
        raise NotFound(f"No agency with id {agency_id}.")
    return agency


def _add_agency(*, actor: Actor, name: str, level: str, ori: str, active: bool) -> Agency:
    clean = _clean_agency(name=name, level=level, ori=ori)
    _agency_clash(name=clean["name"], ori=clean["ori"])
    agency = Agency(**clean, active=active)
    db.session.add(agency)
    db.session.flush()
    audit.record(actor=actor, action="agency.created", object_type="agency", object_id=agency.id,
                 details=dict(clean, active=active))
    return agency


def create_agency(*, actor: Actor, name: str, level: str, ori: str, active: bool = True
                  ) -> Agency:
    _require(policy.can_manage_agencies(actor), "Only an administrator creates agencies.")
    agency = _add_agency(actor=actor, name=name, level=level, ori=ori, active=active)
    _commit("An agency with this name or ORI already exists.")
    return agency


def update_agency(*, actor: Actor, agency_id: int, name: str | None = None,
                  level: str | None = None, ori: str | None = None,
                  active: bool | None = None) -> Agency:
    agency = get_agency(actor=actor, agency_id=agency_id)
    clean = _clean_agency(name=name, level=level, ori=ori)
    _agency_clash(name=clean.get("name"), ori=clean.get("ori"), other_than=agency.id)
    changes: dict[str, Any] = {}
    for key, value in (*clean.items(), ("active", active)):
        if value is not None and getattr(agency, key) != value:
            changes[key] = {"from": getattr(agency, key), "to": value}
            setattr(agency, key, value)
    if changes:
        audit.record(actor=actor, action="agency.updated", object_type="agency",
                     object_id=agency.id, details=changes)
        _commit("An agency with this name or ORI already exists.")
    return agency


# == users ===================================================================

def _clean_roles(roles: Iterable[str]) -> list[str]:
    wanted = sorted({r.strip() for r in roles if r and r.strip()})
    unknown = [r for r in wanted if r not in ROLES]
    if unknown:
        raise Invalid(f"Unknown role(s): {', '.join(unknown)}.",
                      fields={"roles": [f"Choose among: {', '.join(ROLES)}."]})
    if not wanted:
        raise Invalid("Give the user at least one role.", fields={"roles": ["Choose a role."]})
    return wanted


def _clean_username(username: str) -> str:
    username = username.strip().lower()
    if not USERNAME_PATTERN.match(username):
        raise Invalid("Username must be 3 to 64 characters: lower-case letters, digits, "
                      "dot, dash or underscore.", fields={"username": ["Invalid username."]})
    return username


def _load_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"No user with id {user_id}.")
    return user


_READABLE = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o, 1/l/i: read out or typed by hand


def temporary_password() -> str:
    """A random password (about 99 bits) that passes the policy, e.g. k7m2p-x9d4h-..."""
    while True:
        groups = ("".join(secrets.choice(_READABLE) for _ in range(5)) for _ in range(4))
        candidate = "-".join(groups)
        if passwords.problem_with(candidate) is None:
            return candidate


def list_users(*, actor: Actor) -> list[User]:
    _require(policy.can_administer_users(actor) or actor.has_role("supervisor"),
             "Only an administrator or a supervisor lists users.")
    query = policy.visible_users(select(User), actor).order_by(User.username)
    return list(db.session.scalars(query).unique())


def get_user(*, actor: Actor, user_id: int) -> User:
    user = _load_user(user_id)
    if not policy.can_see_user(actor, user):
        raise NotFound(f"No user with id {user_id}.")  # do not confirm it exists elsewhere
    return user


def find_user(*, username: str) -> User | None:
    return db.session.scalar(select(User).where(User.username == username.strip().lower()))


def create_user(*, actor: Actor, username: str, full_name: str, email: str, agency_id: int,
                roles: Iterable[str], password: str | None = None) -> tuple[User, str | None]:
    """Returns the user and, when none was given, the temporary password (shown once)."""
    _require(policy.can_administer_users(actor), "Only an administrator creates accounts.")
    agency = db.session.get(Agency, agency_id)
    if agency is None or not agency.active:
        raise Invalid("Choose an active agency.", fields={"agency_id": ["Unknown agency."]})
    user, password = _add_user(actor=actor, username=username, full_name=full_name, email=email,
                               agency=agency, roles=roles, password=password)
    _commit(f"The username {user.username!r} is taken.")
    return user, password


def create_first_admin(*, actor: Actor, username: str, full_name: str, email: str,
                       password: str, agency_name: str, agency_level: str | None = None,
                       agency_ori: str | None = None) -> User:
    """An administrator, and their agency if it is new, in one transaction (console only)."""
    _require(policy.is_console(actor), "Only the server console creates administrators.")
    agency = db.session.scalar(select(Agency).where(
        func.lower(Agency.name) == " ".join(agency_name.split()).lower()))
    if agency is None:
        agency = _add_agency(actor=actor, name=agency_name, level=agency_level or "",
                             ori=agency_ori or "", active=True)
    user, _ = _add_user(actor=actor, username=username, full_name=full_name, email=email,
                        agency=agency, roles=["admin"], password=password)
    _commit(f"The username {user.username!r} is taken.")
    return user


def _add_user(*, actor: Actor, username: str, full_name: str, email: str, agency: Agency,
              roles: Iterable[str], password: str | None) -> tuple[User, str | None]:
    fields: dict[str, list[str]] = {}
    full_name = " ".join((full_name or "").split())
    email = (email or "").strip()
    if not 2 <= len(full_name) <= 200:
        fields["full_name"] = ["Full name must be 2 to 200 characters."]
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email) or len(email) > 254:
        fields["email"] = ["Enter an e-mail address such as name@agency.gov."]
    if fields:
        raise Invalid("Some user fields are invalid: " + ", ".join(sorted(fields)), fields=fields)
    username = _clean_username(username)
    role_list = _clean_roles(roles)
    if find_user(username=username) is not None:
        raise Conflict(f"The username {username!r} is taken.",
                       fields={"username": ["Already in use."]})
    generated = password is None
    if password is None:
        password = temporary_password()
    else:
        passwords.check(password, username=username)
    user = User(
        username=username, full_name=full_name, email=email, agency=agency,
        password_hash=passwords.hash_password(password),
        # Someone else chose this password: the owner replaces it at first sign-in.
        must_change_password=not policy.is_console(actor),
        roles=[UserRole(role=r) for r in role_list],
    )
    db.session.add(user)
    db.session.flush()
    audit.record(actor=actor, action="user.created", object_type="user", object_id=user.id,
                 details={"username": username, "agency_id": agency.id, "roles": role_list})
    return user, (password if generated else None)


def _active_admins_besides(user: User) -> int:
    q = (select(func.count(User.id)).join(UserRole)
         .where(UserRole.role == "admin", User.active.is_(True), User.id != user.id))
    return db.session.scalar(q) or 0


def set_roles(*, actor: Actor, user_id: int, roles: Iterable[str]) -> User:
    _require(policy.can_administer_users(actor), "Only an administrator changes roles.")
    user = _load_user(user_id)
    wanted = _clean_roles(roles)
    before = user.role_names
    if "admin" in before and "admin" not in wanted and _active_admins_besides(user) == 0:
        raise Conflict("This is the last administrator; give another user the admin role first.")
    if wanted == before:
        return user
    keep = [r for r in user.roles if r.role in wanted]
    user.roles = keep + [UserRole(role=r) for r in wanted if r not in before]
    audit.record(actor=actor, action="user.roles_changed", object_type="user", object_id=user.id,
                 details={"from": before, "to": wanted})
    _commit("The roles changed meanwhile; reload and try again.")
    return user


def _end_sessions(user: User, reason: str, *, keep_id: int | None = None) -> int:
    now = utcnow()
    rows = db.session.scalars(select(UserSession).where(
        UserSession.user_id == user.id, UserSession.ended_at.is_(None)))
    count = 0
    for row in rows:
        if row.id != keep_id:
            row.ended_at, row.end_reason = now, reason
            count += 1
    return count


def deactivate_user(*, actor: Actor, user_id: int) -> User:
    _require(policy.can_administer_users(actor), "Only an administrator deactivates accounts.")
    user = _load_user(user_id)
    if user.id == actor.user_id:
        raise Conflict("You cannot deactivate your own account.")
    if not user.active:
        return user
    if "admin" in user.role_names and _active_admins_besides(user) == 0:
        raise Conflict("This is the last administrator; it cannot be deactivated.")
    user.active = False
    ended = _end_sessions(user, "deactivated")
    audit.record(actor=actor, action="user.deactivated", object_type="user", object_id=user.id,
                 details={"sessions_ended": ended})
    _commit("The account changed meanwhile; reload and try again.")
    return user


def reactivate_user(*, actor: Actor, user_id: int) -> User:
    _require(policy.can_administer_users(actor), "Only an administrator reactivates accounts.")
    user = _load_user(user_id)
    if user.active:
        return user
    user.active = True
    audit.record(actor=actor, action="user.reactivated", object_type="user", object_id=user.id)
    _commit("The account changed meanwhile; reload and try again.")
    return user


def unlock_user(*, actor: Actor, user_id: int) -> User:
    user = _load_user(user_id)
    if not policy.can_unlock(actor, user):
        raise Forbidden("A supervisor may unlock only the accounts of their own agency.")
    was_locked_until = user.locked_until
    user.locked_until = None
    user.failed_logins = 0
    audit.record(actor=actor, action="account.unlocked", object_type="user", object_id=user.id,
                 details={"was_locked_until": was_locked_until.isoformat()
                          if was_locked_until else None})
    _commit("The account changed meanwhile; reload and try again.")
    return user


def reset_sign_in(*, actor: Actor, user_id: int) -> str:
    """Lost phone or forgotten password: a new temporary password, MFA to enrol
    again, every session ended. Returns the temporary password (shown once)."""
    _require(policy.can_administer_users(actor), "Only an administrator resets sign-in.")
    user = _load_user(user_id)
    password = temporary_password()
    user.password_hash = passwords.hash_password(password)
    user.password_changed_at = utcnow()
    user.must_change_password = True
    user.mfa_secret = user.mfa_enrolled_at = user.mfa_last_counter = None
    user.failed_logins, user.locked_until = 0, None
    db.session.execute(RecoveryCode.__table__.delete().where(RecoveryCode.user_id == user.id))
    ended = _end_sessions(user, "sign_in_reset")
    audit.record(actor=actor, action="user.sign_in_reset", object_type="user", object_id=user.id,
                 details={"sessions_ended": ended})
    _commit("The account changed meanwhile; reload and try again.")
    return password


# == signing in ==============================================================

@dataclass(frozen=True)
class PasswordAccepted:
    """First factor passed; the second is still owed."""
    user_id: int
    needs_enrolment: bool


@dataclass(frozen=True)
class SignedIn:
    user: User
    session_token: str  # goes in the cookie; only its hash is stored
    recovery_codes_left: int | None = None  # set when a recovery code was used


def _lock_message(user: User) -> str:
    assert user.locked_until is not None
    return (f"This account is locked until {_fmt(user.locked_until)} after too many failed "
            "sign-in attempts. Wait until then, or ask your supervisor to unlock it.")


def _failed_attempt(user: User, actor: Actor, reason: str, error: Exception) -> NoReturn:
    """Count a failed factor, lock at the threshold, commit, then raise."""
    user.failed_logins = (user.failed_logins or 0) + 1
    audit.record(actor=actor, action="login.failure", outcome="denied", object_type="user",
                 object_id=user.id, details={"reason": reason, "failed_logins": user.failed_logins})
    if user.failed_logins >= _config("LOCKOUT_THRESHOLD", 5):
        user.locked_until = utcnow() + timedelta(minutes=_config("LOCKOUT_MINUTES", 30))
        audit.record(actor=actor, action="account.locked", outcome="denied", object_type="user",
                     object_id=user.id, details={"until": user.locked_until.isoformat(),
                                                 "failed_logins": user.failed_logins})
        db.session.commit()
        raise Locked(_lock_message(user))
    db.session.commit()
    raise error


def _refuse_if_locked(user: User, actor: Actor) -> None:
    now = utcnow()
    if user.locked_at(now):
        audit.record_now(actor=actor, action="login.failure", outcome="denied",
                         object_type="user", object_id=user.id, details={"reason": "locked"})
        raise Locked(_lock_message(user))
    if user.locked_until is not None:  # the lock has run out: a fresh count
        user.locked_until, user.failed_logins = None, 0


def check_password(*, actor: Actor, username: str, password: str) -> PasswordAccepted:
    user = find_user(username=username or "")
    if user is None:
        passwords.burn_time()
        audit.record_now(actor=actor, action="login.failure", outcome="denied",
                         details={"reason": "unknown username", "username": (username or "")[:64]})
        raise Unauthorized(GENERIC_LOGIN_FAILURE)
    _refuse_if_locked(user, actor)
    if not passwords.verify_password(user.password_hash, password or ""):
        _failed_attempt(user, actor, "wrong password", Unauthorized(GENERIC_LOGIN_FAILURE))
    if not user.active:
        audit.record_now(actor=actor, action="login.failure", outcome="denied",
                         object_type="user", object_id=user.id, details={"reason": "deactivated"})
        raise Forbidden("This account is deactivated. Ask a task force administrator.")
    if passwords.needs_rehash(user.password_hash):  # cost parameters were raised since
        user.password_hash = passwords.hash_password(password)
    db.session.commit()
    return PasswordAccepted(user_id=user.id, needs_enrolment=not user.mfa_enrolled)


def _pending_user(user_id: int, actor: Actor) -> User:
    user = db.session.get(User, user_id)
    if user is None or not user.active:
        raise Unauthorized("Sign in again.")
    _refuse_if_locked(user, actor)
    return user


def _open_session(user: User, actor: Actor, method: str) -> SignedIn:
    """A new server-side session with a new random id: the id is rotated at every sign-in."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(UserSession(
        token_hash=mfa.sha256_hex(token), user_id=user.id, created_at=now, last_seen_at=now,
        ip=(actor.ip or "")[:64] or None, user_agent=(actor.user_agent or "")[:300] or None,
    ))
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    signed_in_actor = Actor.for_user(user, ip=actor.ip, user_agent=actor.user_agent)
    audit.record(actor=signed_in_actor, action="login.success", object_type="user",
                 object_id=user.id, details={"second_factor": method})
    return SignedIn(user=user, session_token=token)


def complete_sign_in(*, actor: Actor, user_id: int, code: str) -> SignedIn:
    """Second factor: a TOTP code or one unused recovery code."""
    user = _pending_user(user_id, actor)
    if not user.mfa_enrolled or not user.mfa_secret:
        raise Unauthorized("Sign in again.")
    code = code or ""
    method: str | None = None
    left = None
    step = mfa.matching_step(mfa.decrypt_secret(user.mfa_secret), code,
                             last_step=user.mfa_last_counter)
    if step is not None:
        user.mfa_last_counter = step
        method = "totp"
    elif mfa.looks_like_recovery_code(code):
        unused = db.session.scalars(select(RecoveryCode).where(
            RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))
        for row in unused:
            if mfa.recovery_code_matches(row.code_hash, code):
                row.used_at = utcnow()
                method = "recovery code"
                break
    if method is None:
        _failed_attempt(user, actor, "wrong second factor", Unauthorized(BAD_CODE))
    if method == "recovery code":
        left = db.session.scalar(select(func.count(RecoveryCode.id)).where(
            RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))
        audit.record(actor=actor, action="mfa.recovery_code_used", object_type="user",
                     object_id=user.id, details={"codes_left": left})
    signed = _open_session(user, actor, method)
    db.session.commit()
    if method == "recovery code":
        return SignedIn(user=signed.user, session_token=signed.session_token,
                        recovery_codes_left=left)
    return signed


@dataclass(frozen=True)
class Enrolment:
    seed: str
    uri: str
    qr_data_uri: str


def begin_enrolment(*, actor: Actor, user_id: int) -> Enrolment:
    """The seed for the authenticator app; kept (encrypted) until confirmed, so a
    reload shows the same QR code."""
    user = _pending_user(user_id, actor)
    if user.mfa_enrolled:
        raise Conflict("Two-step sign-in is already set up for this account.")
    if not user.mfa_secret:
        user.mfa_secret = mfa.encrypt_secret(mfa.new_seed())
        db.session.commit()
    seed = mfa.decrypt_secret(user.mfa_secret)
    uri = mfa.provisioning_uri(seed, user.username)
    return Enrolment(seed=seed, uri=uri, qr_data_uri=mfa.qr_data_uri(uri))


def _replace_recovery_codes(user: User) -> list[str]:
    db.session.execute(RecoveryCode.__table__.delete().where(RecoveryCode.user_id == user.id))
    codes = mfa.new_recovery_codes()
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=mfa.hash_recovery_code(c))
                       for c in codes)
    return codes


def confirm_enrolment(*, actor: Actor, user_id: int, code: str) -> tuple[SignedIn, list[str]]:
    """First code proves the app holds the seed; returns the recovery codes, shown once."""
    user = _pending_user(user_id, actor)
    if user.mfa_enrolled or not user.mfa_secret:
        raise Conflict("Start the set-up again.")
    step = mfa.matching_step(mfa.decrypt_secret(user.mfa_secret), code or "", last_step=None)
    if step is None:
        _failed_attempt(user, actor, "wrong enrolment code", Invalid(
            "That code does not match. Check that the phone's clock is right and enter the "
            "code the app shows now.", fields={"code": ["Does not match."]}))
    user.mfa_enrolled_at = utcnow()
    user.mfa_last_counter = step
    codes = _replace_recovery_codes(user)
    audit.record(actor=actor, action="mfa.enrolled", object_type="user", object_id=user.id)
    signed = _open_session(user, actor, "totp (enrolment)")
    db.session.commit()
    return signed, codes


def enrol_for_console(*, actor: Actor, user_id: int, seed: str | None = None) -> str:
    """MFA set up from the command line (demo accounts). Returns the seed."""
    _require(policy.is_console(actor), "Only the server console enrols MFA directly.")
    user = _load_user(user_id)
    seed = seed or mfa.new_seed()
    user.mfa_secret = mfa.encrypt_secret(seed)
    user.mfa_enrolled_at = utcnow()
    user.mfa_last_counter = None
    audit.record(actor=actor, action="mfa.enrolled", object_type="user", object_id=user.id,
                 details={"by": "console"})
    db.session.commit()
    return seed


def password_matches(*, user: User, password: str) -> bool:
    return passwords.verify_password(user.password_hash, password)


def set_password_for_console(*, actor: Actor, user_id: int, password: str) -> None:
    """The console sets a password the owner keeps (demo accounts)."""
    _require(policy.is_console(actor), "Only the server console sets passwords directly.")
    user = _load_user(user_id)
    passwords.check(password, username=user.username)
    user.password_hash = passwords.hash_password(password)
    user.password_changed_at = utcnow()
    user.must_change_password = False
    ended = _end_sessions(user, "password_changed")
    audit.record(actor=actor, action="password.changed", object_type="user", object_id=user.id,
                 details={"by": "console", "sessions_ended": ended})
    db.session.commit()


def current_totp(*, actor: Actor, username: str) -> str:
    """The current code of a demo or test account (never offered in production)."""
    _require(policy.is_console(actor), "Only the server console reads TOTP codes.")
    if _config("ENV_NAME") not in ("development", "test"):
        raise Forbidden("TOTP codes are only shown in development or test.")
    user = find_user(username=username)
    if user is None or not user.mfa_secret:
        raise NotFound(f"No account {username!r} with MFA set up.")
    return mfa.current_code(mfa.decrypt_secret(user.mfa_secret))


# == sessions ================================================================

@dataclass(frozen=True)
class SessionCheck:
    user: User | None
    ended_reason: str | None = None  # why the session is no longer good, if it is not


def resume_session(*, session_token: str, user_id: int, ip: str | None = None,
                   user_agent: str | None = None) -> SessionCheck:
    """Is this browser's session still live? Ends it if it went idle or too old."""
    row = db.session.scalar(select(UserSession).where(
        UserSession.token_hash == mfa.sha256_hex(session_token)))
    if row is None or row.user_id != user_id:
        return SessionCheck(None, "unknown")
    if row.ended_at is not None:
        return SessionCheck(None, row.end_reason)
    now = utcnow()
    user = row.user
    idle_limit = timedelta(minutes=_config("SESSION_IDLE_MINUTES", 30))
    reason = None
    if now - row.last_seen_at > idle_limit:
        reason = "idle"
    elif now - row.created_at > timedelta(hours=_config("SESSION_MAX_HOURS", SESSION_MAX_HOURS)):
        reason = "too_old"
    elif not user.active:
        reason = "deactivated"
    if reason:
        row.ended_at, row.end_reason = now, reason
        audit.record(actor=Actor.for_user(user, ip=ip, user_agent=user_agent),
                     action="session.expired", object_type="user", object_id=user.id,
                     details={"reason": reason, "last_seen_at": row.last_seen_at.isoformat()})
        db.session.commit()
        return SessionCheck(None, reason)
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        db.session.commit()
    return SessionCheck(user)


def end_session(*, actor: Actor, session_token: str, reason: str = "logout") -> None:
    row = db.session.scalar(select(UserSession).where(
        UserSession.token_hash == mfa.sha256_hex(session_token)))
    if row is None or row.ended_at is not None:
        return
    row.ended_at, row.end_reason = utcnow(), reason
    audit.record(actor=actor, action="session.logout", object_type="user", object_id=row.user_id)
    db.session.commit()


def current_session_id(session_token: str | None) -> int | None:
    if not session_token:
        return None
    return db.session.scalar(select(UserSession.id).where(
        UserSession.token_hash == mfa.sha256_hex(session_token)))


def change_password(*, actor: Actor, current_password: str, new_password: str,
                    new_password_again: str, session_token: str | None = None) -> None:
    """The signed-in user's own password; every other session of theirs ends."""
    if not actor.authenticated:
        raise Unauthorized("Sign in to continue.")
    if actor.token_id is not None:
        raise Forbidden("Change your password from a browser, not with an API token.")
    user = _load_user(actor.user_id)
    if not passwords.verify_password(user.password_hash, current_password or ""):
        # Counts toward the lockout: a stolen session must not become a guessing oracle.
        _failed_attempt(user, actor, "wrong current password on password change", Invalid(
            "Your current password is not right.",
            fields={"current_password": ["Not your current password."]}))
    if new_password != new_password_again:
        raise Invalid("The two new passwords differ.",
                      fields={"new_password_again": ["Does not match the new password."]})
    if new_password == current_password:
        raise Invalid("The new password must differ from the current one.",
                      fields={"new_password": ["Same as the current password."]})
    problem = passwords.problem_with(new_password, username=user.username)
    if problem:
        raise Invalid(problem, fields={"new_password": [problem]})
    user.password_hash = passwords.hash_password(new_password)
    user.password_changed_at = utcnow()
    user.must_change_password = False
    ended = _end_sessions(user, "password_changed", keep_id=current_session_id(session_token))
    audit.record(actor=actor, action="password.changed", object_type="user", object_id=user.id,
                 details={"other_sessions_ended": ended})
    db.session.commit()


# == API tokens ==============================================================

def list_tokens(*, actor: Actor) -> list[ApiToken]:
    if not actor.authenticated:
        raise Unauthorized("Sign in to continue.")
    return list(db.session.scalars(select(ApiToken).where(ApiToken.user_id == actor.user_id)
                                   .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def create_token(*, actor: Actor, name: str, scope: str, expires_in_days: int
                 ) -> tuple[ApiToken, str]:
    """Returns the token row and the token itself, which is shown once and never stored."""
    if not actor.authenticated:
        raise Unauthorized("Sign in to continue.")
    if actor.token_id is not None:
        # Otherwise a leaked token could mint successors and outlive its expiry.
        raise Forbidden("An API token cannot create tokens; sign in with a browser to do it.")
    fields: dict[str, list[str]] = {}
    name = " ".join((name or "").split())
    if not 1 <= len(name) <= 100:
        fields["name"] = ["Name the token (1 to 100 characters), e.g. 'case import script'."]
    if scope not in TOKEN_SCOPES:
        fields["scope"] = ["Scope must be read or write."]
    if not isinstance(expires_in_days, int) or not 1 <= expires_in_days <= TOKEN_MAX_DAYS:
        fields["expires_in_days"] = [f"Expiry must be 1 to {TOKEN_MAX_DAYS} days."]
    if fields:
        raise Invalid("Some token fields are invalid: " + ", ".join(sorted(fields)),
                      fields=fields)
    prefix = secrets.token_hex(4)
    raw = f"tf_{prefix}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    token = ApiToken(user_id=actor.user_id, name=name, prefix=prefix,
                     token_hash=mfa.sha256_hex(raw), scope=scope, created_at=now,
                     expires_at=now + timedelta(days=expires_in_days))
    db.session.add(token)
    db.session.flush()
    audit.record(actor=actor, action="token.created", object_type="api_token",
                 object_id=token.id, details={"name": name, "scope": scope, "prefix": prefix,
                                              "expires_at": token.expires_at.isoformat()})
    _commit("Token prefix clash; try again.")
    return token, raw


def revoke_token(*, actor: Actor, token_id: int) -> ApiToken:
    if not actor.authenticated:
        raise Unauthorized("Sign in to continue.")
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != actor.user_id:
        raise NotFound(f"You have no API token with id {token_id}.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(actor=actor, action="token.revoked", object_type="api_token",
                     object_id=token.id, details={"prefix": token.prefix})
        db.session.commit()
    return token


def authenticate_token(*, raw: str, ip: str | None = None, user_agent: str | None = None
                       ) -> tuple[User, ApiToken]:
    """The user and token behind an `Authorization: Bearer` header, or Unauthorized."""
    anonymous = Actor.anonymous(ip=ip, user_agent=user_agent)

    def refuse(message: str, reason: str, token: ApiToken | None = None) -> NoReturn:
        audit.record_now(actor=anonymous, action="token.refused", outcome="denied",
                         object_type="api_token", object_id=token.id if token else None,
                         details={"reason": reason})
        raise Unauthorized(message)

    match = TOKEN_PATTERN.match((raw or "").strip())
    if not match:
        refuse("The API token is malformed: expected tf_<prefix>_<secret>.", "malformed")
    token = db.session.scalar(select(ApiToken).where(
        ApiToken.token_hash == mfa.sha256_hex(match.group(0))))
    if token is None:
        refuse("The API token is not valid.", "unknown")
    now = utcnow()
    if token.revoked_at is not None:
        refuse(f"This API token ({token.prefix}) was revoked on {_fmt(token.revoked_at)}.",
               "revoked", token)
    if token.expires_at <= now:
        refuse(f"This API token ({token.prefix}) expired on {_fmt(token.expires_at)}.",
               "expired", token)
    if not token.user.active:
        refuse("The account behind this API token is deactivated.", "deactivated", token)
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
        token.last_used_at = now
        db.session.commit()
    return token.user, token
