"""A local OpenAI-compatible /chat/completions stub (127.0.0.1, in a thread; no real network).

Used by the adapter tests and by the end-to-end run of the nova pipeline (the stages, run by
``dvc repro`` in subprocesses, send their requests to it)::

    with running_stub() as stub:
        set_params(root, {**TINY, **endpoint_params(stub)})
        run_dvc(root, "repro", "--glob", "nova-*")
        assert len(stub.requests) == ...
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GOOD_BOXES = '```json\n[{"box_2d": [250, 100, 500, 300], "label": "lesion", "confidence": 0.8}]\n```'
GOOD_CAPTION = "Axial FLAIR image shows a hyperintense lesion in the right frontal white matter."
GOOD_DIAGNOSES = '{"diagnosis": "GBM", "differentials": ["Lymphoma", "Abscess", "Metastasis", "Tumefactive MS"]}'


def sensible_answer(body: dict) -> str:
    text = json.dumps(body["messages"][-1]["content"])
    if "Localise" in text:
        return GOOD_BOXES
    if "Describe the findings" in text:
        return GOOD_CAPTION
    return GOOD_DIAGNOSES


class StubServer:
    """An OpenAI-compatible /chat/completions stub. ``script`` items are used first, one per request:
    ("delay", seconds) answers late, ("status", code) fails, ("status", (code, headers)) fails with
    headers (e.g. Retry-After), ("answer", text) answers that text, ("payload", dict) answers that
    whole chat-completion object (refusals, finish_reason), ("raw", (content type, bytes)) answers
    200 with that body (a proxy's HTML page)."""

    def __init__(self, answer: Callable[[dict], str] = sensible_answer) -> None:
        self.requests: list[dict] = []
        self.times: list[float] = []   # when each request arrived (monotonic)
        self.script: list[tuple[str, object]] = []
        self.answer = answer
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                kind, value = stub.script.pop(0) if stub.script else ("answer", None)
                stub.times.append(time.monotonic())
                if kind == "status":
                    code, headers = value if isinstance(value, tuple) else (value, {})
                    self.send_response(int(code))
                    for name, header in headers.items():
                        self.send_header(name, header)
                    self.end_headers()
                    return
                if kind == "delay":
                    time.sleep(float(value))
                content_type = "application/json"
                if kind == "raw":
                    content_type, payload = value
                elif kind == "payload":
                    payload = json.dumps(value).encode()
                else:
                    text = value if kind == "answer" and value is not None else stub.answer(body)
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text},
                                                       "finish_reason": "stop"}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@contextlib.contextmanager
def running_stub(answer: Callable[[dict], str] = sensible_answer) -> Iterator[StubServer]:
    """A started stub, shut down on exit."""
    server = StubServer(answer)
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def endpoint_params(stub: StubServer, key: str = "nova.predict.openai_compatible", enable: bool = True) -> dict[str, Any]:
    """params.yaml overrides pointing the endpoint section ``key`` at the stub (quick retries; ``enabled`` if asked)."""
    return {f"{key}.base_url": stub.url, f"{key}.backoff_s": 0.01, **({f"{key}.enabled": True} if enable else {})}
