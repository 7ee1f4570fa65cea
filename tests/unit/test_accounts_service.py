"""Accounts service without HTTP: agencies, users, MFA, lockout, unlock, tokens."""
from __future__ import annotations

import time
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from taskforce.accounts import mfa, service
from taskforce.accounts.models import Agency, ApiToken, RecoveryCode, UserSession, utcnow
from taskforce.accounts.permissions import Actor
from taskforce.audit.models import AuditEvent
from taskforce.errors import Conflict, Forbidden, Invalid, Locked, NotFound, Unauthorized
from taskforce.extensions import db
from tests.factories import CONSOLE, make_agency, make_user

WEB = Actor.anonymous(ip="198.51.100.7", user_agent="pytest")


def as_actor(user) -> Actor:
    return Actor.for_user(user, ip="198.51.100.7", user_agent="pytest")


def audit_actions(**where) -> list[str]:
    q = select(AuditEvent.action).order_by(AuditEvent.seq)
    for key, value in where.items():
        q = q.where(getattr(AuditEvent, key) == value)
    return list(db.session.scalars(q))


# -- agencies -------------------------------------------------------------------------

@pytest.mark.parametrize("ori", ["OH01800", "0H0180000", "OH0180000X", "OH-180000"])
def test_agency_ori_must_be_two_letters_and_seven_characters(app, ori):
    with pytest.raises(Invalid) as err:
        service.create_agency(actor=CONSOLE, name="Lakeport PD", level="local", ori=ori)
    assert "ori" in err.value.fields


def test_agency_ori_is_upper_cased_and_audited(app):
    agency = service.create_agency(actor=CONSOLE, name="Lakeport PD", level="local",
                                   ori="oh0480500")
    assert agency.ori == "OH0480500"
    assert "agency.created" in audit_actions(object_type="agency")


def test_duplicate_agency_name_or_ori_is_a_conflict(app):
    make_agency(name="Lakeport Police Department", ori="OH0480500")
    with pytest.raises(Conflict):
        make_agency(name="lakeport police department", ori="OH0480501")
    with pytest.raises(Conflict):
        make_agency(name="Another PD", ori="OH0480500")
    assert db.session.scalar(select(db.func.count(Agency.id))) == 1


def test_only_admins_manage_agencies(app):
    investigator, _, _ = make_user(roles=["investigator"])
    with pytest.raises(Forbidden):
        service.create_agency(actor=as_actor(investigator), name="X PD", level="local",
                              ori="OH1234567")


def test_agency_update_changes_and_audits(app):
    admin, _, _ = make_user(roles=["admin"])
    agency = make_agency(name="Old Name PD")
    service.update_agency(actor=as_actor(admin), agency_id=agency.id, name="New Name PD",
                          level="tribal")
    assert (agency.name, agency.level) == ("New Name PD", "tribal")
    assert "agency.updated" in audit_actions(object_type="agency")


# -- users ----------------------------------------------------------------------------

def test_an_admin_created_user_gets_a_temporary_password_to_replace(app):
    admin, _, _ = make_user(roles=["admin"])
    agency = make_agency()
    user, temporary = service.create_user(
        actor=as_actor(admin), username="M.Reyes", full_name="Maria Reyes",
        email="mreyes@lakeport.gov", agency_id=agency.id, roles=["investigator", "analyst"])
    assert user.username == "m.reyes"
    assert user.role_names == ["analyst", "investigator"]
    assert temporary and service.password_matches(user=user, password=temporary)
    assert user.must_change_password is True


def test_unknown_roles_and_taken_usernames_are_refused(app):
    agency = make_agency()
    with pytest.raises(Invalid):
        make_user(agency=agency, roles=["sheriff"])
    make_user(agency=agency, username="dup")
    with pytest.raises(Conflict):
        make_user(agency=agency, username="DUP")


def test_the_last_admin_cannot_lose_the_role_or_be_deactivated(app):
    admin, _, _ = make_user(roles=["admin"])
    with pytest.raises(Conflict):
        service.set_roles(actor=CONSOLE, user_id=admin.id, roles=["investigator"])
    with pytest.raises(Conflict):
        service.deactivate_user(actor=CONSOLE, user_id=admin.id)


def test_deactivation_ends_sessions(app):
    admin, _, _ = make_user(roles=["admin"])
    user, password, secret = make_user(roles=["investigator"])
    signed = service.complete_sign_in(actor=WEB, user_id=user.id,
                                      code=pyotp.TOTP(secret).now())
    service.deactivate_user(actor=as_actor(admin), user_id=user.id)
    check = service.resume_session(session_token=signed.session_token, user_id=user.id)
    assert check.user is None and check.ended_reason == "deactivated"
    with pytest.raises(Forbidden):
        service.check_password(actor=WEB, username=user.username, password=password)


def test_supervisors_list_only_their_agency(app):
    home, other = make_agency(), make_agency()
    supervisor, _, _ = make_user(agency=home, roles=["supervisor"])
    colleague, _, _ = make_user(agency=home)
    stranger, _, _ = make_user(agency=other)
    names = {u.username for u in service.list_users(actor=as_actor(supervisor))}
    assert names == {supervisor.username, colleague.username}
    with pytest.raises(NotFound):
        service.get_user(actor=as_actor(supervisor), user_id=stranger.id)


# -- lockout and unlock ---------------------------------------------------------------------

def _fail_password(user, times: int):
    for _ in range(times):
        with pytest.raises((Unauthorized, Locked)):
            service.check_password(actor=WEB, username=user.username, password="wrong password!!")


def test_five_failures_lock_the_account_and_the_right_password_is_then_refused(app):
    user, password, _ = make_user(roles=["investigator"])
    _fail_password(user, 4)
    assert user.locked_until is None and user.failed_logins == 4
    with pytest.raises(Locked) as err:
        service.check_password(actor=WEB, username=user.username, password="wrong again!!")
    assert "locked until" in err.value.message
    with pytest.raises(Locked):
        service.check_password(actor=WEB, username=user.username, password=password)
    db.session.expire_all()
    actions = audit_actions(object_id=str(user.id))
    assert actions.count("login.failure") == 6
    assert "account.locked" in actions


def test_a_lock_runs_out(app):
    user, password, _ = make_user()
    _fail_password(user, 5)
    user.locked_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    step = service.check_password(actor=WEB, username=user.username, password=password)
    assert step.user_id == user.id and user.failed_logins == 0


def test_wrong_codes_count_toward_the_lockout(app):
    user, _, secret = make_user()
    good = pyotp.TOTP(secret).now()
    bad = f"{(int(good) + 500_000) % 1_000_000:06d}"
    for _ in range(4):
        with pytest.raises(Unauthorized):
            service.complete_sign_in(actor=WEB, user_id=user.id, code=bad)
    with pytest.raises(Locked):
        service.complete_sign_in(actor=WEB, user_id=user.id, code=bad)
    with pytest.raises(Locked):
        service.complete_sign_in(actor=WEB, user_id=user.id, code=good)


def test_supervisor_unlocks_own_agency_but_not_another(app):
    home, other = make_agency(), make_agency()
    supervisor, _, _ = make_user(agency=home, roles=["supervisor"])
    colleague, _, _ = make_user(agency=home)
    stranger, _, _ = make_user(agency=other)
    _fail_password(colleague, 5)
    _fail_password(stranger, 5)
    service.unlock_user(actor=as_actor(supervisor), user_id=colleague.id)
    assert colleague.locked_until is None and colleague.failed_logins == 0
    assert "account.unlocked" in audit_actions(object_id=str(colleague.id))
    with pytest.raises(Forbidden):
        service.unlock_user(actor=as_actor(supervisor), user_id=stranger.id)
    db.session.expire_all()
    assert stranger.locked_until is not None


def test_an_investigator_cannot_unlock(app):
    agency = make_agency()
    investigator, _, _ = make_user(agency=agency, roles=["investigator"])
    colleague, _, _ = make_user(agency=agency)
    with pytest.raises(Forbidden):
        service.unlock_user(actor=as_actor(investigator), user_id=colleague.id)


def test_unknown_username_gets_the_same_answer_as_a_wrong_password(app):
    user, _, _ = make_user()
    with pytest.raises(Unauthorized) as unknown:
        service.check_password(actor=WEB, username="nobody-here", password="whatever at all")
    with pytest.raises(Unauthorized) as wrong:
        service.check_password(actor=WEB, username=user.username, password="whatever at all")
    assert unknown.value.message == wrong.value.message == "Invalid username or password."


# -- MFA ------------------------------------------------------------------------------------

def test_the_totp_seed_is_encrypted_at_rest(app):
    user, _, secret = make_user()
    assert secret not in user.mfa_secret
    assert mfa.decrypt_secret(user.mfa_secret) == secret


def test_a_totp_code_cannot_be_replayed(app):
    user, _, secret = make_user()
    code = pyotp.TOTP(secret).now()
    service.complete_sign_in(actor=WEB, user_id=user.id, code=code)
    with pytest.raises(Unauthorized):
        service.complete_sign_in(actor=WEB, user_id=user.id, code=code)


def test_an_older_code_is_refused_after_a_newer_one(app):
    user, _, secret = make_user()
    totp = pyotp.TOTP(secret)
    now = time.time()
    service.complete_sign_in(actor=WEB, user_id=user.id, code=totp.at(now + 30))
    with pytest.raises(Unauthorized):
        service.complete_sign_in(actor=WEB, user_id=user.id, code=totp.at(now))


def test_enrolment_gives_ten_recovery_codes_each_good_once(app):
    user, _, _ = make_user(mfa=False)
    enrolment = service.begin_enrolment(actor=WEB, user_id=user.id)
    assert enrolment.qr_data_uri.startswith("data:image/svg+xml")
    again = service.begin_enrolment(actor=WEB, user_id=user.id)
    assert again.seed == enrolment.seed  # a reload shows the same QR code
    signed, codes = service.confirm_enrolment(actor=WEB, user_id=user.id,
                                              code=pyotp.TOTP(enrolment.seed).now())
    assert signed.user.mfa_enrolled and len(codes) == 10 and len(set(codes)) == 10
    stored = list(db.session.scalars(select(RecoveryCode.code_hash)
                                     .where(RecoveryCode.user_id == user.id)))
    assert all(h.startswith("$argon2id$") for h in stored)
    assert not any(c in h for c in codes for h in stored)

    service.complete_sign_in(actor=WEB, user_id=user.id, code=codes[3].lower())
    with pytest.raises(Unauthorized):
        service.complete_sign_in(actor=WEB, user_id=user.id, code=codes[3])
    assert "mfa.recovery_code_used" in audit_actions(object_id=str(user.id))


def test_a_wrong_enrolment_code_is_invalid(app):
    user, _, _ = make_user(mfa=False)
    enrolment = service.begin_enrolment(actor=WEB, user_id=user.id)
    good = pyotp.TOTP(enrolment.seed).now()
    with pytest.raises(Invalid):
        service.confirm_enrolment(actor=WEB, user_id=user.id,
                                  code=f"{(int(good) + 500_000) % 1_000_000:06d}")
    assert not user.mfa_enrolled


def test_reset_sign_in_clears_mfa_and_ends_sessions(app):
    admin, _, _ = make_user(roles=["admin"])
    user, _, secret = make_user()
    signed = service.complete_sign_in(actor=WEB, user_id=user.id, code=pyotp.TOTP(secret).now())
    temporary = service.reset_sign_in(actor=as_actor(admin), user_id=user.id)
    assert not user.mfa_enrolled and user.must_change_password
    assert service.password_matches(user=user, password=temporary)
    assert service.resume_session(session_token=signed.session_token,
                                  user_id=user.id).user is None


# -- sessions -------------------------------------------------------------------------------

def test_an_idle_session_ends(app):
    user, _, secret = make_user()
    signed = service.complete_sign_in(actor=WEB, user_id=user.id, code=pyotp.TOTP(secret).now())
    assert service.resume_session(session_token=signed.session_token, user_id=user.id).user
    row = db.session.scalar(select(UserSession).where(UserSession.user_id == user.id))
    row.last_seen_at = utcnow() - timedelta(minutes=31)
    db.session.commit()
    check = service.resume_session(session_token=signed.session_token, user_id=user.id)
    assert check.user is None and check.ended_reason == "idle"
    assert row.ended_at is not None and row.end_reason == "idle"
    assert "session.expired" in audit_actions(object_id=str(user.id))


def test_session_ids_are_stored_hashed(app):
    user, _, secret = make_user()
    signed = service.complete_sign_in(actor=WEB, user_id=user.id, code=pyotp.TOTP(secret).now())
    row = db.session.scalar(select(UserSession).where(UserSession.user_id == user.id))
    assert row.token_hash == mfa.sha256_hex(signed.session_token)
    assert signed.session_token not in row.token_hash


# -- API tokens -----------------------------------------------------------------------------

def test_token_round_trip_and_refusals(app):
    user, _, _ = make_user()
    token, raw = service.create_token(actor=as_actor(user), name="import script", scope="read",
                                      expires_in_days=30)
    assert raw.startswith(f"tf_{token.prefix}_")
    stored = db.session.scalar(select(ApiToken.token_hash).where(ApiToken.id == token.id))
    assert stored == mfa.sha256_hex(raw) and raw not in stored
    found_user, found = service.authenticate_token(raw=raw)
    assert (found_user.id, found.id) == (user.id, token.id) and found.last_used_at is not None
    with pytest.raises(Unauthorized):
        service.authenticate_token(raw=raw[:-2] + "xx")
    service.revoke_token(actor=as_actor(user), token_id=token.id)
    with pytest.raises(Unauthorized, match="revoked"):
        service.authenticate_token(raw=raw)


@pytest.mark.parametrize("days", [0, 366])
def test_token_expiry_is_required_and_bounded(app, days):
    user, _, _ = make_user()
    with pytest.raises(Invalid):
        service.create_token(actor=as_actor(user), name="x", scope="write", expires_in_days=days)


def test_a_token_cannot_mint_tokens(app):
    user, _, _ = make_user()
    token, _ = service.create_token(actor=as_actor(user), name="x", scope="write",
                                    expires_in_days=1)
    with pytest.raises(Forbidden):
        service.create_token(actor=Actor.for_user(user, token=token), name="y", scope="write",
                             expires_in_days=1)


def test_tokens_are_revoked_only_by_their_owner(app):
    owner, other = make_user()[0], make_user()[0]
    token, _ = service.create_token(actor=as_actor(owner), name="x", scope="read",
                                    expires_in_days=1)
    with pytest.raises(NotFound):
        service.revoke_token(actor=as_actor(other), token_id=token.id)
