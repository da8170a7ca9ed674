"""The claims are computed from the measured numbers as stated, and a failing claim is reported as failing."""
import pandas as pd

from stages.ecg_text.evaluate import EvaluateParams, claims, summarise
from tests.helpers import repo_params


def tables(kmerl_partial: float):
    rows = []
    for model, full, partial in (("merl", 0.70, 0.55), ("kmerl", 0.72, kmerl_partial), ("kmerl_no_entity", 0.68, 0.60),
                                 ("kmerl_no_lead_mask", 0.71, 0.58)):
        for dataset in ("ptbxl", "cpsc", "csn"):
            rows.append({"model": model, "dataset": dataset, "leads": "all_12", "n_leads": 12, "auc": full,
                         "auc_low": full - 0.1, "auc_high": full + 0.1})
            rows.append({"model": model, "dataset": dataset, "leads": "lead_I", "n_leads": 1, "auc": partial})
    probe = pd.DataFrame([{"model": m, "dataset": "ptbxl", "fraction": f, "auc": 0.6 + 0.1 * f + (0.01 if m == "kmerl" else 0)}
                          for m in ("merl", "kmerl", "kmerl_no_entity", "kmerl_no_lead_mask") for f in (0.01, 0.1, 1.0)])
    return pd.DataFrame(rows), probe


def params():
    return EvaluateParams.model_validate({k: v for k, v in repo_params()["ecg_text"]["evaluate"].items() if k != "full"})


def test_claims_hold_when_the_numbers_say_so():
    zero, probe = tables(kmerl_partial=0.68)
    found = {c.id: c for c in claims(summarise(zero, probe, params()), params())}
    assert all(c.holds for c in found.values()), {k: c.measured for k, c in found.items()}
    assert found["partial_leads_kmerl_loses_less"].measured["merl_drop"] == 0.15


def test_partial_lead_claim_fails_when_kmerl_drops_as_much_as_merl():
    zero, probe = tables(kmerl_partial=0.57)   # drop 0.15, same as MERL's
    found = {c.id: c for c in claims(summarise(zero, probe, params()), params())}
    assert not found["partial_leads_kmerl_loses_less"].holds
    assert found["zero_shot_kmerl_at_least_merl"].holds
