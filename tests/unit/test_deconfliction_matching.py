"""Scoring of possible person matches, plain and blind, and the second-degree seam's
behaviour without a graph engine. Pure functions, no HTTP."""
from __future__ import annotations

from datetime import date

import pytest

from taskforce.deconfliction import matching
from taskforce.deconfliction.blind import Keyring
from taskforce.graph.identifiers import normalize

RING = Keyring(True, b"k" * 32)
PLAIN = Keyring(False)


def probe(name: str, dob: str, ring: Keyring) -> matching.Probe:
    return matching.make_probe(normalize("person", name, dob=dob), ring)


def plain_score(a: tuple[str, str], b: tuple[str, str]) -> float:
    return matching.plain_person_score(probe(*a, PLAIN).person, normalize(
        "person", b[0], dob=b[1]).value)


def blind_score(a: tuple[str, str], b: tuple[str, str], offset: int = 0) -> float:
    other = probe(*b, RING).person.sketch
    return matching.blind_person_score(probe(*a, RING).person, other, offset)


@pytest.mark.parametrize("scorer", [plain_score, blind_score])
def test_jon_smith_and_john_smyth_of_the_same_birthday_reach_the_threshold(scorer):
    score = scorer(("Jon Smith", "1990-04-12"), ("John Smyth", "1990-04-12"))
    assert matching.POSSIBLE_THRESHOLD <= score < 1.0


@pytest.mark.parametrize("scorer", [plain_score, blind_score])
def test_unrelated_names_score_low(scorer):
    assert scorer(("Jon Smith", "1990-04-12"), ("Maria Garcia", "1990-04-12")) < 0.5


def test_the_blind_index_cannot_tell_a_one_letter_slip_from_another_name():
    """The documented cost: within a word, blind scoring sees only 'same letters' or
    'sounds the same', so Jane/John count like Jon/John."""
    jane = (("John Smith", "1990-04-12"), ("Jane Smith", "1990-04-12"))
    assert blind_score(*jane) > plain_score(*jane)
    assert blind_score(*jane) >= matching.POSSIBLE_THRESHOLD


def test_date_of_birth_factor():
    d = date(1990, 4, 12)
    assert matching.dob_factor(d, d) == 1.0
    assert matching.dob_factor(d, date(1990, 12, 4)) == 0.95  # day and month swapped
    assert matching.dob_factor(d, date(1991, 4, 12)) == 0.95  # a year typo
    assert matching.dob_factor(d, date(1990, 7, 30)) == 0.90
    assert matching.dob_factor(d, date(1989, 1, 1)) == 0.85
    assert matching.dob_factor(d, date(1985, 4, 12)) == 0.0


def test_blind_date_factor_uses_the_dob_tag_and_the_blocks_year():
    same = blind_score(("Jon Smith", "1990-04-12"), ("Jon Smith", "1990-05-01"))
    near = blind_score(("Jon Smith", "1990-04-12"), ("Jon Smith", "1991-05-01"), offset=1)
    exact = blind_score(("Jon Smith", "1990-04-12"), ("Jon Smith", "1990-04-12"))
    assert exact == 1.0 and same == pytest.approx(0.90) and near == pytest.approx(0.85)


def test_sketch_and_blocks_hold_no_name():
    p = probe("Jon Smith", "1990-04-12", RING)
    text = repr(p.person.sketch) + repr(sorted(p.person.query_keys))
    for secret in ("JON", "SMITH", "J500", "S530", "1990-04", "1990|"):
        assert secret not in text
    assert p.value_key != normalize("person", "Jon Smith", dob="1990-04-12").value
    assert len(p.person.query_keys) == len(set(p.person.query_keys))


def test_word_order_and_middle_names_do_not_break_blind_scoring():
    assert blind_score(("Smith, Jon", "1990-04-12"), ("Jon Smith", "1990-04-12")) == 1.0
    assert blind_score(("John Paul Smith", "1990-04-12"),
                       ("John Smith", "1990-04-12")) == pytest.approx(0.8)


def test_second_degree_finds_nothing_without_a_configured_graph(app):
    p = matching.Probe(kind="phone", value_key="x", registration_id=1, case_id=1, entity_id=1)
    app.config["NEO4J_PASSWORD"] = ""
    assert matching.second_degree([p], ring=PLAIN, now=None) == []
