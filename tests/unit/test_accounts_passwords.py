"""Password rules (NIST SP 800-63B) and argon2id storage."""
from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from taskforce.accounts import passwords, service
from taskforce.errors import Invalid
from taskforce.extensions import db
from tests.factories import login, make_user


@pytest.mark.parametrize("password, rule", [
    ("short pw 1", "at least 12 characters"),
    ("x" * 129, "at most 128 characters"),
    ("password1234", "common or breached"),
    ("qwerty123456", "common or breached"),
    ("Password2024!!", "numbers or symbols added"),
    ("sunshine123456", "numbers or symbols added"),
    ("Constitutional", "dictionary word"),
    ("abcdefghijklmnop", "sequence"),
    ("7890123456789", "sequence"),
    ("abcabcabcabcabc", "repeats"),
    ("my taskforce login", "'taskforce'"),
])
def test_weak_passwords_are_refused_with_the_rule_named(password, rule):
    problem = passwords.problem_with(password)
    assert problem is not None and rule in problem


def test_a_password_containing_the_username_is_refused():
    problem = passwords.problem_with("hello-jsmith-42-river", username="JSmith")
    assert problem == "Password must not contain your username."


@pytest.mark.parametrize("password", [
    "correct horse battery staple",
    "Lantern river 7 orchards",
    "ñandú vuela sobre el río",  # any characters at all: no composition rules
    "x7#Kq9!mZ2@pLw",
])
def test_good_passwords_pass(password):
    assert passwords.problem_with(password, username="jsmith") is None


def test_check_raises_invalid_naming_the_field():
    with pytest.raises(Invalid) as err:
        passwords.check("tooshort")
    assert err.value.status == 422
    assert "12 characters" in err.value.fields["password"][0]


def test_unicode_is_normalised_before_hashing(app):
    stored = passwords.hash_password("café au lait at noon")  # é as one code point
    assert passwords.verify_password(stored, "cafe\u0301 au lait at noon")  # e + combining accent


def test_the_stored_hash_is_argon2id(app):
    user, password, _ = make_user(roles=["analyst"])
    assert user.password_hash.startswith("$argon2id$")
    assert password not in user.password_hash


def test_a_hash_with_old_parameters_is_upgraded_at_sign_in(app, client):
    user, password, secret = make_user(roles=["analyst"])
    weaker = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    user.password_hash = weaker.hash(password)
    db.session.commit()
    assert passwords.needs_rehash(user.password_hash)
    login(client, user.username, password, secret)
    db.session.expire_all()
    fresh = service.find_user(username=user.username)
    assert not passwords.needs_rehash(fresh.password_hash)
    assert passwords.verify_password(fresh.password_hash, password)


def test_temporary_passwords_pass_the_policy():
    for _ in range(20):
        assert passwords.problem_with(service.temporary_password()) is None
