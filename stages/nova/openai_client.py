"""A small client for OpenAI-compatible chat endpoints, and the parsing of model answers.

The same ``POST {base_url}/chat/completions`` serves hosted GPT-4o and open models behind vLLM
(``vllm serve Qwen/Qwen2.5-VL-72B-Instruct``) or similar servers. Each request has a timeout;
timeouts, connection errors, HTTP 429 and 5xx, and a 200 reply that is not a chat completion (a
proxy's HTML page) are retried with exponential back-off, waiting at least what a
``Retry-After`` header asks (capped at :data:`MAX_RETRY_AFTER_S`, ours); other HTTP errors are
not retried. The token limit is sent as ``max_tokens`` or, for endpoints that need it (OpenAI's
newer models), ``max_completion_tokens`` (``token_limit_key``). A refusal (``content: null`` with
``refusal``) is an empty answer with the refusal recorded; ``finish_reason: "length"`` marks the
answer truncated. Every answer is cached on disk under a hash of the endpoint (``base_url``),
model, messages and generation settings, so rerunning a stage sends no request it already sent
and another server with the same model name is asked afresh.

Prompts follow the paper's protocol (zero-shot, one task per request, boxes as
``[ymin, xmin, ymax, xmax]`` on 0-1000); their exact wording was not published with the data
and is written here.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from stages.common.atomic import write_json
from stages.common.params import StrictModel

SYSTEM_PROMPT = "You are an expert neuroradiologist reading a single brain MRI slice."
LOCALISATION_PROMPT = (
    "Localise every abnormality in this brain MRI slice. Answer with JSON only: a list of objects "
    '{"box_2d": [ymin, xmin, ymax, xmax], "label": "<finding>", "confidence": <0-1>} with coordinates '
    "normalised to 0-1000 of the image height and width. Answer [] if the slice looks normal."
)  # localisation_prompt("yxyx_1000"); other box formats: localisation_prompt(box_format)
BOX_PHRASES = {  # how the localisation prompt asks for boxes in each box_format
    "yxyx_1000": ('{"box_2d": [ymin, xmin, ymax, xmax]', "with coordinates normalised to 0-1000 of the image height and width"),
    "xyxy_1000": ('{"box_2d": [xmin, ymin, xmax, ymax]', "with coordinates normalised to 0-1000 of the image width and height"),
    "xyxy_px": ('{"bbox_2d": [x1, y1, x2, y2]', "with coordinates in pixels of the image"),
}


def localisation_prompt(box_format: str = "yxyx_1000") -> str:
    """The localisation prompt asking for boxes in ``box_format`` (``yxyx_1000`` gives :data:`LOCALISATION_PROMPT`)."""
    box, scale = BOX_PHRASES[box_format]
    return ("Localise every abnormality in this brain MRI slice. Answer with JSON only: a list of objects "
            f'{box}, "label": "<finding>", "confidence": <0-1>}} {scale}. Answer [] if the slice looks normal.')


CAPTION_PROMPT = (
    "Describe the findings in this brain MRI slice in one or two sentences as a radiologist would: "
    "plane and sequence, then location, size, signal and shape of any abnormality, or say that "
    "there is no focal abnormality."
)
DIAGNOSIS_PROMPT = (
    "Clinical history: {history}\nImaging findings: {findings}\n"
    "Give the single most likely diagnosis and four alternative diagnoses, most likely first. "
    'Answer with JSON only: {{"diagnosis": "<name>", "differentials": ["<name>", "<name>", "<name>", "<name>"]}}'
)
KEYWORD_PROMPT = (
    "Extract the clinical and imaging keywords (findings, signal, location, shape, sequence, plane) "
    'from this radiology caption. Answer with JSON only: {{"keywords": ["...", "..."]}}\nCaption: {caption}'
)
MATCH_PROMPT = (
    "Gold diagnosis: {gold}\nCandidate diagnosis: {candidate}\n"
    "Do they name the same disease (synonyms and spelling variants count as the same)? Answer yes or no."
)


MAX_RETRY_AFTER_S = 300.0  # ours: the longest Retry-After honoured before a retry


RANKED_MATCH_PROMPT = (
    "Gold diagnosis: {gold}\nCandidate diagnoses, most likely first:\n{candidates}\n"
    "Does the first candidate name the gold diagnosis, and does any of the candidates? Count synonyms and "
    "spelling variants as the same, and ignore differences in specificity and etiology (a broader or narrower "
    'name of the same disease matches). Answer with JSON only: {{"top1": true|false, "top5": true|false}}'
)


class EndpointError(RuntimeError):
    """The endpoint did not give an answer (after the allowed retries)."""


class RetryableReply(EndpointError):
    """A reply that is not a chat completion (HTML from a proxy, JSON without choices): worth retrying."""


@dataclass(frozen=True)
class ChatAnswer:
    """One answer: its text ("" for a refusal), the refusal if any, and whether it was cut at the token limit."""

    text: str
    refusal: str | None = None
    truncated: bool = False


class AnswerParseError(ValueError):
    """A model answer is not in the form asked for; the message quotes its start."""


class EndpointConfig(StrictModel):
    """An OpenAI-compatible chat endpoint and how to call it (also the params of every endpoint).

    ``base_url`` may be empty in params.yaml while the endpoint is not used; the section that
    uses it refuses an empty one (see ``nova.predict`` and ``nova.evaluate``).
    """

    base_url: str
    model: str = Field(min_length=1)
    api_key_env: str                      # name of the environment variable holding the key ("" for none)
    temperature: float = Field(ge=0, le=2)
    max_tokens: int = Field(ge=1)         # the paper allowed 2048 tokens per answer
    token_limit_key: Literal["max_tokens", "max_completion_tokens"]  # the request field carrying max_tokens
    timeout_s: float = Field(gt=0)
    max_retries: int = Field(ge=0)
    backoff_s: float = Field(ge=0)

    @field_validator("base_url")
    @classmethod
    def http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (or be empty while unused), got {value!r}")
        return value

    def require_url(self, what: str) -> None:
        """Refuse an empty ``base_url`` for an endpoint that is used (``what`` says why), in a validator."""
        if not self.base_url:
            raise ValueError(f"base_url is empty, but {what}; set the endpoint (e.g. http://127.0.0.1:8000/v1)")


@dataclass
class ClientStats:
    requests: int = 0        # HTTP requests sent (retries included)
    successes: int = 0       # requests that returned an answer
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0        # calls that gave up

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "successes": self.successes, "cache_hits": self.cache_hits,
                "retries": self.retries, "failures": self.failures}

    @property
    def unusable(self) -> bool:
        """Calls were made and none was answered, neither by the endpoint nor by the cache."""
        return self.failures > 0 and self.successes == 0 and self.cache_hits == 0


@dataclass
class ChatClient:
    """``complete(messages) -> answer text``, cached, with timeouts and retries."""

    config: EndpointConfig
    cache_dir: Path | None = None
    stats: ClientStats = field(default_factory=ClientStats)

    @property
    def endpoint(self) -> str:
        """The endpoint's URL as keyed and recorded (no trailing slash; never the key)."""
        return self.config.base_url.rstrip("/")

    def settings(self) -> dict[str, Any]:
        """The generation settings sent with every request (and part of the cache key)."""
        return {"temperature": self.config.temperature, self.config.token_limit_key: self.config.max_tokens}

    def cache_key(self, messages: list[dict[str, Any]]) -> str:
        payload = {"endpoint": self.endpoint, "model": self.config.model, "messages": messages, **self.settings()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def complete(self, messages: list[dict[str, Any]]) -> str:
        """The answer's text ("" for a refusal)."""
        return self.complete_answer(messages).text

    def complete_answer(self, messages: list[dict[str, Any]]) -> ChatAnswer:
        key = self.cache_key(messages)
        cached = self._cache_path(key)
        if cached is not None and cached.is_file():
            self.stats.cache_hits += 1
            stored = json.loads(cached.read_text())
            return ChatAnswer(stored["answer"], stored.get("refusal"), bool(stored.get("truncated", False)))
        answer = self._request_with_retries(messages)
        if cached is not None:
            write_json(cached, {"endpoint": self.endpoint, "model": self.config.model, "answer": answer.text,
                                "refusal": answer.refusal, "truncated": answer.truncated})
        return answer

    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.json"

    def _request_with_retries(self, messages: list[dict[str, Any]]) -> ChatAnswer:
        last_problem, wait_at_least = "", 0.0
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                self.stats.retries += 1
                time.sleep(max(self.config.backoff_s * 2 ** (attempt - 1), wait_at_least))
            wait_at_least = 0.0
            try:
                answer = self._request(messages)
                self.stats.successes += 1
                return answer
            except urllib.error.HTTPError as error:
                last_problem = f"HTTP {error.code} {error.reason}"
                if error.code != 429 and error.code < 500:
                    break
                wait_at_least = retry_after_seconds(error.headers.get("Retry-After") if error.headers else None)
            except RetryableReply as error:
                last_problem = str(error)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                reason = getattr(error, "reason", error)
                last_problem = f"{type(error).__name__}: {reason}"
        self.stats.failures += 1
        raise EndpointError(f"{self.endpoint}: no answer after {self.config.max_retries + 1} attempt(s) ({last_problem})")

    def _request(self, messages: list[dict[str, Any]]) -> ChatAnswer:
        body = json.dumps({"model": self.config.model, "messages": messages, **self.settings()}).encode()
        headers = {"Content-Type": "application/json"}
        api_key = os.environ.get(self.config.api_key_env, "")
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        request = urllib.request.Request(self.endpoint + "/chat/completions", data=body, headers=headers, method="POST")
        self.stats.requests += 1
        with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
            raw = response.read()
        return parse_completion(raw, self.endpoint)


def retry_after_seconds(value: str | None) -> float:
    """Seconds a ``Retry-After`` header asks to wait (a number or an HTTP date), capped; 0 without one."""
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 0.0
        seconds = when.timestamp() - time.time()
    return float(min(max(seconds, 0.0), MAX_RETRY_AFTER_S))


def parse_completion(raw: bytes, endpoint: str) -> ChatAnswer:
    """A chat completion's answer; a reply that is not one raises :class:`RetryableReply` quoting its start."""
    text = raw.decode("utf-8", errors="replace")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        raise RetryableReply(f"{endpoint}: a 200 reply that is not JSON (starts {_quote(text)})") from None
    try:
        choice = payload["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise RetryableReply(f"{endpoint}: a reply without choices[0].message (starts {_quote(text)})") from None
    if not isinstance(message, dict):
        raise RetryableReply(f"{endpoint}: choices[0].message is not an object (starts {_quote(text)})")
    content, refusal = message.get("content"), message.get("refusal")
    if isinstance(content, list):  # some servers return content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    truncated = choice.get("finish_reason") == "length" if isinstance(choice, dict) else False
    if content is None:
        return ChatAnswer("", str(refusal) if refusal else "no content and no refusal", truncated)
    return ChatAnswer(str(content), str(refusal) if refusal else None, truncated)


# --------------------------------------------------------------------------- messages
def image_message(prompt: str, png_bytes: bytes) -> list[dict[str, Any]]:
    """System prompt plus a user turn with the slice (PNG data URL) and the task."""
    url = "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": prompt}]}]


def text_message(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]


# --------------------------------------------------------------------------- parsing
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _quote(text: str) -> str:
    short = " ".join(text.split())
    return repr(short[:120] + ("..." if len(short) > 120 else ""))


def extract_json(text: str) -> Any:
    """The first JSON value in an answer (inside a code fence or bare)."""
    fenced = _FENCE.search(text)
    candidate = fenced.group(1) if fenced else text
    decoder = json.JSONDecoder()
    for index, char in enumerate(candidate):
        if char in "[{":
            try:
                return decoder.raw_decode(candidate[index:])[0]
            except json.JSONDecodeError:
                continue
    raise AnswerParseError(f"no JSON found in the answer {_quote(text)}")


def _number_list(value: Any) -> list[float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    return None


BOX_KEYS = ("bbox_2d", "box_2d", "bbox", "box")


def parse_boxes(text: str) -> tuple[list[list[float]], list[float] | None]:
    """Boxes as the model wrote them (four numbers each, in its ``box_format``) and confidences
    (None unless every box has one).

    Accepts a list of 4-number lists, one flat ``[x1, y1, x2, y2]`` list, a list of objects with
    ``bbox_2d`` (Qwen2.5-VL's native form), ``box_2d``, ``bbox`` or ``box``, one such object, or an
    object holding such a list under ``boxes``/``detections``/``objects``/``abnormalities``.
    Raises AnswerParseError otherwise.
    """
    data = extract_json(text)
    if isinstance(data, dict):
        for key in ("boxes", "detections", "objects", "abnormalities"):
            if key in data:
                data = data[key]
                break
        else:
            data = [data] if any(k in data for k in BOX_KEYS) else data
    if _number_list(data) is not None:
        data = [data]  # one flat [x1, y1, x2, y2]
    if not isinstance(data, list):
        raise AnswerParseError(f"expected a list of boxes, got {type(data).__name__} in {_quote(text)}")
    boxes, scores = [], []
    for item in data:
        box = _number_list(item)
        score = None
        if box is None and isinstance(item, dict):
            box = next((_number_list(item[k]) for k in BOX_KEYS if k in item), None)
            raw = item.get("confidence", item.get("score"))
            score = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
        if box is None:
            raise AnswerParseError(f"a box is not four numbers: {item!r:.80} in {_quote(text)}")
        boxes.append(box)
        scores.append(score)
    return boxes, (scores if boxes and all(s is not None for s in scores) else None)


def parse_diagnoses(text: str, count: int = 5) -> list[str]:
    """Up to ``count`` diagnoses, most likely first, from JSON or from a numbered/bulleted list."""
    try:
        data = extract_json(text)
    except AnswerParseError:
        data = None
    names: list[str] = []
    if isinstance(data, dict):
        first = data.get("diagnosis") or data.get("most_likely") or data.get("primary")
        if isinstance(first, str):
            names.append(first)
        for key in ("differentials", "alternatives", "differential", "others"):
            if isinstance(data.get(key), list):
                names.extend(str(v) for v in data[key] if isinstance(v, (str, int, float)))
                break
    elif isinstance(data, list):
        names = [str(v) for v in data if isinstance(v, (str, int, float))]
    if not names:
        lines = [re.sub(r"^\s*(?:\d+[.)]|[-*•])\s*", "", line).strip() for line in text.splitlines()]
        names = [line for line, raw in zip(lines, text.splitlines(), strict=True) if line and re.match(r"^\s*(?:\d+[.)]|[-*•])", raw)]
    names = [n.strip() for n in names if n and n.strip()]
    if not names:
        raise AnswerParseError(f"no diagnosis found in the answer {_quote(text)}")
    return names[:count]


def parse_caption(text: str) -> str:
    """The caption text (code fences and surrounding quotes removed); empty is a parse error."""
    cleaned = _FENCE.sub(lambda m: m.group(1), text).strip().strip('"').strip()
    if not cleaned:
        raise AnswerParseError("empty caption")
    return " ".join(cleaned.split())


def parse_yes_no(text: str) -> bool:
    """A yes/no answer (its first word decides)."""
    words = re.findall(r"[a-z]+", text.lower())
    if words and words[0] in ("yes", "no"):
        return words[0] == "yes"
    raise AnswerParseError(f"not a yes/no answer: {_quote(text)}")


def parse_top_hits(text: str) -> tuple[bool, bool]:
    """(top-1 hit, top-5 hit) from ``{"top1": ..., "top5": ...}``; a top-1 hit is also a top-5 hit."""
    data = extract_json(text)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), bool) for k in ("top1", "top5")):
        raise AnswerParseError(f"expected {{\"top1\": true|false, \"top5\": true|false}} in {_quote(text)}")
    return data["top1"], data["top1"] or data["top5"]


def parse_keywords(text: str) -> list[str]:
    data = extract_json(text)
    if isinstance(data, dict):
        data = data.get("keywords")
    if not isinstance(data, list):
        raise AnswerParseError(f"no keyword list in {_quote(text)}")
    return [str(v).strip().lower() for v in data if str(v).strip()]
