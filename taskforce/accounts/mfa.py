"""Second factor: TOTP (RFC 6238) with replay refusal, recovery codes, and the
encryption of the TOTP seed at rest.

The seed is encrypted with Fernet under a key derived by HKDF from SECRET_KEY
(and from each SECRET_KEY_FALLBACKS entry, so a key rotation keeps old seeds
readable). A database dump alone therefore yields no working authenticator.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import secrets
import time

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from pyotp.exceptions import OTPVerificationError

ISSUER = "taskforce"
RECOVERY_CODE_COUNT = 10
# Crockford's base32: no I, L, O or U, so codes read aloud or copied by hand survive.
_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_HKDF_INFO = b"taskforce accounts: TOTP seed encryption v1"


# -- the seed at rest ------------------------------------------------------

def _fernet_for(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


@functools.cache
def _cipher(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet_for(k) for k in keys])


def cipher() -> MultiFernet:
    cfg = current_app.config
    keys = (cfg["SECRET_KEY"], *(cfg.get("SECRET_KEY_FALLBACKS") or ()))
    return _cipher(tuple(keys))


def encrypt_secret(seed: str) -> str:
    return cipher().encrypt(seed.encode()).decode()


def decrypt_secret(stored: str) -> str:
    try:
        return cipher().decrypt(stored.encode()).decode()
    except InvalidToken as exc:  # SECRET_KEY changed without a fallback
        raise RuntimeError("the TOTP seed cannot be decrypted with the current SECRET_KEY") from exc


# -- TOTP ------------------------------------------------------------------

def new_seed() -> str:
    return pyotp.random_base32(length=32)  # 160 bits, as RFC 4226 recommends


def provisioning_uri(seed: str, username: str) -> str:
    return pyotp.TOTP(seed).provisioning_uri(name=username, issuer_name=ISSUER)


def qr_data_uri(uri: str) -> str:
    """An SVG data: URI for an <img>: the CSP allows img data: and forbids inline script."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)


def current_code(seed: str) -> str:
    return pyotp.TOTP(seed).now()


def clean_code(code: str) -> str:
    return "".join(ch for ch in code if not ch.isspace() and ch != "-").upper()


def matching_step(seed: str, code: str, *, last_step: int | None, at: float | None = None
                  ) -> int | None:
    """The time step this code belongs to, or None.

    One step of clock drift either way is allowed. A step at or before the last
    one accepted is refused, so a code seen over someone's shoulder, or
    replayed from a proxy log, is useless once it has been used (63B 5.1.4.2).
    """
    code = clean_code(code)
    if len(code) != 6 or not code.isdigit():
        return None
    try:
        step = pyotp.TOTP(seed).verify_and_get_timecode(
            code, for_time=time.time() if at is None else at, valid_window=1
        )
    except OTPVerificationError:
        return None
    if last_step is not None and step <= last_step:
        return None
    return step


# -- recovery codes --------------------------------------------------------

def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """Codes like 7K3M-QX9D-2HRT: 12 characters of base32, 60 bits each."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))
        codes.append("-".join(raw[i:i + 4] for i in range(0, 12, 4)))
    return codes


@functools.cache
def _code_hasher() -> PasswordHasher:
    # Under 112 bits, so a salted slow hash (63B 5.1.2.2); lighter than the
    # password hasher because the code itself carries 60 random bits.
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def looks_like_recovery_code(code: str) -> bool:
    cleaned = clean_code(code)
    return len(cleaned) == 12 and all(ch in _CODE_ALPHABET for ch in cleaned)


def hash_recovery_code(code: str) -> str:
    return _code_hasher().hash(clean_code(code))


def recovery_code_matches(stored_hash: str, code: str) -> bool:
    try:
        return _code_hasher().verify(stored_hash, clean_code(code))
    except (VerificationError, InvalidHashError):
        return False


# -- opaque secrets (API tokens, session ids) -------------------------------

def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
