"""Identifiers: the strong selectors that say two records are the same thing.

Every identifier is normalized before it is stored or compared, so that the same
phone, email, plate, account or person entered twice (in any spelling) is one
entity, and deconfliction can index ``(kind, value)``::

    >>> normalize("phone", "(312) 555-0199").value
    '+13125550199'
    >>> normalize("email", "John.Smith+ads@GoogleMail.com").value
    'johnsmith@gmail.com'

``Identifier`` equality and hashing use ``(kind, value)`` only: ``display`` (how
to show it to a person) and ``details`` (parts worth keeping, such as a phone
extension or a ZIP+4) do not change which entity it is.

Each kind has one normalizer in ``KINDS``; every normalizer accepts its own
canonical ``value`` back unchanged (``normalize(k, normalize(k, v).value)``
gives the same value), so stored values can be re-checked at any time.
Kinds that need a second part (plate + state, platform + handle, routing +
account, name + date of birth) take it as a keyword argument or in the same
string: ``normalize("vehicle_plate", "abc 1234", state="TX")`` or
``normalize("vehicle_plate", "TX:abc 1234")``.

Pure Python and no Flask: used by services, commands, tests and benchmarks.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import combinations
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import jellyfish
import phonenumbers
from Crypto.Hash import keccak
from rapidfuzz import fuzz

__all__ = [
    "KINDS",
    "US_STATES",
    "Identifier",
    "InvalidIdentifier",
    "aba_checksum_ok",
    "age_on",
    "encode_base58check",
    "encode_segwit_address",
    "minor_on",
    "name_similarity",
    "normalize",
    "parse_date_of_birth",
    "person_blocking_keys",
    "person_name_tokens",
    "person_query_keys",
    "to_checksum_address",
    "vin_check_digit",
]


# ---------------------------------------------------------------------------
# The identifier and its error
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Identifier:
    """A normalized identifier. Two are the same entity when kind and value match."""

    kind: str
    value: str
    display: str = field(default="", compare=False)
    details: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        """The deconfliction index key ``(kind, value)``."""
        return (self.kind, self.value)

    def __str__(self) -> str:
        return self.display or self.value


class InvalidIdentifier(ValueError):
    """Input that cannot be an identifier of that kind; the message is for an investigator."""

    def __init__(self, kind: str, value: object, reason: str) -> None:
        self.kind = kind
        self.value = value
        self.reason = reason
        super().__init__(f"{reason}: {value!r}")


Normalizer = Callable[..., Identifier]


def _text(kind: str, value: object) -> str:
    """The raw input as a stripped string, or an error when there is nothing."""
    if value is None:
        raise InvalidIdentifier(kind, value, f"a {kind.replace('_', ' ')} is required")
    text = str(value).strip()
    if not text:
        raise InvalidIdentifier(kind, value, f"a {kind.replace('_', ' ')} is required")
    return text


# ---------------------------------------------------------------------------
# Reference tables
# ---------------------------------------------------------------------------

#: USPS two-letter codes (Publication 28, Appendix B) for states, DC and territories.
US_STATES: Mapping[str, str] = {
    "AL": "ALABAMA", "AK": "ALASKA", "AZ": "ARIZONA", "AR": "ARKANSAS",
    "CA": "CALIFORNIA", "CO": "COLORADO", "CT": "CONNECTICUT", "DE": "DELAWARE",
    "DC": "DISTRICT OF COLUMBIA", "FL": "FLORIDA", "GA": "GEORGIA", "HI": "HAWAII",
    "ID": "IDAHO", "IL": "ILLINOIS", "IN": "INDIANA", "IA": "IOWA", "KS": "KANSAS",
    "KY": "KENTUCKY", "LA": "LOUISIANA", "ME": "MAINE", "MD": "MARYLAND",
    "MA": "MASSACHUSETTS", "MI": "MICHIGAN", "MN": "MINNESOTA", "MS": "MISSISSIPPI",
    "MO": "MISSOURI", "MT": "MONTANA", "NE": "NEBRASKA", "NV": "NEVADA",
    "NH": "NEW HAMPSHIRE", "NJ": "NEW JERSEY", "NM": "NEW MEXICO", "NY": "NEW YORK",
    "NC": "NORTH CAROLINA", "ND": "NORTH DAKOTA", "OH": "OHIO", "OK": "OKLAHOMA",
    "OR": "OREGON", "PA": "PENNSYLVANIA", "RI": "RHODE ISLAND", "SC": "SOUTH CAROLINA",
    "SD": "SOUTH DAKOTA", "TN": "TENNESSEE", "TX": "TEXAS", "UT": "UTAH",
    "VT": "VERMONT", "VA": "VIRGINIA", "WA": "WASHINGTON", "WV": "WEST VIRGINIA",
    "WI": "WISCONSIN", "WY": "WYOMING",
    "AS": "AMERICAN SAMOA", "GU": "GUAM", "MP": "NORTHERN MARIANA ISLANDS",
    "PR": "PUERTO RICO", "VI": "VIRGIN ISLANDS",
}
# Mail-only codes (military post offices, freely associated states): valid in an
# address, never on a licence plate.
_MAIL_ONLY_STATES = {"AA": "ARMED FORCES AMERICAS", "AE": "ARMED FORCES EUROPE",
                     "AP": "ARMED FORCES PACIFIC", "FM": "FEDERATED STATES OF MICRONESIA",
                     "MH": "MARSHALL ISLANDS", "PW": "PALAU"}
_STATE_BY_NAME = {name: code for code, name in {**US_STATES, **_MAIL_ONLY_STATES}.items()}
_STATE_BY_NAME["US VIRGIN ISLANDS"] = "VI"


def _state_code(text: str, *, plates: bool) -> str | None:
    """A USPS state code from a code or a full name, or None."""
    t = re.sub(r"[^A-Z ]", "", _fold(text).upper()).strip()
    t = re.sub(r"\s+", " ", t)
    table = US_STATES if plates else {**US_STATES, **_MAIL_ONLY_STATES}
    if t in table:
        return t
    code = _STATE_BY_NAME.get(t)
    return code if code in table else None


# ---------------------------------------------------------------------------
# Text helpers
# ---------------------------------------------------------------------------

# Letters that Unicode does not decompose into a base letter + accent.
_FOLD_EXTRA = str.maketrans({
    "\u00df": "ss", "\u1e9e": "SS",  # sharp s
    "\u00c6": "AE", "\u00e6": "ae", "\u0152": "OE", "\u0153": "oe",  # ligatures
    "\u00d8": "O", "\u00f8": "o", "\u0141": "L", "\u0142": "l",  # O and L with stroke
    "\u0110": "D", "\u0111": "d", "\u00de": "TH", "\u00fe": "th",  # D with stroke, thorn
    "\u0131": "i",  # dotless i
    # typographic apostrophes and dashes to their ASCII forms
    "\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'",
    "\u2010": "-", "\u2011": "-", "\u2013": "-", "\u2014": "-",
})


def _fold(text: str) -> str:
    """Accents folded (José -> Jose), compatibility forms (full-width letters) flattened."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD_EXTRA))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# ---------------------------------------------------------------------------
# phone
# ---------------------------------------------------------------------------

_PHONE_ERRORS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country calling code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short to be a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short to be a phone number",
    phonenumbers.NumberParseException.TOO_LONG: "too long to be a phone number",
}


def _phone(value: str, *, region: str = "US", strict: bool = True, **_: Any) -> Identifier:
    """A phone number in E.164 (``+13125550199``).

    Written any common way: ``(312) 555-0199``, ``312.555.0199``, ``+1 312 555 0199``,
    ``011 44 20 7946 0958`` (US exit code) or ``001 312 555 0199`` (the ``00`` exit code
    used outside North America). Numbers without a country code are read as numbers of
    ``region``. An extension (``x12``, ``ext. 12``) is not part of the identifier: it is
    dropped from the value and kept in ``details["extension"]``, because the line, not
    the extension, is what links records.

    ``strict`` (the default) requires a *valid* number by the libphonenumber metadata:
    an assigned area code and a number length and pattern that can exist. That rejects
    typos such as a non-existent area code. The NANP numbers reserved for fiction,
    NXX-555-0100..0199, are valid there for every assigned area code, so the synthetic
    data passes. ``strict=False`` only requires a *possible* number (a plausible length),
    for bulk imports of raw carrier records where a brand-new area code must not drop a row.
    """
    kind = "phone"
    raw = _text(kind, value)
    region = (region or "US").upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidIdentifier(kind, value, f"unknown phone region {region!r}")
    text = re.sub(r"^\s*00(?=[\s\d])", "+", raw)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        reason = _PHONE_ERRORS.get(exc.error_type, "not a phone number")
        raise InvalidIdentifier(kind, value, f"{reason} (region {region})") from None
    ok = phonenumbers.is_valid_number(number) if strict else phonenumbers.is_possible_number(
        number
    )
    if not ok:
        raise InvalidIdentifier(kind, value, f"not a valid phone number for region {region}")
    details: dict[str, str] = {}
    if number.extension:
        details["extension"] = number.extension
        number.extension = None
    where = phonenumbers.region_code_for_number(number)
    if where:
        details["region"] = where
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    display = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return Identifier(kind, e164, display, details)


# ---------------------------------------------------------------------------
# email
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _MailRule:
    domain: str  # the canonical domain
    tag_separator: str | None  # "+": everything from it to the @ is a tag
    ignore_dots: bool  # dots in the local part do not matter


_GMAIL = _MailRule("gmail.com", "+", True)
_PLUS = "+"

#: Provider equivalences. A tag is removed only where the provider both delivers
#: ``name+tag@`` to ``name@`` and forbids ``+`` in the names it hands out, so removing
#: it can never merge two different mailboxes.
_MAIL_PROVIDERS: Mapping[str, _MailRule] = {
    # Google Help, "Dots don't matter in Gmail addresses" and "Create task-specific
    # email addresses" (+ aliases); googlemail.com is the same mailbox as gmail.com
    # (it was used where "Gmail" was trademark-encumbered, e.g. UK and Germany).
    "gmail.com": _GMAIL,
    "googlemail.com": _GMAIL,
    # Microsoft consumer mail (Outlook.com) delivers plus-addressed mail like Exchange
    # Online's "Plus addressing"; Microsoft account names cannot contain "+". Dots DO
    # matter there, and hotmail.com / outlook.com / live.com are different mailboxes.
    "outlook.com": _MailRule("outlook.com", _PLUS, False),
    "hotmail.com": _MailRule("hotmail.com", _PLUS, False),
    "live.com": _MailRule("live.com", _PLUS, False),
    "msn.com": _MailRule("msn.com", _PLUS, False),
    # Apple iCloud Mail accepts name+tag@ (receive-only); me.com / mac.com are only
    # sometimes the same account, so they are not merged.
    "icloud.com": _MailRule("icloud.com", _PLUS, False),
    "me.com": _MailRule("me.com", _PLUS, False),
    "mac.com": _MailRule("mac.com", _PLUS, False),
    # Proton Mail support, "Addresses and aliases": plus addressing on every address.
    "proton.me": _MailRule("proton.me", _PLUS, False),
    "protonmail.com": _MailRule("protonmail.com", _PLUS, False),
    "protonmail.ch": _MailRule("protonmail.ch", _PLUS, False),
    "pm.me": _MailRule("pm.me", _PLUS, False),
    # Fastmail help, "Plus addressing and subdomain addressing".
    "fastmail.com": _MailRule("fastmail.com", _PLUS, False),
    "fastmail.fm": _MailRule("fastmail.fm", _PLUS, False),
    # Not Yahoo: its "-keyword" disposable addresses hang off a separately chosen base
    # name, not the account's address, so stripping "-..." would invent an address.
}

_LOCAL_RE = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _domain(kind: str, value: object, host: str) -> str:
    """A lowercased DNS name (IDNs in their xn-- form), or an error."""
    host = host.strip().rstrip(".").lower()
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidIdentifier(kind, value, "the domain name is not valid") from None
    labels = ascii_host.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.match(label) for label in labels):
        raise InvalidIdentifier(kind, value, "the domain name is not valid")
    tld = labels[-1]
    if not (tld.isalpha() and len(tld) >= 2) and not tld.startswith("xn--"):
        raise InvalidIdentifier(kind, value, "the domain name is not valid")
    return ascii_host


def _email(value: str, **_: Any) -> Identifier:
    """An email address, lowercased, with the provider's equivalent forms merged.

    ``John.Smith+ads@GoogleMail.com`` -> ``johnsmith@gmail.com``; the address as written
    (lowercased) is the display and ``details["as_written"]``. The check is conservative:
    an unquoted ``local@domain`` with a dotted domain; quoted local parts are refused.
    """
    kind = "email"
    raw = _text(kind, value)
    text = raw
    if text.lower().startswith("mailto:"):
        text = text[7:]
    text = text.strip().strip("<>").strip()
    if text.count("@") != 1:
        raise InvalidIdentifier(kind, value, "an email address needs exactly one '@'")
    local, host = text.rsplit("@", 1)
    local = local.lower()
    if not local or len(local) > 64 or not _LOCAL_RE.match(local):
        raise InvalidIdentifier(kind, value, "the part before the '@' is not a valid mailbox name")
    domain = _domain(kind, value, host)
    if len(local) + 1 + len(domain) > 254:
        raise InvalidIdentifier(kind, value, "an email address is at most 254 characters")
    as_written = f"{local}@{domain}"
    rule = _MAIL_PROVIDERS.get(domain)
    if rule is not None:
        if rule.tag_separator and rule.tag_separator in local:
            local = local.split(rule.tag_separator, 1)[0]
        if rule.ignore_dots:
            local = local.replace(".", "")
        domain = rule.domain
        if not local:
            raise InvalidIdentifier(
                kind, value, "the mailbox name is empty once its tag is removed"
            )
    return Identifier(kind, f"{local}@{domain}", as_written, {"as_written": as_written})


# ---------------------------------------------------------------------------
# vehicle_plate and vin
# ---------------------------------------------------------------------------


def _vehicle_plate(value: str, *, state: str | None = None, **_: Any) -> Identifier:
    """A licence plate with its issuing state: ``TX:ABC1234``.

    Uppercased; spaces, hyphens and dots removed (they are not part of the
    registration). The state is a USPS code or name, given as ``state=`` or written
    ``TX:ABC 1234``. O/0 and I/1 are *not* merged: that is fuzzy matching, not identity.
    """
    kind = "vehicle_plate"
    raw = _text(kind, value)
    plate = raw
    if state is None and ":" in raw:
        state, plate = raw.split(":", 1)
    if not state or not str(state).strip():
        raise InvalidIdentifier(kind, value, "a plate needs its issuing state (e.g. TX)")
    code = _state_code(str(state), plates=True)
    if code is None:
        raise InvalidIdentifier(kind, value, f"unknown issuing state {str(state).strip()!r}")
    plate = re.sub(r"[\s.\-·]", "", _fold(plate)).upper()
    if not plate:
        raise InvalidIdentifier(kind, value, "the plate number is empty")
    if not re.fullmatch(r"[A-Z0-9]{1,8}", plate):
        raise InvalidIdentifier(kind, value, "a plate is 1 to 8 letters and digits")
    return Identifier(kind, f"{code}:{plate}", f"{plate} ({code})", {"state": code})


_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    "A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 6, "G": 7, "H": 8,
    "J": 1, "K": 2, "L": 3, "M": 4, "N": 5, "P": 7, "R": 9,
    "S": 2, "T": 3, "U": 4, "V": 5, "W": 6, "X": 7, "Y": 8, "Z": 9,
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def vin_check_digit(vin: str) -> str:
    """The North American check digit (49 CFR 565.15) for a 17-character VIN."""
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def _vin(value: str, **_: Any) -> Identifier:
    """A vehicle identification number: 17 characters, no I/O/Q, check digit verified.

    Every vehicle built for sale in the US or Canada since model year 1981 carries the
    position-9 check digit, so a mismatch almost always means a misread character.
    """
    kind = "vin"
    vin = re.sub(r"[\s\-]", "", _text(kind, value)).upper()
    if len(vin) != 17:
        raise InvalidIdentifier(kind, value, f"a VIN has 17 characters, this has {len(vin)}")
    bad = sorted({c for c in vin if c in "IOQ"})
    if bad:
        raise InvalidIdentifier(
            kind, value, f"a VIN never contains I, O or Q (found {', '.join(bad)})"
        )
    if not all(c in _VIN_VALUES for c in vin):
        raise InvalidIdentifier(kind, value, "a VIN has only letters and digits")
    expected = vin_check_digit(vin)
    if vin[8] != expected:
        raise InvalidIdentifier(
            kind, value,
            f"VIN check digit (9th character) is {vin[8]} but should be {expected}: "
            "a character is probably misread",
        )
    return Identifier(kind, vin, vin, {"wmi": vin[:3], "model_year_code": vin[9]})


# ---------------------------------------------------------------------------
# bank_account
# ---------------------------------------------------------------------------


def aba_checksum_ok(routing: str) -> bool:
    """The ABA routing-number checksum: 3-7-1 weights, sum divisible by 10."""
    if not re.fullmatch(r"\d{9}", routing):
        return False
    d = [int(c) for c in routing]
    total = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])
    return total % 10 == 0


def _iban_ok(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(c, 36)) for c in rearranged)
    return int(digits) % 97 == 1


def _bank_account(value: str, *, routing: str | None = None, **_: Any) -> Identifier:
    """A US account as ``routing:account`` (``021000021:123456789``) or an IBAN.

    The routing number is an ABA number (9 digits, checksum verified, a Federal Reserve
    prefix 00-12, 21-32, 61-72 or 80); the account number is 4 to 17 digits (the NACHA
    field width), spaces and hyphens removed, leading zeros kept. An IBAN is checked
    with its mod-97 check digits and stored without spaces.
    """
    kind = "bank_account"
    raw = _text(kind, value)
    compact = re.sub(r"[\s\-]", "", raw).upper()
    if routing is None and re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", compact):
        if not 15 <= len(compact) <= 34:
            raise InvalidIdentifier(kind, value, "an IBAN has 15 to 34 characters")
        if not _iban_ok(compact):
            raise InvalidIdentifier(
                kind, value, "IBAN check digits do not match: a character is wrong"
            )
        display = " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))
        return Identifier(kind, compact, display, {"iban_country": compact[:2]})
    account = raw
    if routing is None:
        parts = re.split(r"[:/]", raw, maxsplit=1)
        if len(parts) != 2:
            raise InvalidIdentifier(
                kind, value,
                "a bank account needs its routing number and account number "
                "(routing:account) or an IBAN",
            )
        routing, account = parts
    routing = re.sub(r"[\s\-]", "", str(routing))
    if not re.fullmatch(r"\d{9}", routing):
        raise InvalidIdentifier(kind, value, "a routing number has 9 digits")
    if not aba_checksum_ok(routing):
        raise InvalidIdentifier(kind, value, "routing number checksum fails: a digit is wrong")
    prefix = int(routing[:2])
    if not (prefix <= 12 or 21 <= prefix <= 32 or 61 <= prefix <= 72 or prefix == 80):
        raise InvalidIdentifier(kind, value, f"no routing number starts with {routing[:2]}")
    account = re.sub(r"[\s\-]", "", account)
    if not re.fullmatch(r"\d{4,17}", account):
        raise InvalidIdentifier(kind, value, "an account number has 4 to 17 digits")
    return Identifier(
        kind, f"{routing}:{account}", f"routing {routing} account {account}",
        {"routing": routing, "account": account},
    )


# ---------------------------------------------------------------------------
# crypto_wallet
# ---------------------------------------------------------------------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


def _dsha256(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def encode_base58check(payload: bytes) -> str:
    """Base58Check text for ``payload`` (version byte included) with its checksum."""
    data = payload + _dsha256(payload)[:4]
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def _decode_base58check(text: str) -> bytes | None:
    """The payload (version byte included) if the checksum matches, else None."""
    n = 0
    for c in text:
        if c not in _B58_INDEX:
            return None
        n = n * 58 + _B58_INDEX[c]
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    data = b"\0" * pad + body
    if len(data) < 5 or _dsha256(data[:-4])[:4] != data[-4:]:
        return None
    return data[:-4]


# Bech32 / Bech32m (BIP-173, BIP-350), after the reference implementation.
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32M_CONST = 0x2BC830A3


def _bech32_polymod(values: Iterable[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= generator[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: Iterable[int], frombits: int, tobits: int, pad: bool) -> list[int] | None:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    max_acc = (1 << (frombits + tobits - 1)) - 1
    for v in data:
        if v < 0 or v >> frombits:
            return None
        acc = ((acc << frombits) | v) & max_acc
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        return None
    return out


def encode_segwit_address(hrp: str, witness_version: int, program: bytes) -> str:
    """A bech32 (v0) or bech32m (v1+) segwit address, e.g. ``bc1q...``."""
    data = [witness_version] + (_convert_bits(program, 8, 5, True) or [])
    const = 1 if witness_version == 0 else _BECH32M_CONST
    polymod = _bech32_polymod(_hrp_expand(hrp) + data + [0] * 6) ^ const
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32[d] for d in data + checksum)


def _segwit_problem(addr: str) -> str | None:
    """None for a valid mainnet segwit address, else the reason it is not one."""
    if addr.lower() != addr and addr.upper() != addr:
        return "a bc1 address is all lower case or all upper case, not mixed"
    addr = addr.lower()
    pos = addr.rfind("1")
    if pos < 1 or pos + 7 > len(addr) or len(addr) > 90:
        return "not a bech32 address"
    hrp, rest = addr[:pos], addr[pos + 1:]
    if hrp != "bc":
        return "a testnet address" if hrp in ("tb", "bcrt") else "not a bitcoin address"
    if any(c not in _BECH32 for c in rest):
        return "a bc1 address has a character outside the bech32 alphabet"
    data = [_BECH32.index(c) for c in rest]
    const = _bech32_polymod(_hrp_expand(hrp) + data)
    if const not in (1, _BECH32M_CONST):
        return "bitcoin address checksum does not match: a character is wrong"
    version = data[0]
    program = _convert_bits(data[1:-6], 5, 8, False)
    if program is None or not 2 <= len(program) <= 40 or version > 16:
        return "not a valid segwit program"
    if version == 0 and len(program) not in (20, 32):
        return "not a valid segwit program"
    if (version == 0) != (const == 1):
        return "bitcoin address checksum does not match: a character is wrong"
    return None


def to_checksum_address(address: str) -> str:
    """The EIP-55 mixed-case form of a 0x-prefixed Ethereum address."""
    hex_part = address[2:].lower()
    digest = keccak.new(digest_bits=256, data=hex_part.encode("ascii")).hexdigest()
    pairs = zip(hex_part, digest[:40], strict=True)
    return "0x" + "".join(c.upper() if c.isalpha() and int(h, 16) >= 8 else c for c, h in pairs)


_CHAINS = {
    "btc": "btc", "bitcoin": "btc", "xbt": "btc",
    "eth": "eth", "ethereum": "eth", "erc20": "eth", "usdt-erc20": "eth",
    "trx": "trx", "tron": "trx", "trc20": "trx", "usdt-trc20": "trx",
}


def _crypto_wallet(value: str, *, chain: str | None = None, **_: Any) -> Identifier:
    """A cryptocurrency address with its chain: ``btc:<addr>``, ``eth:<addr>``, ``trx:<addr>``.

    Bitcoin: legacy Base58Check (P2PKH ``1...``, P2SH ``3...``) and segwit bech32/bech32m
    (``bc1...``), checksums verified; testnet refused; bc1 addresses lowercased.
    Ethereum (and ERC-20 tokens): ``0x`` + 40 hex, stored lowercased; a mixed-case
    address must pass its EIP-55 checksum (keccak-256 from pycryptodome). Tron (where
    USDT-TRC20 moves): Base58Check ``T...`` with version byte 0x41. The chain is taken
    from ``chain=``, a ``btc:``/``bitcoin:`` style prefix, or the address's shape.
    """
    kind = "crypto_wallet"
    raw = _text(kind, value)
    addr = raw
    m = re.match(r"^([a-z0-9-]+):(?!//)(.+)$", raw, re.IGNORECASE)
    if m and m.group(1).lower() in _CHAINS:
        chain = chain or m.group(1)
        addr = m.group(2).split("?", 1)[0].strip()  # BIP-21 / EIP-681 URIs carry ?amount=
    if chain is not None:
        code = _CHAINS.get(str(chain).strip().lower())
        if code is None:
            raise InvalidIdentifier(kind, value, f"unsupported chain {chain!r} (btc, eth or trx)")
    elif addr[:2].lower() == "0x":
        code = "eth"
    elif addr[:1] == "T":
        code = "trx"
    elif addr[:3].lower() in ("bc1", "tb1") or addr[:1] in "123mn":
        code = "btc"
    else:
        raise InvalidIdentifier(kind, value, "not a bitcoin, ethereum or tron address")

    if code == "eth":
        if not re.fullmatch(r"0[xX][0-9a-fA-F]{40}", addr):
            raise InvalidIdentifier(kind, value, "an ethereum address is 0x and 40 hex digits")
        body = addr[2:]
        mixed_case = body not in (body.lower(), body.upper())
        if mixed_case and to_checksum_address("0x" + body) != "0x" + body:
            raise InvalidIdentifier(
                kind, value,
                "ethereum address checksum (EIP-55) does not match: a character is wrong",
            )
        lowered = "0x" + body.lower()
        return Identifier(kind, f"eth:{lowered}", to_checksum_address(lowered), {"chain": "eth"})

    if code == "btc" and addr[:3].lower() in ("bc1", "tb1", "bcr"):
        problem = _segwit_problem(addr)
        if problem:
            raise InvalidIdentifier(kind, value, problem)
        addr = addr.lower()
        return Identifier(kind, f"btc:{addr}", addr, {"chain": "btc", "type": "segwit"})

    payload = _decode_base58check(addr)
    if payload is None:
        raise InvalidIdentifier(
            kind, value, f"{code} address checksum does not match: a character is wrong"
        )
    if code == "btc":
        if len(payload) != 21:
            raise InvalidIdentifier(kind, value, "not a bitcoin address")
        if payload[0] in (0x6F, 0xC4):
            raise InvalidIdentifier(kind, value, "a testnet address")
        kinds = {0x00: "p2pkh", 0x05: "p2sh"}
        if payload[0] not in kinds:
            raise InvalidIdentifier(kind, value, "not a bitcoin address")
        return Identifier(kind, f"btc:{addr}", addr, {"chain": "btc", "type": kinds[payload[0]]})
    if len(payload) != 21 or payload[0] != 0x41:
        raise InvalidIdentifier(kind, value, "not a tron address")
    return Identifier(kind, f"trx:{addr}", addr, {"chain": "trx"})


# ---------------------------------------------------------------------------
# online_account, ad, url
# ---------------------------------------------------------------------------

#: Known platforms and how investigators (and URLs) name them.
_PLATFORM_ALIASES: Mapping[str, str] = {
    "ig": "instagram", "insta": "instagram", "instagram": "instagram",
    "instagramcom": "instagram",
    "x": "twitter", "xcom": "twitter", "twitter": "twitter", "twittercom": "twitter",
    "fb": "facebook", "facebook": "facebook", "facebookcom": "facebook", "fbcom": "facebook",
    "messenger": "facebook",
    "tt": "tiktok", "tiktok": "tiktok", "tiktokcom": "tiktok",
    "snap": "snapchat", "sc": "snapchat", "snapchat": "snapchat", "snapchatcom": "snapchat",
    "tg": "telegram", "telegram": "telegram", "tme": "telegram", "telegramme": "telegram",
    "wa": "whatsapp", "whatsapp": "whatsapp", "wame": "whatsapp",
    "cashapp": "cashapp", "cash": "cashapp", "squarecash": "cashapp", "cashtag": "cashapp",
    "venmo": "venmo", "venmocom": "venmo",
    "paypal": "paypal", "paypalme": "paypal", "paypalcom": "paypal",
    "reddit": "reddit", "redditcom": "reddit",
    "discord": "discord", "kik": "kik", "youtube": "youtube", "yt": "youtube",
    "onlyfans": "onlyfans", "onlyfanscom": "onlyfans",
}
#: Platforms whose handles are case-insensitive (the same account whatever the case).
#: Unknown platforms keep the case as written: merging two accounts is worse than missing one.
_CASE_INSENSITIVE = frozenset({
    "instagram", "twitter", "facebook", "tiktok", "snapchat", "telegram", "cashapp", "venmo",
    "paypal", "reddit", "discord", "kik", "youtube", "onlyfans",
})
_HANDLE_RULES: Mapping[str, tuple[str, str]] = {
    "instagram": (r"[a-z0-9._]{1,30}", "an Instagram handle is 1-30 letters, digits, . or _"),
    "twitter": (r"[a-z0-9_]{1,15}", "an X/Twitter handle is 1-15 letters, digits or _"),
    "telegram": (r"[a-z0-9_]{4,32}", "a Telegram username is 4-32 letters, digits or _"),
    "cashapp": (r"[a-z0-9_-]{1,20}", "a $cashtag is up to 20 letters and digits"),
}
_URL_PATH_PREFIXES = frozenset({"u", "user", "add", "people", "profile", "c", "channel"})


def _platform(kind: str, value: object, text: str) -> str:
    t = _fold(str(text)).strip().lower()
    if not t:
        raise InvalidIdentifier(kind, value, "the platform is required")
    squashed = re.sub(r"[^a-z0-9]", "", t.removeprefix("www."))
    if t in _PLATFORM_ALIASES:
        return _PLATFORM_ALIASES[t]
    if squashed in _PLATFORM_ALIASES:
        return _PLATFORM_ALIASES[squashed]
    if not squashed:
        raise InvalidIdentifier(kind, value, "the platform name is not valid")
    return squashed


def _online_account(value: str, *, platform: str | None = None, region: str = "US",
                    **_: Any) -> Identifier:
    """An account on an online platform: ``instagram:handle``.

    The platform is named (``platform="IG"``), prefixed (``ig:@handle``) or read from a
    profile URL (``https://www.instagram.com/handle/``); aliases are mapped (ig ->
    instagram, x -> twitter, cash app -> cashapp). The handle loses its ``@`` (and a
    cashtag its ``$``) and is lowercased on platforms whose handles ignore case.
    WhatsApp accounts are phone numbers and are stored in E.164.
    """
    kind = "online_account"
    raw = _text(kind, value)
    handle = raw
    if re.match(r"^(https?://|www\.)", raw, re.IGNORECASE):
        parts = urlsplit(raw if "://" in raw else "https://" + raw)
        host_platform = _platform(kind, value, (parts.hostname or "").removeprefix("www."))
        platform = platform or host_platform
        segments = [unquote(s) for s in parts.path.split("/") if s]
        while segments and segments[0].lower() in _URL_PATH_PREFIXES:
            segments.pop(0)
        if not segments:
            raise InvalidIdentifier(kind, value, "the profile URL has no handle in it")
        handle = segments[0]
    elif platform is None and ":" in raw:
        platform, handle = raw.split(":", 1)
    if platform is None:
        raise InvalidIdentifier(
            kind, value, "an online account needs its platform (e.g. instagram)"
        )
    name = _platform(kind, value, platform)
    handle = handle.strip().lstrip("@")
    if name == "cashapp":
        handle = handle.lstrip("$")
    if name == "whatsapp":
        try:
            phone = _phone(handle, region=region)
        except InvalidIdentifier as exc:
            raise InvalidIdentifier(kind, value, f"WhatsApp account: {exc.reason}") from None
        return Identifier(kind, f"whatsapp:{phone.value}", f"WhatsApp {phone.display}",
                          {"platform": name, "handle": phone.value})
    if not handle:
        raise InvalidIdentifier(kind, value, "the handle is empty")
    if re.search(r"\s", handle) or len(handle) > 100:
        raise InvalidIdentifier(kind, value, "a handle has no spaces and at most 100 characters")
    if name in _CASE_INSENSITIVE:
        handle = handle.lower()
    rule = _HANDLE_RULES.get(name)
    if rule and not re.fullmatch(rule[0], handle):
        raise InvalidIdentifier(kind, value, rule[1])
    shown = f"${handle}" if name == "cashapp" else f"@{handle}"
    return Identifier(kind, f"{name}:{handle}", f"{shown} on {name}",
                      {"platform": name, "handle": handle})


def _ad(value: str, *, platform: str | None = None, **_: Any) -> Identifier:
    """An online ad by platform and the platform's ad id: ``ad:<platform>:<id>``.

    Written ``platform="listcity", value="12345"``, ``listcity:12345`` or its canonical
    ``ad:listcity:12345``. The id keeps its case (some sites' ids are case-sensitive).
    """
    kind = "ad"
    raw = _text(kind, value)
    ad_id = raw
    if platform is None:
        text = raw[3:] if raw.lower().startswith("ad:") else raw
        if ":" not in text:
            raise InvalidIdentifier(kind, value, "an ad needs its platform and ad id (platform:id)")
        platform, ad_id = text.split(":", 1)
    name = _platform(kind, value, platform)
    ad_id = ad_id.strip()
    if not re.fullmatch(r"[A-Za-z0-9._~-]{1,100}", ad_id):
        raise InvalidIdentifier(
            kind, value, "an ad id is up to 100 letters, digits, '.', '_' or '-'"
        )
    return Identifier(kind, f"ad:{name}:{ad_id}", f"ad {ad_id} on {name}",
                      {"platform": name, "ad_id": ad_id})


#: Query parameters that only track the click and never change the page.
_TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "ttclid",
    "igshid", "igsh", "mc_cid", "mc_eid", "_ga", "_gl",
})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _url(value: str, **_: Any) -> Identifier:
    """A web address: scheme and host lowercased, default port, fragment and tracking dropped.

    ``HTTPS://Example.COM:443/Ad/123?utm_source=x&id=7#photos`` ->
    ``https://example.com/Ad/123?id=7``. The path keeps its case; other query
    parameters keep their order and encoding. Without a scheme, https is assumed.
    """
    kind = "url"
    raw = _text(kind, value)
    if re.search(r"\s", raw):
        raise InvalidIdentifier(kind, value, "a web address has no spaces")
    text = raw
    if text.startswith("//"):
        text = "https:" + text
    elif not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        text = "https://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidIdentifier(kind, value, "only http and https addresses are accepted")
    if not parts.hostname:
        raise InvalidIdentifier(kind, value, "the web address has no host")
    try:
        port = parts.port
    except ValueError:
        raise InvalidIdentifier(kind, value, "the port is not a number from 0 to 65535") from None
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    elif not re.fullmatch(r"[\d.]+", host) and host != "localhost":
        host = _domain(kind, value, host)
    netloc = host
    if parts.username is not None:
        auth = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{auth}@{host}"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    kept = [
        p for p in parts.query.split("&")
        if p and not (
            unquote(p.split("=", 1)[0]).lower().startswith("utm_")
            or unquote(p.split("=", 1)[0]).lower() in _TRACKING_PARAMS
        )
    ]
    canonical = urlunsplit((scheme, netloc, parts.path or "/", "&".join(kept), ""))
    return Identifier(kind, canonical, canonical, {"host": host})


# ---------------------------------------------------------------------------
# address
# ---------------------------------------------------------------------------

#: USPS Publication 28 Appendix C1 street suffixes (common ones and their usual spellings).
_STREET_SUFFIXES: Mapping[str, str] = {
    "ALLEY": "ALY", "ALY": "ALY", "AVENUE": "AVE", "AVE": "AVE", "AV": "AVE", "AVN": "AVE",
    "BOULEVARD": "BLVD", "BLVD": "BLVD", "BOUL": "BLVD", "BEND": "BND", "BND": "BND",
    "CIRCLE": "CIR", "CIR": "CIR", "CIRC": "CIR", "CRCL": "CIR",
    "COURT": "CT", "CT": "CT", "COVE": "CV", "CV": "CV", "CRESCENT": "CRES", "CRES": "CRES",
    "CROSSING": "XING", "XING": "XING", "DRIVE": "DR", "DR": "DR", "DRV": "DR",
    "EXPRESSWAY": "EXPY", "EXPY": "EXPY", "FREEWAY": "FWY", "FWY": "FWY",
    "HIGHWAY": "HWY", "HWY": "HWY", "HEIGHTS": "HTS", "HTS": "HTS",
    "LANE": "LN", "LN": "LN", "LOOP": "LOOP", "PARKWAY": "PKWY", "PKWY": "PKWY", "PKY": "PKWY",
    "PLACE": "PL", "PL": "PL", "PLAZA": "PLZ", "PLZ": "PLZ", "POINT": "PT", "PT": "PT",
    "ROAD": "RD", "RD": "RD", "ROUTE": "RTE", "RTE": "RTE", "SQUARE": "SQ", "SQ": "SQ",
    "STREET": "ST", "ST": "ST", "STR": "ST", "STRT": "ST", "TERRACE": "TER", "TER": "TER",
    "TRAIL": "TRL", "TRL": "TRL", "TURNPIKE": "TPKE", "TPKE": "TPKE", "WAY": "WAY",
    "CENTER": "CTR", "CTR": "CTR",
}
#: Pub. 28 directionals.
_DIRECTIONALS: Mapping[str, str] = {
    "NORTH": "N", "SOUTH": "S", "EAST": "E", "WEST": "W", "NORTHEAST": "NE",
    "NORTHWEST": "NW", "SOUTHEAST": "SE", "SOUTHWEST": "SW",
    **{d: d for d in ("N", "S", "E", "W", "NE", "NW", "SE", "SW")},
}
#: Pub. 28 Appendix C2 secondary-unit designators that take a unit number.
_UNIT_DESIGNATORS: Mapping[str, str] = {
    "APARTMENT": "APT", "APT": "APT", "SUITE": "STE", "STE": "STE", "UNIT": "UNIT",
    "ROOM": "RM", "RM": "RM", "BUILDING": "BLDG", "BLDG": "BLDG", "FLOOR": "FL", "FL": "FL",
    "LOT": "LOT", "SPACE": "SPC", "SPC": "SPC", "TRAILER": "TRLR", "TRLR": "TRLR",
    "OFFICE": "OFC", "OFC": "OFC", "DEPARTMENT": "DEPT", "DEPT": "DEPT", "#": "#",
}
#: USPS city names spell these out (SAINT LOUIS, FORT WORTH, MOUNT VERNON).
_CITY_FIRST_WORD = {"ST": "SAINT", "FT": "FORT", "MT": "MOUNT"}
_ZIP_RE = re.compile(r"^(\d{5})(?:-?(\d{4}))?$")


def _address_tokens(text: str) -> list[str]:
    t = _fold(text).upper().replace("'", "").replace(".", "")
    t = t.replace("#", " # ")
    t = re.sub(r"[^A-Z0-9#/\- ]", " ", t)
    return [tok for tok in t.split() if tok.strip("-")]


def _split_unit(tokens: list[str]) -> tuple[list[str], list[str]]:
    """Street tokens and unit tokens (designator + one id, e.g. APT 4, APT # 4, # 4)."""
    for i, tok in enumerate(tokens):
        if i >= 2 and tok in _UNIT_DESIGNATORS:
            rest = [t for t in tokens[i + 1:] if t != "#"]
            if len(rest) == 1:
                return tokens[:i], tokens[i:]
    return tokens, []


def _format_unit(tokens: list[str]) -> str:
    if not tokens:
        return ""
    designator = _UNIT_DESIGNATORS[tokens[0]]
    rest = [t for t in tokens[1:] if t != "#"]
    if not rest:
        return ""
    return f"{designator} {' '.join(rest)}"


def _format_street(tokens: list[str]) -> str:
    joined = " ".join(tokens)
    if re.match(r"^(P O|PO|POST OFFICE) BOX\b", joined):
        return re.sub(r"^(P O|PO|POST OFFICE) BOX\b", "PO BOX", joined)
    i = 0
    out: list[str] = []
    while i < len(tokens) and (tokens[i][0].isdigit() or re.fullmatch(r"\d+/\d+", tokens[i])):
        out.append(tokens[i])
        i += 1
    body = tokens[i:]
    pre = post = None
    # A pre-directional, unless it is the street's name itself ("123 NORTH ST").
    if len(body) >= 2 and body[0] in _DIRECTIONALS and not (
        len(body) == 2 and body[1] in _STREET_SUFFIXES
    ):
        pre, body = _DIRECTIONALS[body[0]], body[1:]
    if len(body) >= 2 and body[-1] in _DIRECTIONALS:
        post, body = _DIRECTIONALS[body[-1]], body[:-1]
    if len(body) >= 2 and body[-1] in _STREET_SUFFIXES:
        body = [*body[:-1], _STREET_SUFFIXES[body[-1]]]
    return " ".join(out + ([pre] if pre else []) + body + ([post] if post else []))


def _address(value: str, *, region: str = "US", **_: Any) -> Identifier:
    """A US postal address in a compact USPS-style form.

    ``123 North Main Street, Apt. 4, Springfield, Illinois 62701-1234`` ->
    ``123 N MAIN ST APT 4, SPRINGFIELD, IL 62701``: uppercased, accents and punctuation
    removed, USPS suffixes, directionals and unit designators abbreviated (Pub. 28),
    state as its USPS code, ZIP to five digits (the +4 kept in ``details["zip4"]`` and
    the display). The parts are separated by commas; without commas, the street is taken
    to end at its suffix (``ST``, ``AVE``...) and unit. No geocoding.
    """
    kind = "address"
    raw = _text(kind, value)
    if region.upper() != "US":
        raise InvalidIdentifier(kind, value, "only US addresses can be normalized")
    parts = [_address_tokens(p) for p in raw.split(",")]
    parts = [p for p in parts if p]
    if not parts:
        raise InvalidIdentifier(kind, value, "an address is required")
    last = parts[-1]
    for country in (["UNITED", "STATES", "OF", "AMERICA"], ["UNITED", "STATES"], ["USA"], ["US"]):
        if len(parts) > 1 and last[-len(country):] == country:
            del last[-len(country):]
            break
    if not last:
        parts.pop()
        last = parts[-1] if parts else []
    zip5 = zip4 = ""
    if last and _ZIP_RE.match(last[-1]):
        match = _ZIP_RE.match(last.pop())
        assert match is not None
        zip5, zip4 = match.group(1), match.group(2) or ""
        if not last:
            parts.pop()
            last = parts[-1] if parts else []
    state = None
    for size in (4, 3, 2, 1):
        if len(last) >= size:
            state = _state_code(" ".join(last[-size:]), plates=False)
            if state:
                del last[-size:]
                break
    if state is None:
        raise InvalidIdentifier(
            kind, value, "an address needs a city and state (e.g. 'Springfield, IL')"
        )
    if not last:  # the state (and ZIP) had a part of their own: the city is before it
        parts.pop()
    if len(parts) >= 2:
        city, street_parts = parts[-1], parts[:-1]
    else:
        # One part left for street and city: the street ends with its suffix (and unit).
        tokens = parts[-1] if parts else []
        first = 2 if tokens and tokens[0][0].isdigit() else 1
        end = next(
            (i + 1 for i, t in enumerate(tokens) if i >= first and t in _STREET_SUFFIXES), None
        )
        if end is None:
            if not any(t[0].isdigit() for t in tokens):
                raise InvalidIdentifier(
                    kind, value, "an address needs a street (e.g. '123 Main St')"
                )
            raise InvalidIdentifier(kind, value, "separate the street from the city with a comma")
        if end < len(tokens) and tokens[end] in _DIRECTIONALS and end + 1 < len(tokens):
            end += 1
        if end + 1 < len(tokens) and tokens[end] in _UNIT_DESIGNATORS:
            end += 2
        street_parts, city = [tokens[:end]], tokens[end:]
    if not city:
        raise InvalidIdentifier(
            kind, value, "an address needs a city and state (e.g. 'Springfield, IL')"
        )
    if not street_parts:
        raise InvalidIdentifier(kind, value, "an address needs a street (e.g. '123 Main St')")
    # A place name written before the street ("Sunset Motel, 1420 N Lincoln Ave") is
    # not part of the address: kept in details, left out of the value.
    place = []
    while len(street_parts) > 1 and not street_parts[0][0][0].isdigit() and any(
        p[0][0].isdigit() for p in street_parts[1:]
    ) and street_parts[0][0] not in _UNIT_DESIGNATORS:
        place.append(" ".join(street_parts.pop(0)))
    street_tokens: list[str] = []
    unit_tokens: list[str] = []
    for part in street_parts:
        if part[0] in _UNIT_DESIGNATORS and len(part) > 1 and not unit_tokens:
            unit_tokens = part
            continue
        s, u = _split_unit(part)
        street_tokens += s
        if u and not unit_tokens:
            unit_tokens = u
    if not street_tokens:
        raise InvalidIdentifier(kind, value, "an address needs a street (e.g. '123 Main St')")
    street = _format_street(street_tokens)
    unit = _format_unit(unit_tokens)
    city = [_CITY_FIRST_WORD.get(city[0], city[0]), *city[1:]]
    city_text = " ".join(city)
    line = f"{street} {unit}".strip()
    canonical = f"{line}, {city_text}, {state}" + (f" {zip5}" if zip5 else "")
    display = canonical + (f"-{zip4}" if zip4 else "")
    details = {"street": street, "city": city_text, "state": state}
    if unit:
        details["unit"] = unit
    if zip5:
        details["zip"] = zip5
    if zip4:
        details["zip4"] = zip4
    if place:
        details["place"] = ", ".join(place)
    return Identifier(kind, canonical, display, details)


# ---------------------------------------------------------------------------
# person
# ---------------------------------------------------------------------------


def parse_date_of_birth(value: date | datetime | str) -> date:
    """A date of birth from a date, ``YYYY-MM-DD`` or US ``MM/DD/YYYY``.

    Two-digit years are refused (1905 or 2005?); so are dates before 1900 or in the future.
    """
    if isinstance(value, datetime):
        dob = value.date()
    elif isinstance(value, date):
        dob = value
    else:
        text = str(value).strip()
        try:
            if m := re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", text):
                dob = date(int(m[1]), int(m[2]), int(m[3]))
            elif m := re.fullmatch(r"(\d{1,2})[/-](\d{1,2})[/-](\d{4})", text):
                dob = date(int(m[3]), int(m[1]), int(m[2]))
            else:
                raise InvalidIdentifier(
                    "person", value, "a date of birth is written YYYY-MM-DD or MM/DD/YYYY"
                )
        except ValueError as exc:
            if isinstance(exc, InvalidIdentifier):
                raise
            raise InvalidIdentifier("person", value, "that date of birth does not exist") from None
    if dob.year < 1900 or dob > date.today():
        raise InvalidIdentifier("person", value, "the date of birth is not plausible")
    return dob


def person_name_tokens(name: str) -> tuple[list[str], str | None]:
    """The name's words (uppercased, accents folded, punctuation removed) and the
    surname when written ``Last, First``."""
    text = _fold(str(name)).upper().replace("'", "")
    if re.search(r"\d", text):
        raise InvalidIdentifier("person", name, "a name has no digits")
    surname = None
    if "," in text:
        last, first = text.split(",", 1)
        last_tokens = re.sub(r"[^A-Z]+", " ", last).split()
        surname = " ".join(last_tokens) or None
        tokens = last_tokens + re.sub(r"[^A-Z]+", " ", first).split()
    else:
        tokens = re.sub(r"[^A-Z]+", " ", text).split()
    return tokens, surname


def _person(value: str, *, dob: date | str | None = None, **_: Any) -> Identifier:
    """A person by name and date of birth: ``JOHN|SMITH|1990-04-12``.

    The name's words are uppercased, accents folded (José -> JOSE), punctuation dropped
    (O'Brien -> OBRIEN, Garcia-Lopez -> GARCIA LOPEZ) and *sorted*, so "John Smith",
    "Smith John" and "Smith, John" are one person. Sorting costs the surname/given
    order, so when written ``Last, First`` the surname is kept in ``details``; the
    display is the name as written. The date of birth is given as ``dob=`` or after a
    ``|`` (``John Smith|1990-04-12``).
    Near matches (Jon Smyth, a year off) are the job of ``person_blocking_keys``.
    """
    kind = "person"
    raw = _text(kind, value)
    name = raw
    if dob is None and "|" in raw:
        *name_parts, dob_text = raw.split("|")
        name, dob = " ".join(name_parts), dob_text
    if dob is None or not str(dob).strip():
        raise InvalidIdentifier(kind, value, "a person identifier needs a date of birth")
    try:
        born = parse_date_of_birth(dob)
        tokens, surname = person_name_tokens(name)
    except InvalidIdentifier as exc:  # report the whole input, not just its part
        raise InvalidIdentifier(kind, value, exc.reason) from None
    if not tokens:
        raise InvalidIdentifier(kind, value, "the name is empty")
    canonical = "|".join(sorted(tokens)) + "|" + born.isoformat()
    shown = re.sub(r"\s+", " ", name).strip()  # the name as written, e.g. "Smith, John"
    details = {"name": " ".join(tokens), "dob": born.isoformat()}
    if surname:
        details["surname"] = surname
    return Identifier(kind, canonical, f"{shown} (DOB {born.isoformat()})", details)


def age_on(dob: date | str, on_date: date | str) -> int:
    """Completed years of age on ``on_date``.

    A 29 February birthday is reached on 1 March in common years, the later of the
    usual legal readings, so a person is treated as a minor for longer, not shorter.
    """
    born = parse_date_of_birth(dob)
    if isinstance(on_date, datetime):
        on = on_date.date()
    elif isinstance(on_date, date):
        on = on_date
    else:
        on = date.fromisoformat(str(on_date).strip())
    if on < born:
        raise ValueError(f"{on.isoformat()} is before the date of birth {born.isoformat()}")
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def minor_on(dob: date | str, on_date: date | str) -> bool:
    """True when the person was under 18 on ``on_date``."""
    return age_on(dob, on_date) < 18


# Blocking scheme for fuzzy person matching ------------------------------------
#
# A stored person gets keys  "<birth year>|<algo>|<code>+<code>"  for every pair of
# distinct name words (one key per word when the name is one word), for two phonetic
# codes of each word: American Soundex ("sx", robust to vowel and doubled-letter
# changes: Jon/John, Smith/Smyth) and Metaphone ("mp", robust to first-letter
# spellings Soundex misses: Catherine/Katherine). Pairs make a key specific (a shared
# first name alone puts no one in the same block) while tolerating word order and an
# extra or missing middle name (John Paul Smith still shares JOHN+SMITH). Initials
# (one-letter words) are skipped. Stored rows carry only their own birth year;
# a query asks for its year-1, year and year+1 (person_query_keys), which finds a
# one-year slip in either direction without storing three times as many keys.
# Candidates from the block are then scored with name_similarity.


def _phonetic_codes(token: str) -> dict[str, str]:
    return {"sx": jellyfish.soundex(token), "mp": jellyfish.metaphone(token) or token}


def _name_keys(name: str, year: int) -> set[str]:
    tokens, _surname = person_name_tokens(name)
    words = sorted({t for t in tokens if len(t) > 1})
    keys: set[str] = set()
    for algo in ("sx", "mp"):
        codes = sorted({_phonetic_codes(w)[algo] for w in words})
        if len(codes) == 1:
            keys.add(f"{year}|{algo}|{codes[0]}")
        for a, b in combinations(codes, 2):
            keys.add(f"{year}|{algo}|{a}+{b}")
    return keys


def person_blocking_keys(name: str, dob: date | str) -> set[str]:
    """Keys to store for a person so near-duplicate names with the same birth year meet.

    See the scheme above; "Jon Smith" and "John Smyth" born in 1990 share
    ``1990|sx|J500+S530``.
    """
    return _name_keys(name, parse_date_of_birth(dob).year)


def person_query_keys(name: str, dob: date | str) -> set[str]:
    """Keys to look up for a person: the stored keys for birth years year-1..year+1."""
    year = parse_date_of_birth(dob).year
    return set().union(*(_name_keys(name, y) for y in (year - 1, year, year + 1)))


def name_similarity(a: str, b: str) -> float:
    """How alike two names are, from 0.0 to 1.0, ignoring word order, case and accents.

    rapidfuzz's ``token_sort_ratio`` on the normalized words: word order does not
    matter (Smith, John = John Smith) and every letter counts. ``WRatio`` and
    ``token_set_ratio`` were not chosen: their partial/subset matching scores
    "Maria" against "Maria Garcia Lopez" as 90-100, which would flood an
    investigator with false matches on common first names.
    """
    ta, _ = person_name_tokens(a)
    tb, _ = person_name_tokens(b)
    if not ta or not tb:
        return 0.0
    return fuzz.token_sort_ratio(" ".join(ta), " ".join(tb)) / 100.0


# ---------------------------------------------------------------------------
# Registry and entry point
# ---------------------------------------------------------------------------

#: kind -> normalizer. Each takes ``(value, *, region=..., **extra)``.
KINDS: Mapping[str, Normalizer] = {
    "phone": _phone,
    "email": _email,
    "bank_account": _bank_account,
    "crypto_wallet": _crypto_wallet,
    "online_account": _online_account,
    "ad": _ad,
    "vehicle_plate": _vehicle_plate,
    "vin": _vin,
    "address": _address,
    "person": _person,
    "url": _url,
}


def normalize(kind: str, value: str, *, region: str = "US", **extra: Any) -> Identifier:
    """Normalize ``value`` as an identifier of ``kind`` or raise ``InvalidIdentifier``.

    ``region`` is the default country for phone numbers (and addresses: US only).
    ``extra`` carries the second part some kinds need: ``state`` (vehicle_plate),
    ``platform`` (online_account, ad), ``routing`` (bank_account), ``chain``
    (crypto_wallet), ``dob`` (person), ``strict`` (phone).
    """
    normalizer = KINDS.get(str(kind).strip().lower())
    if normalizer is None:
        raise InvalidIdentifier(
            str(kind), value, f"unknown identifier kind {kind!r} (one of {', '.join(KINDS)})"
        )
    extra = {k: v for k, v in extra.items() if v is not None}
    return normalizer(value, region=region or "US", **extra)
