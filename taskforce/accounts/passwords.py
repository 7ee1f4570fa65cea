"""Password rules (NIST SP 800-63B 5.1.1.2) and argon2id hashing.

Rules: 12 to 128 characters, any characters at all (no composition rules,
no periodic expiry), and not a password an attacker would try first: one from
breach corpora, a dictionary word, a keyboard or alphabet run, one short chunk
repeated, or something containing the account name or the product name.

The lists come from the zxcvbn package (Dropbox's strength estimator), which
ships the 30,000 most common passwords from breach corpora and an English word
list; nothing is downloaded at run time.
"""
from __future__ import annotations

import functools
import string
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, has_app_context

from taskforce.errors import Invalid

MIN_LENGTH = 12
MAX_LENGTH = 128
# Words of the product and of the job that people put in passwords for it.
CONTEXT_WORDS = ("taskforce", "trafficking")
# Runs a person slides a finger along; repeated so "7890123456789" still matches.
RUNS = tuple(run * 3 for run in (
    "abcdefghijklmnopqrstuvwxyz", "1234567890", "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p", "qazwsxedcrfvtgbyhnujmikolp",
))
_EDGE = string.digits + string.punctuation + string.whitespace


@functools.cache
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


@functools.cache
def _dictionary_words() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    words: set[str] = set()
    for name in ("english_wikipedia", "us_tv_and_film", "female_names", "male_names", "surnames"):
        words.update(FREQUENCY_LISTS[name])
    return frozenset(words)


def normalise(password: str) -> str:
    """NFKC, so the same password typed on two keyboards hashes the same (63B 5.1.1.2)."""
    return unicodedata.normalize("NFKC", password)


def problem_with(password: str, *, username: str | None = None) -> str | None:
    """The first rule this password breaks, said plainly, or None if it is fine."""
    password = normalise(password)
    if len(password) < MIN_LENGTH:
        return f"Password must be at least {MIN_LENGTH} characters long."
    if len(password) > MAX_LENGTH:
        return f"Password must be at most {MAX_LENGTH} characters long."
    low = password.casefold()
    if username and len(username) >= 3 and username.casefold() in low:
        return "Password must not contain your username."
    for word in CONTEXT_WORDS:
        if word in low:
            return f"Password must not contain the word {word!r}."
    if low in _common_passwords():
        return "Password is on the list of common or breached passwords; choose another."
    core = low.strip(_EDGE)  # "Password2024!" is still "password"
    if core != low and (core in _common_passwords() or core in _dictionary_words()):
        return ("Password is a common password or word with numbers or symbols added; "
                "choose another.")
    if low in _dictionary_words():
        return "Password is a single dictionary word or name; use several words or more."
    if _is_run(low):
        return "Password is a keyboard or alphabet sequence; choose another."
    if _is_repeat(low):
        return "Password repeats the same few characters; choose another."
    return None


def check(password: str, *, username: str | None = None) -> None:
    """Raise Invalid naming the rule broken."""
    problem = problem_with(password, username=username)
    if problem:
        raise Invalid(problem, fields={"password": [problem]})


def _is_run(low: str) -> bool:
    return any(low in run or low in run[::-1] for run in RUNS)


def _is_repeat(low: str) -> bool:
    if len(set(low)) <= 3:
        return True
    for size in range(1, 5):  # "abcdabcdabcd", "121212121212"
        unit = low[:size]
        if (unit * (len(low) // size + 1))[: len(low)] == low:
            return True
    return False


# -- hashing ---------------------------------------------------------------

@functools.cache
def _hasher(testing: bool) -> PasswordHasher:
    if testing:
        # Same algorithm, lighter cost, so the test suite stays quick; hashes made
        # this way are upgraded by needs_rehash() in any other environment.
        return PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    return PasswordHasher()  # argon2id, RFC 9106 low-memory profile (t=3, m=64 MiB, p=4)


def hasher() -> PasswordHasher:
    testing = has_app_context() and bool(current_app.config.get("TESTING"))
    return _hasher(testing)


def hash_password(password: str) -> str:
    return hasher().hash(normalise(password))


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return hasher().verify(stored_hash, normalise(password))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return hasher().check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


@functools.cache
def _dummy_hash(testing: bool) -> str:
    return _hasher(testing).hash("an account that does not exist")


def burn_time() -> None:
    """Verify against a throw-away hash so an unknown username costs as long as a
    wrong password, and timing does not reveal which accounts exist."""
    testing = has_app_context() and bool(current_app.config.get("TESTING"))
    verify_password(_dummy_hash(testing), "not the password")
