"""A synthetic trafficking network for the demo seed, the tests and the benchmarks.

Everything is fictional and deterministic for a seed:

* phone numbers are NANP ``NXX-555-0100..0199`` numbers, the range reserved for
  fiction, on valid area codes (so ``identifiers.normalize("phone", ...)`` accepts
  them under its strict check); only ``generate_large`` runs past that range (see there);
* emails are on ``example.com`` / ``example.org``, web addresses on ``.example``
  hosts (RFC 2606), cell towers on test network MCC 001 / MNC 01;
* names are random pairings of common given names and surnames; routing numbers,
  VINs and wallet addresses are random with valid check digits.

Shapes, in investigators' words:

* ``generate(seed=...)`` -> ``Network``: a few cells, each run by a controller with
  rotating burner phones, a recruiter, victims (some minors), a stash apartment,
  motels, a front business, payment accounts, a vehicle and online ads; buyers who
  call and text the controller's current phone and pay the controller's accounts; a few
  bridges between cells (a shared motel or a shared recruiter, and the controllers
  calling each other on their own, non-burner phones). ``ground_truth(network)`` says what tests may
  assert: the controllers are the key players, the cells are the communities, and a
  known shortest path runs from a buyer to a controller.
* ``iter_call_records`` / ``iter_bank_records``: call detail records and a bank
  statement consistent with the network, as streams in constant memory (1,000,000
  rows is fine).
* ``generate_large(n_entities, n_links, seed)``: entity and link rows for a
  1,000,000-entity / 5,000,000-link graph as re-iterable streams, never held in memory.

Pure Python, no Flask.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from itertools import accumulate
from typing import Any, NamedTuple

import phonenumbers

from taskforce.graph.identifiers import (
    encode_base58check,
    encode_segwit_address,
    minor_on,
    to_checksum_address,
    vin_check_digit,
)

__all__ = [
    "ENTITY_KINDS",
    "LINK_TYPES",
    "BankRecord",
    "CallRecord",
    "Cell",
    "GroundTruth",
    "LargeGraph",
    "Network",
    "SynthEntity",
    "SynthLink",
    "generate",
    "generate_large",
    "ground_truth",
    "iter_bank_records",
    "iter_call_records",
]

LINK_TYPES = (
    "CALLED", "TEXTED", "PAID", "OWNS", "USES", "LIVES_AT", "STAYED_AT", "WORKS_AT",
    "RECRUITED", "CONTROLS", "ADVERTISED", "ASSOCIATED_WITH",
)
ENTITY_KINDS = ("person", "phone", "location", "business", "account", "vehicle", "ad")


# ---------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------


@dataclass
class SynthEntity:
    """One entity: ``identifiers`` are ``(kind, raw value)`` pairs, written the varied
    ways people write them, each accepted by ``identifiers.normalize``."""

    id: str
    kind: str
    props: dict[str, Any]
    identifiers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class SynthLink:
    """One typed link; ``props`` has ``first_seen``, ``last_seen`` (ISO dates),
    ``count`` and ``amount`` (US dollars, or None)."""

    id: str
    source: str
    target: str
    type: str
    props: dict[str, Any]


@dataclass
class Cell:
    """One controller's organisation: the community the tests expect to find."""

    index: int
    controller: str
    burner_phones: list[str]  # controller's phones, in rotation order
    members: list[str]  # every entity of the cell, the controller included


@dataclass
class Network:
    seed: int
    start: date
    end: date
    entities: dict[str, SynthEntity]
    links: list[SynthLink]
    cells: list[Cell]
    bridges: dict[str, list[int]]  # entity id -> the cells it ties together
    known_path: list[str]  # buyer, buyer's phone, controller's phone, controller
    minors: list[str]  # victims under 18 on the start date

    def by_kind(self, kind: str) -> list[SynthEntity]:
        return [e for e in self.entities.values() if e.kind == kind]

    def by_role(self, role: str) -> list[SynthEntity]:
        return [e for e in self.entities.values() if e.props.get("role") == role]


@dataclass(frozen=True)
class GroundTruth:
    """What tests may assert on a generated network."""

    controllers: list[str]  # the top key players by betweenness, one per cell
    communities: dict[str, int]  # entity id -> cell index
    bridges: dict[str, list[int]]
    path_source: str  # a buyer
    path_target: str  # that buyer's controller
    path: list[str]  # the unique shortest path between them (ignoring direction)
    minors: list[str]


class CallRecord(NamedTuple):
    """One call detail record row (a carrier return, time-ordered)."""

    caller: str  # E.164
    callee: str  # E.164
    start: str  # ISO 8601 local time, seconds
    duration_s: int  # 0 for texts and missed calls
    call_type: str  # "voice" or "sms"
    cell_tower: str | None  # "MCC-MNC-LAC-CI" of the network's phone, when known


class BankRecord(NamedTuple):
    """One bank statement row (date-ordered)."""

    date: str  # ISO date
    amount: str  # "123.45", always positive
    direction: str  # "credit" or "debit"
    counterparty_name: str
    counterparty_account: str  # "routing:account", a handle, or ""
    memo: str


# ---------------------------------------------------------------------------
# Fictional reference data
# ---------------------------------------------------------------------------

GIVEN_NAMES = (
    "James", "Maria", "Robert", "Jennifer", "Michael", "Linda", "David", "Patricia",
    "Marcus", "Aaliyah", "Luis", "Destiny", "Tyrone", "Brianna", "Kevin", "Jasmine",
    "Andre", "Crystal", "Carlos", "Tiffany", "Derek", "Renée", "José", "Zoë",
    "Brandon", "Ashley", "Terrence", "Kayla", "Anthony", "Samantha", "Jamal", "Nicole",
    "Eric", "Alexis", "Darnell", "Monique", "Victor", "Heather", "Omar", "Chantel",
)
SURNAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
    "Rodriguez", "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas",
    "Taylor", "Moore", "Jackson", "Martin", "Lee", "Thompson", "White", "Harris",
    "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Núñez",
    "O'Neal", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Ramírez", "Campbell",
)
STREETS = (
    "Lincoln", "Washington", "Maple", "Oak", "Cedar", "Elm", "Walnut", "Grand",
    "Monroe", "Jefferson", "Madison", "Adams", "Wabash", "Lake", "Pine", "Ash",
    "Stanford", "Dirksen", "Sangamon", "Peoria", "Clear Lake", "MacArthur", "Spruce",
)
SUFFIXES = (("Street", "St"), ("Avenue", "Ave"), ("Boulevard", "Blvd"), ("Road", "Rd"),
            ("Drive", "Dr"), ("Lane", "Ln"), ("Court", "Ct"), ("Parkway", "Pkwy"))
DIRECTIONS = (("North", "N"), ("South", "S"), ("East", "E"), ("West", "W"))
MOTEL_NAMES = (
    "Sunset Motel", "Budget Inn", "Starlite Motor Lodge", "Capitol Suites", "Prairie Inn",
    "Route 66 Motel", "Travelers Rest Inn", "Crossroads Lodge", "Lamplighter Motel",
    "Blue Moon Inn", "Heartland Suites", "Skyline Motel",
)
BUSINESS_NAMES = ("Lotus Day Spa", "Golden Touch Spa", "Jade Wellness", "Orchid Relaxation",
                  "Pearl Nail & Spa", "Harmony Bodywork")
AD_PLATFORMS = ("listcity", "nightboard", "citydate")  # fictional sites on .example hosts
CAR_MODELS = (("Chevrolet", "Impala"), ("Dodge", "Charger"), ("Nissan", "Altima"),
              ("Chrysler", "300"), ("Ford", "Fusion"), ("Toyota", "Camry"),
              ("Cadillac", "Escalade"), ("Honda", "Accord"))
COLORS = ("black", "white", "silver", "gray", "red", "blue", "maroon")

# Springfield, Illinois and its area codes (217 local, the rest of Illinois for
# buyers passing through). All accept 555-01XX as valid in libphonenumber.
CITY = {"name": "Springfield", "state": "IL", "state_name": "Illinois",
        "zips": ("62701", "62702", "62703", "62704", "62707"),
        "lat": 39.7817, "lon": -89.6501}
LOCAL_AREA_CODES = (217, 309, 312, 773, 872, 630, 331, 708, 815, 779, 618, 224, 847)
# Test network identity (ITU-T E.212 reserves MCC 001 / MNC 01 for testing).
TOWER_PREFIX = "001-01"
# Federal Reserve routing-number prefixes of the Chicago district (07) and neighbours.
ROUTING_PREFIXES = ("0710", "0711", "0719", "0810", "0865", "2710", "2719")


def _dob(rng: random.Random, on: date, age_min: int, age_max: int) -> date:
    """A birth date for someone aged age_min..age_max (inclusive) on ``on``."""
    latest = date(on.year - age_min, on.month, min(on.day, 28))
    earliest = date(on.year - age_max - 1, on.month, min(on.day, 28)) + timedelta(days=1)
    return earliest + timedelta(days=rng.randrange((latest - earliest).days + 1))


def _routing(rng: random.Random) -> str:
    """A routing number with a valid ABA check digit (fictional bank)."""
    body = rng.choice(ROUTING_PREFIXES) + f"{rng.randrange(10_000):04d}"
    d = [int(c) for c in body]
    partial = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5])
    return body + str((10 - partial % 10) % 10)


_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_VIN_YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"  # position 10: no I O Q U Z 0


def _vin(rng: random.Random) -> str:
    """A random 17-character VIN with a correct check digit."""
    chars = [rng.choice(_VIN_CHARS) for _ in range(17)]
    chars[0] = rng.choice("12345")  # North American assembly
    chars[8] = "0"
    chars[9] = rng.choice(_VIN_YEAR_CODES)
    chars[8] = vin_check_digit("".join(chars))
    return "".join(chars)


def _plate(rng: random.Random) -> str:
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    return "".join(rng.choice(letters) for _ in range(2)) + f"{rng.randrange(10_000, 100_000)}"


def _btc(rng: random.Random) -> str:
    program = rng.randbytes(20)
    if rng.random() < 0.5:
        return encode_segwit_address("bc", 0, program)
    return encode_base58check(b"\x00" + program)


def _eth(rng: random.Random) -> str:
    return to_checksum_address("0x" + rng.randbytes(20).hex())


def _phone_text(rng: random.Random, e164: str) -> str:
    """An E.164 US number written one of the ways people write it."""
    a, b, c = e164[2:5], e164[5:8], e164[8:]
    return rng.choice((
        f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}",
        f"{a}{b}{c}", f"1-{a}-{b}-{c}", f"+1 ({a}) {b}-{c}",
    ))


# ---------------------------------------------------------------------------
# The small network
# ---------------------------------------------------------------------------


class _Builder:
    def __init__(self, seed: int, start: date, days: int) -> None:
        self.rng = random.Random(seed)
        self.start = start
        self.days = days
        self.entities: dict[str, SynthEntity] = {}
        self.links: list[SynthLink] = []
        self.cell_of: dict[str, int] = {}
        self.counters: dict[str, int] = {}
        self.phone_count = 0
        self.used_names: set[str] = set()

    def day(self, offset: float) -> str:
        return (self.start + timedelta(days=int(offset))).isoformat()

    def entity(self, kind: str, cell: int, props: dict[str, Any],
               identifiers: list[tuple[str, str]] | None = None) -> str:
        n = self.counters.get(kind, 0) + 1
        self.counters[kind] = n
        eid = f"{kind}-{n:04d}"
        self.entities[eid] = SynthEntity(eid, kind, props, identifiers or [])
        self.cell_of[eid] = cell
        return eid

    def link(self, source: str, target: str, type_: str, first: float, last: float,
             count: int = 1, amount: float | None = None) -> str:
        assert type_ in LINK_TYPES
        lid = f"link-{len(self.links) + 1:05d}"
        self.links.append(SynthLink(lid, source, target, type_, {
            "first_seen": self.day(first), "last_seen": self.day(max(first, last)),
            "count": max(1, int(count)),
            "amount": None if amount is None else round(amount, 2),
        }))
        return lid

    # -- entities ------------------------------------------------------------

    def person(self, cell: int, role: str, age: tuple[int, int], *,
               with_identifier: bool = True) -> str:
        rng = self.rng
        while True:
            given, surname = rng.choice(GIVEN_NAMES), rng.choice(SURNAMES)
            if f"{given} {surname}" not in self.used_names:
                break
        self.used_names.add(f"{given} {surname}")
        dob = _dob(rng, self.start, *age)
        props: dict[str, Any] = {"name": f"{given} {surname}", "role": role,
                                 "dob": dob.isoformat()}
        if role == "controller":
            props["suspect"] = True
        idents: list[tuple[str, str]] = []
        if with_identifier:
            written = rng.choice((
                f"{given} {surname}|{dob.isoformat()}",
                f"{surname}, {given}|{dob.month:02d}/{dob.day:02d}/{dob.year}",
            ))
            idents.append(("person", written))
        return self.entity("person", cell, props, idents)

    def phone(self, cell: int, role: str, first: float, last: float) -> str:
        k = self.phone_count
        self.phone_count += 1
        if k >= 100 * len(LOCAL_AREA_CODES):
            raise ValueError("too many phones for the fictional 555-01XX range")
        area = LOCAL_AREA_CODES[k % len(LOCAL_AREA_CODES)]
        e164 = f"+1{area}5550{100 + k // len(LOCAL_AREA_CODES)}"
        props = {"number": e164, "role": role, "active_from": self.day(first),
                 "active_to": self.day(last), "fictional": True}
        return self.entity("phone", cell, props, [("phone", _phone_text(self.rng, e164))])

    def address(self, *, unit: str | None = None) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        number = rng.randrange(100, 4000)
        street = rng.choice(STREETS)
        suffix = rng.choice(SUFFIXES)
        direction = rng.choice(DIRECTIONS) if rng.random() < 0.4 else None
        zip5 = rng.choice(CITY["zips"])
        state = rng.choice((CITY["state"], CITY["state_name"]))
        pre = ""
        if direction:
            pre = (direction[0] if rng.random() < 0.5 else direction[1] + ".") + " "
        suffix_text = suffix[0] if rng.random() < 0.5 else suffix[1] + rng.choice(("", "."))
        line = f"{number} {pre}{street} {suffix_text}"
        if unit:
            line += ", " + unit
        zip_text = zip5 + (f"-{rng.randrange(1, 10_000):04d}" if rng.random() < 0.3 else "")
        text = f"{line}, {CITY['name']}, {state} {zip_text}"
        geo = {"lat": round(CITY["lat"] + rng.gauss(0, 0.025), 6),
               "lon": round(CITY["lon"] + rng.gauss(0, 0.03), 6)}
        return text, geo

    def location(self, cell: int, location_type: str, name: str | None,
                 unit: str | None = None) -> str:
        text, geo = self.address(unit=unit)
        props = {"name": name, "location_type": location_type, "address": text, **geo}
        return self.entity("location", cell, props, [("address", text)])

    def account(self, cell: int, account_type: str, owner_name: str) -> str:
        rng = self.rng
        handle = (owner_name.split()[0][:4] + owner_name.split()[-1][:4]).lower()
        handle = "".join(c for c in handle if c.isascii() and c.isalnum())
        handle += str(rng.randrange(10, 1000))
        if account_type == "bank":
            routing = _routing(rng)
            number = f"{rng.randrange(10**9, 10**10)}"
            props = {"account_type": "bank", "provider": "First Prairie Bank (fictional)",
                     "routing": routing, "account_number": number}
            idents = [("bank_account", f"{routing}:{number}")]
        elif account_type == "cash_app":
            props = {"account_type": "cash_app", "provider": "cashapp", "handle": handle}
            idents = [("online_account", f"cashapp:${handle.capitalize()}")]
        elif account_type == "crypto":
            if rng.random() < 0.5:
                addr, chain = _btc(rng), "btc"
            else:
                addr, chain = _eth(rng), "eth"
            props = {"account_type": "crypto", "provider": chain, "address": addr}
            idents = [("crypto_wallet", addr)]
        elif account_type == "social":
            props = {"account_type": "social", "provider": "instagram", "handle": handle}
            idents = [("online_account", rng.choice((f"ig:@{handle}", f"instagram:{handle}")))]
        elif account_type == "email":
            domain = rng.choice(("example.com", "example.org"))
            address = f"{handle}@{domain}"
            props = {"account_type": "email", "provider": domain, "address": address}
            written = address
            if rng.random() < 0.3:
                written = f"{handle.capitalize()}+ads@{domain.upper()}"
            idents = [("email", written)]
        else:  # pragma: no cover - programming error
            raise ValueError(account_type)
        return self.entity("account", cell, props, idents)


def generate(
    *,
    seed: int,
    controllers: int = 3,
    victims_per_controller: int = 5,
    recruiters_per_controller: int = 1,
    phones_per_controller: int = 4,
    buyers: int = 60,
    ads_per_phone: int = 2,
    minor_share: float = 0.3,
    start: date = date(2024, 1, 1),
    days: int = 365,
) -> Network:
    """A realistic, fictional trafficking network, the same for the same arguments."""
    if controllers < 1 or victims_per_controller < 1 or phones_per_controller < 1:
        raise ValueError("need at least one controller, victim and phone per cell")
    if buyers < controllers:
        raise ValueError("need at least one buyer per controller")
    b = _Builder(seed, start, days)
    rng = b.rng
    end = days - 1
    cells: list[Cell] = []
    cell_people: list[dict[str, Any]] = []

    for c in range(controllers):
        boss = b.person(c, "controller", (24, 45))
        boss_name = b.entities[boss].props["name"]
        # Burner phones: back to back over the period, each overlapping its successor
        # by a few days while customers are moved over.
        span = days / phones_per_controller
        overlaps = [rng.randint(2, 7) for _ in range(phones_per_controller)]
        burners: list[str] = []
        windows: list[tuple[float, float]] = []
        for j in range(phones_per_controller):
            first = max(0.0, j * span - (overlaps[j - 1] if j else 0))
            last = min(end, (j + 1) * span + (overlaps[j] if j < phones_per_controller - 1 else 0))
            pid = b.phone(c, "burner", first, last)
            b.link(boss, pid, "USES", first, last, count=int(last - first) + 1)
            burners.append(pid)
            windows.append((first, last))
        # Where the cell lives and works.
        stash = b.location(c, "apartment", None, unit=f"Apt {rng.randrange(1, 30)}")
        home = b.location(c, "residence", None)
        motels = [b.location(c, "motel", rng.choice(MOTEL_NAMES)) for _ in range(2)]
        front = b.entity("business", c, {"name": rng.choice(BUSINESS_NAMES),
                                         "business_type": "spa"}, [])
        front_text, front_geo = b.address()
        b.entities[front].props.update({"address": front_text, **front_geo})
        b.entities[front].identifiers.append(("address", front_text))
        b.link(boss, home, "LIVES_AT", 0, end, count=days)
        # A personal (non-burner) phone: how the controllers reach each other.
        own_phone = b.phone(c, "personal", 0, end)
        b.link(boss, own_phone, "USES", 0, end, count=days)
        # Money and wheels.
        bank = b.account(c, "bank", boss_name)
        cash = b.account(c, "cash_app", boss_name)
        wallet = b.account(c, "crypto", boss_name)
        email = b.account(c, "email", boss_name)
        for acct in (bank, cash, wallet, email):
            b.link(boss, acct, "OWNS", 0, end)
        make, model = rng.choice(CAR_MODELS)
        plate = _plate(rng)
        car = b.entity("vehicle", c, {
            "make": make, "model": model, "color": rng.choice(COLORS),
            "year": rng.randrange(2008, 2022), "plate": plate, "plate_state": "IL",
        }, [("vehicle_plate", f"{rng.choice(('IL', 'Illinois'))}:{plate[:2]} {plate[2:]}"),
            ("vin", _vin(rng))])
        b.link(boss, car, "OWNS", 0, end)
        for m in motels:
            b.link(car, m, "ASSOCIATED_WITH", rng.randrange(0, days // 2), end,
                   count=rng.randrange(3, 20))  # licence-plate reader hits
        # Recruiters.
        recruiters = []
        for _ in range(recruiters_per_controller):
            r = b.person(c, "recruiter", (19, 35))
            rphone = b.phone(c, "personal", 0, end)
            b.link(r, rphone, "USES", 0, end, count=days)
            social = b.account(c, "social", b.entities[r].props["name"])
            b.link(r, social, "OWNS", 0, end)
            b.link(r, boss, "ASSOCIATED_WITH", 0, end, count=rng.randrange(5, 40))
            # The recruiter talks to the boss on his own phone, not on the burners.
            b.link(rphone, own_phone, "CALLED", 0, end, count=rng.randrange(20, 90))
            recruiters.append(r)
        # Victims.
        victims = []
        n_minors = round(victims_per_controller * minor_share)
        for v_i in range(victims_per_controller):
            minor = v_i < n_minors
            v = b.person(c, "victim", (14, 17) if minor else (18, 24))
            victims.append(v)
            recruited = rng.randrange(0, max(1, days // 3))
            b.link(recruiters[v_i % len(recruiters)], v, "RECRUITED", recruited, recruited)
            b.link(boss, v, "CONTROLS", recruited, end, count=end - recruited + 1)
            b.link(v, stash, "LIVES_AT", recruited, end, count=end - recruited + 1)
            for m in motels:
                first = rng.randrange(recruited, end + 1)
                b.link(v, m, "STAYED_AT", first, min(end, first + rng.randrange(5, 90)),
                       count=rng.randrange(2, 30))
            if rng.random() < 0.5:
                b.link(v, front, "WORKS_AT", recruited, end, count=rng.randrange(10, 100))
            if rng.random() < 0.7:
                vphone = b.phone(c, "personal", recruited, end)
                b.link(v, vphone, "USES", recruited, end, count=end - recruited + 1)
                # The boss keeps tabs on her from the burner live when she was recruited.
                j = min(int(recruited // span), phones_per_controller - 1)
                lo, hi = max(recruited, windows[j][0]), windows[j][1]
                b.link(burners[j], vphone, "TEXTED", lo, max(lo, hi), count=rng.randrange(10, 80))
        # Ads on the current burner, showing victims.
        for pid, (first, last) in zip(burners, windows, strict=True):
            for _ in range(ads_per_phone):
                platform = rng.choice(AD_PLATFORMS)
                ad_no = rng.randrange(10**6, 10**7)
                posted = rng.uniform(first, last)
                url = (f"https://www.{platform}.example/springfield/ad/{ad_no}"
                       f"?utm_source=share&utm_medium=sms&ref={rng.randrange(100)}")
                ad = b.entity("ad", c, {"platform": platform, "posted": b.day(posted),
                                        "title": "new in town"},
                              [("ad", f"{platform}:{ad_no}"), ("url", url)])
                b.link(ad, pid, "ADVERTISED", posted, min(last, posted + 14))
                b.link(ad, rng.choice(victims), "ASSOCIATED_WITH", posted, posted)
        b.link(cash, bank, "PAID", 0, end, count=rng.randrange(20, 60),
               amount=rng.uniform(20_000, 80_000))
        cells.append(Cell(c, boss, burners, []))
        cell_people.append({"victims": victims, "recruiters": recruiters, "motels": motels,
                            "windows": windows, "cash": cash, "wallet": wallet,
                            "own_phone": own_phone})

    # Buyers: each a customer of one cell, calling and texting whichever burner was
    # live while he was buying, and paying the controller's cash app or wallet.
    path_buyer = path_phone = ""
    for k in range(buyers):
        c = k % controllers
        cell, people = cells[c], cell_people[c]
        buyer = b.person(c, "buyer", (21, 64), with_identifier=rng.random() < 0.5)
        bphone = b.phone(c, "personal", 0, end)
        b.link(buyer, bphone, "USES", 0, end, count=days)
        if k == 0:
            # The ground-truth buyer: active only while the first burner alone was live,
            # a single phone contact and no payment, so his shortest path is unique.
            w0, w1 = people["windows"][0][0], people["windows"][0][1] - 10
            lo, hi = w0 + 1, max(w0 + 2, min(w1, w0 + 30))
            b.link(bphone, cell.burner_phones[0], "CALLED", lo, hi, count=6)
            b.link(bphone, cell.burner_phones[0], "TEXTED", lo, hi, count=9)
            path_buyer, path_phone = buyer, bphone
            continue
        active_from = rng.uniform(0, end - 7)
        active_to = min(end, active_from + rng.uniform(7, 150))
        visits = 0
        for pid, (first, last) in zip(cell.burner_phones, people["windows"], strict=True):
            lo, hi = max(first, active_from), min(last, active_to)
            if lo > hi:
                continue
            weeks = (hi - lo + 1) / 7
            calls = max(1, round(weeks * rng.uniform(0.5, 3)))
            visits += calls
            b.link(bphone, pid, "CALLED", lo, hi, count=calls)
            b.link(bphone, pid, "TEXTED", lo, hi, count=calls * rng.randrange(1, 4))
        if rng.random() < 0.6:
            acct = people["cash"] if rng.random() < 0.8 else people["wallet"]
            per_visit = rng.choice((60, 80, 100, 150, 200, 250))
            b.link(buyer, acct, "PAID", active_from, active_to, count=max(1, visits // 2),
                   amount=per_visit * max(1, visits // 2))

    # Bridges between neighbouring cells.
    bridges: dict[str, list[int]] = {}
    for c in range(controllers - 1):
        here, there = cell_people[c], cell_people[c + 1]
        if c % 2 == 0:
            motel = here["motels"][0]  # a motel both cells use
            for v in there["victims"][:2]:
                first = rng.randrange(0, end)
                b.link(v, motel, "STAYED_AT", first, min(end, first + 10), count=3)
            bridges[motel] = [c, c + 1]
        else:
            recruiter = here["recruiters"][0]  # a recruiter working for both
            v = there["victims"][-1]
            day_ = rng.randrange(0, end)
            b.link(recruiter, v, "RECRUITED", day_, day_)
            bridges[recruiter] = [c, c + 1]
        # The controllers know each other (co-defendants, say), and every other pair
        # also calls each other on their own phones. The direct link keeps cross-cell
        # paths running through the controllers rather than along a chain of phones.
        b.link(cells[c].controller, cells[c + 1].controller, "ASSOCIATED_WITH", 0, end,
               count=rng.randrange(2, 10))
        if c % 2 == 0:
            first = rng.randrange(0, end // 2)
            b.link(here["own_phone"], there["own_phone"], "CALLED", first, end,
                   count=rng.randrange(4, 20))

    for eid, c in b.cell_of.items():
        cells[c].members.append(eid)
    minors = [v for people in cell_people for v in people["victims"]
              if minor_on(b.entities[v].props["dob"], start)]
    return Network(
        seed=seed, start=start, end=start + timedelta(days=end),
        entities=b.entities, links=b.links, cells=cells, bridges=bridges,
        known_path=[path_buyer, path_phone, cells[0].burner_phones[0], cells[0].controller],
        minors=minors,
    )


def ground_truth(network: Network) -> GroundTruth:
    """What tests may assert, by construction (nothing here is computed from the graph)."""
    communities = {eid: cell.index for cell in network.cells for eid in cell.members}
    return GroundTruth(
        controllers=[cell.controller for cell in network.cells],
        communities=communities,
        bridges=dict(network.bridges),
        path_source=network.known_path[0],
        path_target=network.known_path[-1],
        path=list(network.known_path),
        minors=list(network.minors),
    )


# ---------------------------------------------------------------------------
# Call detail records and bank statements, as streams
# ---------------------------------------------------------------------------

# Share of calls by hour of day: commercial sex buying peaks in the evening and night.
_HOUR_WEIGHTS = (4, 3, 2, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 4, 5, 5, 6, 7, 8, 9, 9, 8, 6)
_HOUR_CUM = list(accumulate(_HOUR_WEIGHTS))


def _towers(network: Network) -> dict[int, list[str]]:
    rng = random.Random(network.seed ^ 0x70E5)
    return {cell.index: [f"{TOWER_PREFIX}-{4100 + cell.index}-{rng.randrange(1000, 65000)}"
                         for _ in range(3)] for cell in network.cells}


def _noise_numbers(network: Network, count: int = 500) -> list[str]:
    """Fictional numbers outside the network: 555-01XX on non-local area codes."""
    rng = random.Random(network.seed ^ 0x5EED)
    areas = [a for a in valid_area_codes() if a not in LOCAL_AREA_CODES]
    return [f"+1{rng.choice(areas)}5550{rng.randrange(100, 200)}" for _ in range(count)]


def _day_counts(n: int, days: int) -> Iterator[tuple[int, int]]:
    """n rows spread over the days: (day index, rows that day)."""
    for d in range(days):
        k = (d + 1) * n // days - d * n // days
        if k:
            yield d, k


def iter_call_records(network: Network, n: int, seed: int, *,
                      noise_share: float = 0.1) -> Iterator[CallRecord]:
    """``n`` call detail records, time-ordered, consistent with ``network``.

    Each row comes from a phone-to-phone CALLED/TEXTED link live that day (weighted by
    the link's count over its days: mostly buyers and the controller's current burner,
    then the controller with recruiters, victims and the other controllers), or, for
    ``noise_share`` of rows, a fictional outside number and a live network phone.
    Memory does not grow with ``n``: only the per-day lists of live links are kept.
    """
    rng = random.Random(seed)
    numbers = {e.id: e.props["number"] for e in network.entities.values() if e.kind == "phone"}
    towers = _towers(network)
    cell_of = {eid: cell.index for cell in network.cells for eid in cell.members}
    days = (network.end - network.start).days + 1
    # (caller, callee, kind, tower, weight per day) per link, and the links live each day.
    channels: list[tuple[str, str, str, list[str], float]] = []
    live: list[list[int]] = [[] for _ in range(days)]
    for link in network.links:
        if link.type not in ("CALLED", "TEXTED") or link.source not in numbers:
            continue
        if link.target not in numbers:
            continue
        first = (date.fromisoformat(link.props["first_seen"]) - network.start).days
        last = (date.fromisoformat(link.props["last_seen"]) - network.start).days
        weight = link.props["count"] / (last - first + 1)
        kind = "voice" if link.type == "CALLED" else "sms"
        channels.append((numbers[link.source], numbers[link.target], kind,
                         towers[cell_of[link.target]], weight))
        for d in range(max(0, first), min(days - 1, last) + 1):
            live[d].append(len(channels) - 1)
    live_cum = [list(accumulate(channels[i][4] for i in idx)) for idx in live]
    phone_ids = sorted(numbers)
    noise = _noise_numbers(network)
    for d, k in _day_counts(n, days):
        day0 = datetime.combine(network.start + timedelta(days=d), datetime.min.time())
        idx, cum = live[d], live_cum[d]
        done = 0
        for hour in range(24):
            upto = round(k * _HOUR_CUM[hour] / _HOUR_CUM[-1])
            count = upto - done
            done = upto
            for j in range(count):
                second = 3600 * hour + int(3600 * (j + rng.random()) / count)
                when = day0 + timedelta(seconds=second)
                if idx and rng.random() >= noise_share:
                    caller, callee, kind, cell_towers, _w = channels[
                        idx[rng.choices(range(len(idx)), cum_weights=cum)[0]]
                        if len(idx) > 1 else idx[0]
                    ]
                    if rng.random() < 0.2:  # the other side calls back
                        caller, callee = callee, caller
                else:
                    other = rng.choice(noise)
                    if idx:  # a phone of the network that is live that day
                        live_one = channels[rng.choice(idx)]
                        mine = live_one[0] if rng.random() < 0.5 else live_one[1]
                    else:
                        mine = numbers[rng.choice(phone_ids)]
                    caller, callee = mine, other
                    if rng.random() < 0.5:
                        caller, callee = callee, caller
                    kind = "voice" if rng.random() < 0.6 else "sms"
                    cell_towers = towers[rng.randrange(len(towers))]
                if kind == "voice":
                    duration = 0 if rng.random() < 0.15 else int(rng.lognormvariate(4.2, 0.9)) + 1
                else:
                    duration = 0
                tower = rng.choice(cell_towers) if rng.random() < 0.85 else None
                yield CallRecord(caller, callee, when.isoformat(timespec="seconds"),
                                 duration, kind, tower)


def iter_bank_records(network: Network, n: int, seed: int, *,
                      account_id: str | None = None) -> Iterator[BankRecord]:
    """``n`` statement rows for a controller's bank account, date-ordered.

    Credits: Zelle transfers from the cell's buyers, cash-app cash-outs, cash deposits
    (some just under the $10,000 reporting threshold: structuring). Debits: motel
    rooms, online ads, prepaid phone top-ups, rent, crypto purchases, ATM cash.
    ``account_id`` picks the account (default: the first controller's bank account).
    """
    rng = random.Random(seed)
    if account_id is None:
        account_id = next(
            lk.target for lk in network.links
            if lk.source == network.cells[0].controller and lk.type == "OWNS"
            and network.entities[lk.target].props.get("account_type") == "bank"
        )
    owner = next(lk.source for lk in network.links
                 if lk.target == account_id and lk.type == "OWNS")
    cell = next(cell for cell in network.cells if owner in cell.members)
    members = [network.entities[m] for m in cell.members]
    buyers = [e for e in members if e.props.get("role") == "buyer"] or [network.entities[owner]]
    motels = [e for e in members if e.props.get("location_type") == "motel"]
    cash_app = next((e for e in members if e.props.get("account_type") == "cash_app"), None)
    # A fictional bank account per buyer, fixed for the network.
    buyer_accounts = {}
    for e in buyers:
        brng = random.Random(f"{network.seed}:{e.id}")
        buyer_accounts[e.id] = f"{_routing(brng)}:{brng.randrange(10**8, 10**10)}"
    kinds = ("zelle_in", "cashout_in", "cash_deposit", "motel", "ads", "prepaid", "rent",
             "crypto", "atm")
    weights = (30, 12, 6, 18, 10, 6, 2, 6, 10)
    cum = list(accumulate(weights))
    days = (network.end - network.start).days + 1
    for d, k in _day_counts(n, days):
        day = (network.start + timedelta(days=d)).isoformat()
        for _ in range(k):
            what = kinds[rng.choices(range(len(kinds)), cum_weights=cum)[0]]
            if what == "zelle_in":
                buyer = rng.choice(buyers)
                row = (rng.choice((80, 100, 150, 200, 250, 300)), "credit",
                       buyer.props["name"].upper(), buyer_accounts[buyer.id],
                       "ZELLE PAYMENT FROM")
            elif what == "cashout_in":
                handle = cash_app.props["handle"] if cash_app else ""
                row = (round(rng.uniform(200, 2500), 2), "credit", "CASH APP",
                       f"cashapp:{handle}", "CASH APP*TRANSFER")
            elif what == "cash_deposit":
                amount = (rng.randrange(9000, 9900) if rng.random() < 0.3
                          else rng.randrange(300, 3000))
                row = (amount, "credit", "", "", "ATM CASH DEPOSIT")
            elif what == "motel":
                motel = rng.choice(motels) if motels else None
                name = (motel.props["name"] or "MOTEL").upper() if motel else "MOTEL"
                row = (round(rng.uniform(55, 129), 2) * rng.randrange(1, 4), "debit", name,
                       "", f"POS PURCHASE {name[:18]} SPRINGFIELD IL")
            elif what == "ads":
                platform = rng.choice(AD_PLATFORMS)
                row = (rng.choice((15, 25, 40, 60)), "debit", f"{platform.upper()}.EXAMPLE",
                       "", "ONLINE PURCHASE ADVERTISING")
            elif what == "prepaid":
                row = (rng.choice((25, 30, 40, 50)), "debit", "PREPAID WIRELESS", "",
                       "PREPAID PHONE REFILL")
            elif what == "rent":
                row = (rng.choice((850, 950, 1100)), "debit", "PRAIRIE PROPERTY MGMT", "",
                       "RENT PAYMENT")
            elif what == "crypto":
                row = (round(rng.uniform(300, 5000), 2), "debit", "COINEXCHANGE.EXAMPLE", "",
                       "CRYPTO PURCHASE")
            else:
                row = (rng.choice((100, 200, 300, 400, 500)), "debit", "", "",
                       "ATM WITHDRAWAL")
            amount, direction, name, account, memo = row
            yield BankRecord(day, f"{float(amount):.2f}", direction, name, account, memo)


# ---------------------------------------------------------------------------
# A large graph, as streams
# ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def valid_area_codes() -> tuple[int, ...]:
    """US area codes on which libphonenumber accepts NXX-555-0100 as a valid number."""
    return tuple(a for a in range(200, 1000)
                 if phonenumbers.is_valid_number(phonenumbers.parse(f"+1{a}5550100")))


def large_phone_number(k: int) -> str:
    """The k-th distinct synthetic US number for the large graph.

    The first 100 x (valid area codes) numbers are the reserved 555-0100..0199 range;
    past that (about 45,000 numbers) it continues with 555-0200..9999 on the same area
    codes: still synthetic (the props say so) and valid to libphonenumber, but not in
    the range reserved for fiction, so never use them outside tests and benchmarks.
    """
    areas = valid_area_codes()
    area, line = areas[k % len(areas)], k // len(areas)
    sub = 100 + line if line < 100 else 200 + (line - 100)
    if sub > 9999:
        raise ValueError("ran out of synthetic phone numbers")
    return f"+1{area}555{sub:04d}"


# The kind of each entity by its offset in a community block (offset 0 is the hub).
_LARGE_PATTERN = ("person", "phone", "person", "phone", "account", "person", "ad",
                  "phone", "person", "location", "person", "phone", "account", "person",
                  "vehicle", "phone", "ad", "person", "location", "account")
# (link type, source kind, target kind, weight)
_LARGE_TEMPLATES = (
    ("CALLED", "phone", "phone", 28), ("TEXTED", "phone", "phone", 16),
    ("USES", "person", "phone", 12), ("PAID", "person", "account", 8),
    ("OWNS", "person", "account", 5), ("ADVERTISED", "ad", "phone", 7),
    ("STAYED_AT", "person", "location", 6), ("LIVES_AT", "person", "location", 4),
    ("OWNS", "person", "vehicle", 3), ("ASSOCIATED_WITH", "person", "person", 5),
    ("RECRUITED", "person", "person", 2), ("CONTROLS", "person", "person", 2),
    ("ASSOCIATED_WITH", "vehicle", "location", 2),
)
_LARGE_CUM = list(accumulate(t[3] for t in _LARGE_TEMPLATES))


def _large_kind(i: int, block: int) -> str:
    o = i % block
    return "person" if o == 0 else _LARGE_PATTERN[(o - 1) % len(_LARGE_PATTERN)]


@dataclass
class LargeGraph:
    """A large synthetic graph whose rows are generated on demand, never stored.

    ``entities()`` and ``links()`` each return a fresh, deterministic iterator; memory
    stays flat however many rows are read. Entities are grouped in communities of
    ``community_size`` consecutive ids whose first member is a hub (a controller);
    links stay inside their community except ``cross_share`` of them.
    """

    n_entities: int
    n_links: int
    seed: int
    community_size: int = 200
    cross_share: float = 0.05
    start: date = date(2024, 1, 1)
    days: int = 365

    def entity_id(self, i: int) -> str:
        return f"e{i:08d}"

    def kind_of(self, i: int) -> str:
        return _large_kind(i, self.community_size)

    def entities(self) -> Iterator[SynthEntity]:
        rng = random.Random(self.seed)
        block = self.community_size
        n_names = len(GIVEN_NAMES) * len(SURNAMES)
        person_no = 0
        for i in range(self.n_entities):
            kind = _large_kind(i, block)
            props: dict[str, Any] = {"community": i // block}
            idents: list[tuple[str, str]] = []
            if kind == "person":
                given = GIVEN_NAMES[person_no % len(GIVEN_NAMES)]
                surname = SURNAMES[(person_no // len(GIVEN_NAMES)) % len(SURNAMES)]
                # (name, date of birth) is unique for the first ~29 million persons.
                dob = date(1960, 1, 1) + timedelta(days=(person_no // n_names) % 18_000)
                person_no += 1
                props.update(name=f"{given} {surname}", dob=dob.isoformat(),
                             role="controller" if i % block == 0 else
                             rng.choice(("buyer", "buyer", "buyer", "victim", "associate")))
                idents.append(("person", f"{given} {surname}|{dob.isoformat()}"))
            elif kind == "phone":
                number = large_phone_number(i)
                props.update(number=number, fictional=True)
                idents.append(("phone", number))
            elif kind == "account":
                r = rng.random()
                if r < 0.4:
                    routing = _routing(rng)
                    props.update(account_type="bank")
                    idents.append(("bank_account", f"{routing}:{10**9 + i}"))
                elif r < 0.7:
                    props.update(account_type="cash_app")
                    idents.append(("online_account", f"cashapp:$pay{i}"))
                elif r < 0.85:
                    props.update(account_type="crypto")
                    idents.append(("crypto_wallet", encode_segwit_address(
                        "bc", 0, hashlib.sha256(f"{self.seed}:{i}".encode()).digest()[:20])))
                else:
                    props.update(account_type="email")
                    idents.append(("email", f"user{i}@example.org"))
            elif kind == "location":
                # Mixed radix on the entity number: every location has its own address.
                rest, street_no = divmod(i, len(STREETS))
                rest, suffix_no = divmod(rest, len(SUFFIXES))
                rest, house = divmod(rest, 9000)
                text = (f"{100 + house} {STREETS[street_no]} {SUFFIXES[suffix_no][1]}, "
                        f"Unit {rest + 1}, {CITY['name']}, {CITY['state']} "
                        f"{CITY['zips'][house % len(CITY['zips'])]}")
                props.update(location_type=rng.choice(("motel", "apartment", "residence")),
                             address=text,
                             lat=round(CITY["lat"] + rng.gauss(0, 0.05), 6),
                             lon=round(CITY["lon"] + rng.gauss(0, 0.05), 6))
                idents.append(("address", text))
            elif kind == "vehicle":
                letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
                plate = (letters[i % 23] + letters[(i // 23) % 23]
                         + f"{(i // 529) % 100000:05d}")
                props.update(plate=plate, plate_state="IL")
                idents.append(("vehicle_plate", f"IL:{plate}"))
                idents.append(("vin", _vin(rng)))
            else:  # ad
                platform = AD_PLATFORMS[i % len(AD_PLATFORMS)]
                props.update(platform=platform)
                idents.append(("ad", f"{platform}:{i}"))
            yield SynthEntity(self.entity_id(i), kind, props, idents)

    def links(self) -> Iterator[SynthLink]:
        rng = random.Random(self.seed + 1)
        block = self.community_size
        n = self.n_entities
        offsets = {k: [o for o in range(block) if _large_kind(o, block) == k]
                   for k in ENTITY_KINDS}
        n_blocks = max(1, math.ceil(n / block))
        templates = range(len(_LARGE_TEMPLATES))

        def pick(b: int, kind: str, hub: bool) -> int | None:
            if hub and kind == "person":
                return b * block
            choices = offsets.get(kind) or []
            for _ in range(4):  # the last block may be short
                if not choices:
                    return None
                i = b * block + rng.choice(choices)
                if i < n:
                    return i
            return None

        made = 0
        while made < self.n_links:
            type_, src_kind, dst_kind, _w = _LARGE_TEMPLATES[
                rng.choices(templates, cum_weights=_LARGE_CUM)[0]]
            b = rng.randrange(n_blocks)
            b2 = rng.randrange(n_blocks) if rng.random() < self.cross_share else b
            s = pick(b, src_kind, type_ == "CONTROLS" or rng.random() < 0.15)
            t = pick(b2, dst_kind, False)
            if s is None or t is None or s == t:
                continue
            first = rng.randrange(self.days)
            last = min(self.days - 1, first + rng.randrange(0, 90))
            amount = round(rng.uniform(50, 500), 2) if type_ == "PAID" else None
            made += 1
            yield SynthLink(f"l{made:09d}", self.entity_id(s), self.entity_id(t), type_, {
                "first_seen": (self.start + timedelta(days=first)).isoformat(),
                "last_seen": (self.start + timedelta(days=last)).isoformat(),
                "count": rng.randrange(1, 40), "amount": amount,
            })


def generate_large(n_entities: int, n_links: int, seed: int, **options: Any) -> LargeGraph:
    """A ``LargeGraph``: ``.entities()`` and ``.links()`` stream its rows.

    ``generate_large(1_000_000, 5_000_000, seed=1)`` makes a graph of a million entities
    and five million links without holding either in memory.
    """
    if n_entities < 2 or n_links < 0:
        raise ValueError("need at least two entities and a non-negative number of links")
    return LargeGraph(n_entities, n_links, seed, **options)


# --- entering a network into a case, as an investigator would --------------------------
# Used by the demo seed (`flask accounts seed-demo`) and the tests: one service call per
# entity and link, so every side effect (outbox, deconfliction, survivor alerts) happens.

_CASE_ROLES = {"controller": "suspect", "recruiter": "suspect", "victim": "victim",
               "buyer": "buyer"}
_ACCOUNT_KINDS = {"bank_account": "bank_account", "crypto_wallet": "crypto_wallet",
                  "online_account": "online_account", "email": "email"}


def entity_args(e: SynthEntity) -> dict[str, Any]:
    """The graph service's add_entity arguments for a synthetic entity."""
    from taskforce.graph.models import IDENTIFIER_KINDS_BY_ENTITY

    props = e.props
    if e.kind == "person":
        kind, label = "person", props["name"]
        details = {"names": [props["name"]], "dob": props.get("dob")}
        role = _CASE_ROLES.get(props.get("role"))
    elif e.kind == "account":
        kind = _ACCOUNT_KINDS[e.identifiers[0][0]]
        label, details, role = props.get("handle") or e.identifiers[0][1], {}, None
    elif e.kind == "business":
        kind, details, role = "organization", {"address": props.get("address")}, None
        label = props.get("name") or e.id
    elif e.kind == "location":
        kind, role = "location", None
        label = props.get("name") or props.get("address") or e.id
        details = {"address": props.get("address"), "lat": props.get("lat"),
                   "lon": props.get("lon")}
    else:  # phone, vehicle, ad
        kind, label, details, role = e.kind, "", {}, None
    allowed = IDENTIFIER_KINDS_BY_ENTITY[kind]
    return {"kind": kind, "label": str(label)[:200],
            "identifiers": [(k, v) for k, v in e.identifiers if k in allowed],
            "props": {k: v for k, v in details.items() if v not in (None, "")},
            "case_role": role}


def enter_into_case(actor: Any, case_id: int, network: Network) -> dict[str, int]:
    """Enter every entity and link of a network into a case through the graph service;
    returns synthetic id -> entity id."""
    from taskforce.graph import service

    ids: dict[str, int] = {}
    for e in network.entities.values():
        ids[e.id] = service.add_entity(actor=actor, case_id=case_id, **entity_args(e)).id
    for link in network.links:
        p = link.props
        service.add_link(actor=actor, case_id=case_id, source_id=ids[link.source],
                         target_id=ids[link.target], type=link.type,
                         provenance_kind="import", provenance_ref=f"synthetic-{network.seed}",
                         first_seen=p.get("first_seen"), last_seen=p.get("last_seen"),
                         count=p.get("count") or 1, amount=p.get("amount"))
    return ids
