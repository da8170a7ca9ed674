"""The synthetic default (ours): clinical-calculation questions with known answers and numeric distractors.

Each template draws its inputs, computes the answer, and offers distractors from the usual slips
(a forgotten square, a unit off by ten, a swapped group) plus nearby values. Difficulty is the
number of arithmetic steps; informativeness is the question's form: ``short`` gives the bare
numbers, ``long`` wraps them in a vignette with irrelevant facts (the paper's long, informative
MedQA questions against short PubMedQA ones). Out-of-domain sets use templates training never
sees, and more options.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stages.med_reasoning.formats import OPTION_LETTERS, Question

SOURCE_DATASET = "synthetic-clinical-calc"


@dataclass(frozen=True)
class Calculation:
    facts: list[str]          # the sentences a vignette needs, each naming one input
    ask: str                  # what to compute
    answer: float
    unit: str
    slips: list[float]        # values from typical mistakes
    steps: int
    decimals: int


def bmi(rng: np.random.Generator) -> Calculation:
    weight, height = float(rng.integers(45, 130)), float(rng.integers(150, 200)) / 100
    value = weight / height**2
    return Calculation([f"weight {weight:.0f} kg", f"height {height:.2f} m"], "body-mass index", value, "kg/m2",
                       [weight / height, weight / (height * 100) ** 2 * 1e4 * 1.1, value * height], 2, 1)


def weight_dose(rng: np.random.Generator) -> Calculation:
    weight, per_kg = float(rng.integers(8, 100)), float(rng.choice([0.5, 1, 2, 5, 10, 15]))
    value = weight * per_kg
    return Calculation([f"weight {weight:.0f} kg", f"prescribed {per_kg:g} mg/kg"], "single dose", value, "mg",
                       [weight / per_kg, value * 2.2, value / 2.2], 1, 1)


def divided_dose(rng: np.random.Generator) -> Calculation:
    weight, per_day, doses = float(rng.integers(8, 90)), float(rng.choice([20, 30, 40, 60])), int(rng.choice([2, 3, 4]))
    value = weight * per_day / doses
    return Calculation([f"weight {weight:.0f} kg", f"{per_day:g} mg/kg/day", f"divided into {doses} doses"],
                       "amount per dose", value, "mg", [weight * per_day, value / doses, weight * per_day * doses], 2, 1)


def anion_gap(rng: np.random.Generator) -> Calculation:
    sodium, chloride, bicarbonate = float(rng.integers(128, 150)), float(rng.integers(90, 112)), float(rng.integers(8, 30))
    value = sodium - (chloride + bicarbonate)
    return Calculation([f"sodium {sodium:.0f} mmol/L", f"chloride {chloride:.0f} mmol/L", f"bicarbonate {bicarbonate:.0f} mmol/L"],
                       "anion gap", value, "mmol/L", [sodium - chloride + bicarbonate, sodium - chloride, value + 4], 2, 0)


def _two_groups(rng: np.random.Generator) -> tuple[int, int, int, int, list[str]]:
    exposed, unexposed = int(rng.integers(80, 400)), int(rng.integers(80, 400))
    events_exposed, events_unexposed = int(rng.integers(5, exposed // 2)), int(rng.integers(5, unexposed // 2))
    facts = [f"{events_exposed} of {exposed} treated patients had the outcome",
             f"{events_unexposed} of {unexposed} control patients had the outcome"]
    return events_exposed, exposed, events_unexposed, unexposed, facts


def risk_difference(rng: np.random.Generator) -> Calculation:
    a, n1, c, n0, facts = _two_groups(rng)
    value = 100 * (a / n1 - c / n0)
    return Calculation(facts, "risk difference (treated minus control)", value, "percentage points",
                       [-value, 100 * (a - c) / (n1 + n0), 100 * a / n1], 3, 1)


def relative_risk(rng: np.random.Generator) -> Calculation:
    a, n1, c, n0, facts = _two_groups(rng)
    value = (a / n1) / (c / n0)
    return Calculation(facts, "relative risk (treated over control)", value, "", [1 / value, a / c, (a / (n1 - a)) / (c / (n0 - c))], 3, 2)


def creatinine_clearance(rng: np.random.Generator) -> Calculation:
    age, weight, creatinine = int(rng.integers(25, 90)), float(rng.integers(45, 110)), float(rng.integers(6, 30)) / 10
    female = bool(rng.integers(0, 2))
    value = (140 - age) * weight / (72 * creatinine) * (0.85 if female else 1.0)
    facts = [f"a {age}-year-old {'woman' if female else 'man'}", f"weight {weight:.0f} kg", f"serum creatinine {creatinine:.1f} mg/dL"]
    slips = [(140 - age) * weight / (72 * creatinine) * (1.0 if female else 0.85), (140 - age) * weight / 72 * creatinine,
             (140 - age) / (72 * creatinine) * (0.85 if female else 1.0) * 70]
    return Calculation(facts, "Cockcroft-Gault creatinine clearance", value, "mL/min", slips, 4, 0)


def mean_arterial_pressure(rng: np.random.Generator) -> Calculation:
    systolic, diastolic = float(rng.integers(95, 190)), float(rng.integers(50, 110))
    value = diastolic + (systolic - diastolic) / 3
    return Calculation([f"blood pressure {systolic:.0f}/{diastolic:.0f} mmHg"], "mean arterial pressure", value, "mmHg",
                       [(systolic + diastolic) / 2, systolic - (systolic - diastolic) / 3, systolic - diastolic], 2, 0)


def number_needed_to_treat(rng: np.random.Generator) -> Calculation:
    a, n1, c, n0, facts = _two_groups(rng)
    while abs(a / n1 - c / n0) < 0.02:
        a, n1, c, n0, facts = _two_groups(rng)
    value = 1 / abs(a / n1 - c / n0)
    return Calculation(facts, "number needed to treat (or harm)", value, "patients", [100 * abs(a / n1 - c / n0), value * 2, n1 / a], 4, 1)


def corrected_calcium(rng: np.random.Generator) -> Calculation:
    calcium, albumin = float(rng.integers(60, 110)) / 10, float(rng.integers(15, 45)) / 10
    value = calcium + 0.8 * (4.0 - albumin)
    return Calculation([f"serum calcium {calcium:.1f} mg/dL", f"albumin {albumin:.1f} g/dL"], "albumin-corrected calcium", value,
                       "mg/dL", [calcium - 0.8 * (4.0 - albumin), calcium + (4.0 - albumin), calcium * albumin / 4], 2, 1)


IN_DOMAIN: dict[str, Callable[[np.random.Generator], Calculation]] = {
    "bmi": bmi, "weight_dose": weight_dose, "divided_dose": divided_dose, "anion_gap": anion_gap,
    "risk_difference": risk_difference, "relative_risk": relative_risk, "creatinine_clearance": creatinine_clearance,
}
OUT_OF_DOMAIN: dict[str, Callable[[np.random.Generator], Calculation]] = {
    "mean_arterial_pressure": mean_arterial_pressure, "number_needed_to_treat": number_needed_to_treat,
    "corrected_calcium": corrected_calcium,
}
IRRELEVANT_FACTS = [
    "Her mother had type 2 diabetes.", "He works night shifts as a nurse.", "Temperature is 36.9 C.",
    "The patient quit smoking ten years ago.", "There is no known drug allergy.", "Pulse is 78/min and regular.",
    "A chest radiograph last year was normal.", "The patient drinks two cups of coffee a day.",
    "Vaccinations are up to date.", "The patient walks 30 minutes most days.", "There is a family history of glaucoma.",
    "Oxygen saturation is 98% on room air.", "The patient lives with a partner and two children.",
]


def option_values(calc: Calculation, n_options: int, rng: np.random.Generator) -> list[str]:
    """``n_options`` distinct formatted values: the answer first, then slips, then nearby values."""
    def show(value: float) -> str:
        return f"{value:.{calc.decimals}f}{(' ' + calc.unit) if calc.unit else ''}"

    values = [show(calc.answer)]
    candidates = [*calc.slips]
    while len(values) < n_options:
        value = candidates.pop(0) if candidates else calc.answer * float(rng.choice([0.5, 0.7, 0.8, 1.25, 1.5, 2.0])) + float(rng.normal())
        if np.isfinite(value) and show(value) not in values:
            values.append(show(value))
    return values


def make_question(qid: str, template: str, calc: Calculation, form: str, n_options: int, irrelevant: int,
                  rng: np.random.Generator) -> Question:
    """One question in ``short`` (bare numbers) or ``long`` (vignette with ``irrelevant`` distracting facts) form."""
    if form == "short":
        stem = f"Given {', '.join(calc.facts)}: what is the {calc.ask}?"
    elif form == "long":
        noise = list(rng.choice(IRRELEVANT_FACTS, size=min(irrelevant, len(IRRELEVANT_FACTS)), replace=False))
        sentences = [f"On review the record notes {fact}." for fact in calc.facts] + noise
        order = rng.permutation(len(sentences))
        stem = "A patient is seen in clinic. " + " ".join(sentences[i] for i in order) + f" What is the patient's {calc.ask}?"
    else:
        raise ValueError(f"form must be 'short' or 'long', got {form!r}")
    values = option_values(calc, n_options, rng)
    order = rng.permutation(n_options)
    letters = OPTION_LETTERS[:n_options]
    options = {letters[position]: values[index] for position, index in enumerate(order)}
    answer = letters[int(np.flatnonzero(order == 0)[0])]
    return Question(qid, stem, options, answer, SOURCE_DATASET, {"template": template, "steps": calc.steps, "subset": form})


def generate_split(prefix: str, templates: dict[str, Callable[[np.random.Generator], Calculation]], count: int,
                   forms: list[str], n_options: int, irrelevant: tuple[int, int], rng: np.random.Generator) -> list[Question]:
    """``count`` questions per form, cycling through the templates."""
    names = sorted(templates)
    questions = []
    for form in forms:
        for index in range(count):
            template = names[index % len(names)]
            questions.append(make_question(f"{prefix}-{form}-{index:04d}", template, templates[template](rng), form, n_options,
                                           int(rng.integers(irrelevant[0], irrelevant[1] + 1)), rng))
    return questions
