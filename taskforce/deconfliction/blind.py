"""The blind index: what the deconfliction index stores instead of an identifier.

With ``DECONFLICTION_BLIND_INDEX`` on (the production default), nothing in
``target_registrations`` or ``person_blocks`` is an identifier in the clear:

* ``value_key`` is ``HMAC-SHA256(key, "<kind>|<normalized value>")`` in hex, so two
  agencies that enter the same phone in any spelling (identifiers.normalize makes
  the value) store the same tag and meet on an indexed equality lookup;
* a person's blocking keys (``1990|sx|J500+S530``) are stored as
  ``HMAC(key, "pblock|<key>")``: they still bring near names together, but the
  birth year and the phonetic codes cannot be read back;
* ``display_hint`` (the identifier as entered) is not stored at all;
* a person's *sketch* (what scoring a possible match needs) holds, per name word,
  truncated HMACs of the word, of its Soundex and of its Metaphone code, and of the
  date of birth (see matching.py for how it is scored and what that costs).

Without the key a stolen copy of the tables shows only which rows share a value
(unavoidable: equal tags are how matching works), never the value. The key is
``DECONFLICTION_KEY`` (any random string of 32+ characters) run through HKDF-SHA256
with a purpose label, so the raw setting is never the HMAC key itself. In
development and test, when it is not set, it is derived with HKDF from
``SECRET_KEY`` (purpose label ``taskforce/deconfliction/blind-index/v1``), so a
local install needs no extra secret; production refuses to start without it when
the blind index is on.

Every row records its ``scheme`` ("plain", or "hmac1:" and a fingerprint of the
key), and lookups match only rows of the current scheme: turning the blind index
on or off, or changing the key, never makes two different values meet, it only
stops old rows matching until they are registered again.

The index seeks a 64-bit key, ``key64`` (first 8 bytes of the HMAC tag, or of
SHA-256 of ``"<kind>|<value>"`` when plain): a btree of 8-byte keys is a quarter
the size of one of tags, which is what makes loading millions of rows fast. The
full ``value_key`` is still stored and compared on every match, so two values
sharing a 64-bit prefix never meet (models.TargetRegistration.key_slot).

Pure functions of the app config; no database.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

PURPOSE = b"taskforce/deconfliction/blind-index/v1"
KEY_MIN_CHARS = 32
SKETCH_TAG_HEX = 16  # 64-bit tags in the person sketch: plenty to tell name words apart


class KeyMissing(RuntimeError):
    """Production with the blind index on and no DECONFLICTION_KEY."""


def blind_enabled(config: Any) -> bool:
    """The setting, or its default: on in production, off elsewhere."""
    value = config.get("DECONFLICTION_BLIND_INDEX")
    if value is None or value == "":
        return config.get("ENV_NAME") == "production"
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def _hkdf(material: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(material)


def derive_key(config: Any) -> bytes:
    """The 32-byte HMAC key for the blind index (see the module docstring)."""
    raw = config.get("DECONFLICTION_KEY") or ""
    if raw:
        if len(raw) < KEY_MIN_CHARS:
            raise KeyMissing(f"DECONFLICTION_KEY must be at least {KEY_MIN_CHARS} characters "
                             "of random text")
        return _hkdf(raw.encode())
    if config.get("ENV_NAME") == "production":
        raise KeyMissing("DECONFLICTION_KEY must be set in production while the blind index "
                         "is on (DECONFLICTION_BLIND_INDEX)")
    secret = config.get("SECRET_KEY") or ""
    if not secret:
        raise KeyMissing("no SECRET_KEY to derive the development deconfliction key from")
    return _hkdf(b"from-secret-key:" + secret.encode())


@dataclass(frozen=True)
class Keyring:
    """How identifiers are turned into index keys under the current settings."""

    blind: bool
    key: bytes = b""

    @cached_property
    def scheme(self) -> str:
        # cached: it is asked once per row written or looked up
        if not self.blind:
            return "plain"
        fingerprint = hmac.new(self.key, b"fingerprint", hashlib.sha256).hexdigest()[:8]
        return f"hmac1:{fingerprint}"

    @cached_property
    def _pads(self) -> tuple[Any, Any]:
        """SHA-256 states after the HMAC key's inner and outer pads (RFC 2104): a tag
        then costs two short hashes, 1.2 us against 5 us for hmac.digest, which
        sets it up again per call (bulk registration tags every row)."""
        key = self.key if len(self.key) <= 64 else hashlib.sha256(self.key).digest()
        key = key.ljust(64, b"\0")
        return (hashlib.sha256(bytes(b ^ 0x36 for b in key)),
                hashlib.sha256(bytes(b ^ 0x5C for b in key)))

    def _tag(self, text: str) -> str:
        inner_pad, outer_pad = self._pads
        inner = inner_pad.copy()
        inner.update(text.encode())
        outer = outer_pad.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def value_key(self, kind: str, value: str) -> str:
        """What ``target_registrations.value_key`` holds for a normalized identifier."""
        return self._tag(f"{kind}|{value}") if self.blind else value

    def key64(self, kind: str, value_key: str) -> int:
        """What ``target_registrations.key64`` holds for this value key (the index's seek)."""
        return key64(kind, value_key, self.blind)

    def block_key(self, key: str) -> str:
        """What ``person_blocks.block_key`` holds for a blocking key."""
        return self._tag(f"pblock|{key}") if self.blind else key

    def sketch_tag(self, purpose: str, text: str) -> str:
        return self._tag(f"{purpose}|{text}")[:SKETCH_TAG_HEX]


def key64(kind: str, value_key: str, blind: bool) -> int:
    """The first 8 bytes of the value key's hash, read as a signed (two's complement)
    BIGINT: of the HMAC tag itself when blind (already a keyed hash: its first 16 hex
    digits), of SHA-256 of ``"<kind>|<value>"`` when plain. Lookups compare the full
    value_key afterwards. In PostgreSQL: ``('x' || substr(<hex>, 1, 16))::bit(64)::bigint``
    with <hex> the tag, or ``encode(sha256(convert_to(kind || '|' || value_key,
    'UTF8')), 'hex')``."""
    if blind:
        u = int(value_key[:16], 16)
        return u - _WRAP if u >= _HALF else u
    digest = hashlib.sha256(f"{kind}|{value_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_HALF, _WRAP = 1 << 63, 1 << 64  # unsigned 64-bit -> signed (BIGINT)


def keyring(app=None) -> Keyring:
    """The keyring of the current app (derived once, cached in app.extensions)."""
    app = app or current_app._get_current_object()
    cached = app.extensions.get("deconfliction_keyring")
    if cached is None:
        blind = blind_enabled(app.config)
        cached = Keyring(blind=True, key=derive_key(app.config)) if blind else Keyring(False)
        app.extensions["deconfliction_keyring"] = cached
    return cached


def reset(app=None) -> None:
    """Forget the cached keyring (tests that change the settings of a live app)."""
    app = app or current_app._get_current_object()
    app.extensions.pop("deconfliction_keyring", None)
