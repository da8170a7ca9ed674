"""nova's claims: hand-made metrics on either side of each test."""
from stages.nova.evaluate import paper_claims


def metrics(normative: float, random: float, rare_cases: int) -> dict:
    by_group = {"common": {"map30": 0.4}, "rare": {"map30": 0.1}}
    return {"normative": {"map30": normative}, "random_boxes": {"map30": random},
            "normative_beats_random_map30": normative > random, "by_frequency": {"normative": by_group},
            "cases": {"all": 10 + rare_cases, "common": 10, "rare": rare_cases}}


def test_claims_follow_the_numbers():
    held = {c.id: c.holds for c in paper_claims(metrics(0.3, 0.01, 2))}
    assert held == {"normative_beats_random_boxes": True, "rare_pathologies_reported_apart": True}
    failed = {c.id: c.holds for c in paper_claims(metrics(0.01, 0.3, 0))}
    assert failed == {"normative_beats_random_boxes": False, "rare_pathologies_reported_apart": False}
