"""The training variants (the paper's data questions): informativeness (long, short) and difficulty (easy, hard, mixed)."""

VARIANTS = ("long", "short", "easy", "hard", "mixed")
