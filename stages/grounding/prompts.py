"""The AG-KD prompt strings, exactly as the official code builds them (LijunRio/AG-KD)."""
from __future__ import annotations

TASK_TOKEN = "<CAPTION_TO_PHRASE_GROUNDING>"


def prompt(class_name: str, definition: str | None = None) -> str:
    """``<CAPTION_TO_PHRASE_GROUNDING>Locate the phrases in the caption: {class}.``; with knowledge
    ``{class}`` becomes ``{class} means {definition}.`` (the definition's own final full stop is not doubled)."""
    phrase = class_name if definition is None else f"{class_name} means {definition.strip().rstrip('.')}."
    return f"{TASK_TOKEN}Locate the phrases in the caption: {phrase}."
