"""A real OpenAI-compatible Chat Completions server on 127.0.0.1 for tests and benchmarks/translate.py.

It answers POST .../chat/completions from a thread pool (http.server, HTTP/1.1 keep-alive). Each request gets a
mode from `plan(n, body)`: ok, 429 (with Retry-After), 500, timeout (holds the connection past the client's
timeout), garbage (200 with a non-JSON body), empty (content ""), english (returns the source untranslated),
wrong_register (Korean in the opposite register), placeholders (drops the ⟦n⟧ placeholders). "ok" answers come
from `translator(masked_source, register)`; the register is read from the prompt's "Target register: X" line.
"""
from __future__ import annotations

import itertools
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import yaml

from koblla.translate.segment import PLACEHOLDER_RE, mask, mask_with

REPO_ROOT = Path(__file__).resolve().parents[1]
_REGISTER_RE = re.compile(r"Target register: (\w+)")

Plan = Callable[[int, dict], str]
Translator = Callable[[str, str], str]


def reference_translator(sample_yaml: Path = REPO_ROOT / "assets/lima/sample.yaml") -> Translator:
    """Serve the shipped reference translations (masked with the request's own placeholders)."""
    table: dict[tuple[str, str], tuple[list[str], str]] = {}
    for item in yaml.safe_load(sample_yaml.read_text(encoding="utf-8")):
        for i, turn in enumerate(item["turns"]):
            m = mask(turn["en"].strip())
            if i % 2 == 0:
                table[m.text, "banmal"] = (m.spans, turn["ko"].strip())
            else:
                table[m.text, "hapsyo"] = (m.spans, turn["ko"].strip())
                table[m.text, "haeyo"] = (m.spans, turn.get("ko_haeyo", turn["ko"]).strip())

    def translate(masked: str, register: str) -> str:
        if (masked, register) not in table:
            return synthetic_translation(masked, register)
        spans, ko = table[masked, register]
        return mask_with(ko, spans)

    return translate


_SENTENCES = {
    "banmal": ["이건 내가 직접 해 본 방법이야.", "그래서 결과가 어떻게 될지 궁금해.", "이 부분을 좀 더 알려 줘."],
    "hapsyo": ["이 방법은 대부분의 경우에 잘 동작합니다.", "자세한 내용은 아래에서 설명합니다.", "먼저 설정을 확인하십시오."],
    "haeyo": ["이 방법은 대부분의 경우에 잘 동작해요.", "자세한 내용은 아래에서 설명할게요.", "먼저 설정을 확인하세요."],
}
OPPOSITE = {"banmal": "hapsyo", "hapsyo": "banmal", "haeyo": "banmal"}


def synthetic_translation(masked: str, register: str, ratio: float = 0.5) -> str:
    """Valid-looking Korean in `register`, about `ratio` x the source's length, keeping every placeholder."""
    plain = PLACEHOLDER_RE.sub("", masked)
    target = max(8, int(len(plain) * ratio))
    sents = _SENTENCES.get(register, _SENTENCES["hapsyo"])
    out, i = [], 0
    while sum(len(s) for s in out) < target:
        out.append(sents[i % len(sents)])
        i += 1
    text = " ".join(out)
    # Code blocks stay on their own lines; other placeholders go inline.
    holders = PLACEHOLDER_RE.findall(masked)
    return text + "".join(f"\n\n⟦{n}⟧\n\n" if f"⟦{n}⟧" in masked.split("\n") else f" ⟦{n}⟧" for n in holders)


def always(mode: str) -> Plan:
    return lambda n, body: mode


def sequence(*modes: str, then: str = "ok") -> Plan:
    """Modes for the first requests in arrival order, then `then`."""
    lock = threading.Lock()
    it = iter(modes)

    def plan(n, body):
        with lock:
            return next(it, then)

    return plan


def sequence_for_first(*modes: str, then: str = "ok") -> Plan:
    """Modes for the requests that carry the FIRST request's user message (its retries), then `then`; other
    messages get `then`. Unlike `sequence`, it does not depend on which chunk wins a free slot."""
    lock = threading.Lock()
    it = iter(modes)
    first: list[str] = []

    def plan(n, body):
        user = next((m.get("content") for m in body.get("messages", []) if m.get("role") == "user"), "")
        with lock:
            if not first:
                first.append(user)
            return next(it, then) if user == first[0] else then

    return plan


def random_faults(probs: dict[str, float], seed: int = 0) -> Plan:
    rng, lock = random.Random(seed), threading.Lock()

    def plan(n, body):
        with lock:
            x = rng.random()
        for mode, p in probs.items():
            if x < p:
                return mode
            x -= p
        return "ok"

    return plan


def _quiet_error(self, request, client_address):
    """Clients that time out or get killed reset their connections: expected here, not worth a traceback."""
    import sys

    if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
        ThreadingHTTPServer.handle_error(self, request, client_address)


class FakeLLMServer:
    """with FakeLLMServer(plan=...) as srv: srv.base_url -> "http://127.0.0.1:PORT/v1"."""

    def __init__(self, plan: Plan = always("ok"), translator: Translator | None = None, latency_s: float = 0.0,
                 hang_s: float = 5.0, retry_after: str = "0.05"):
        self.plan, self.translator = plan, translator or reference_translator()
        self.latency_s, self.hang_s, self.retry_after = latency_s, hang_s, retry_after
        self.requests = 0
        self.in_flight = self.max_in_flight = 0
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), user message) of each request
        self.completions: list[tuple[float, str]] = []  # (time.monotonic(), mode) of each answered request
        self.service_times: list[float] = []  # seconds from request read to response ready (not timeouts)
        self.modes: list[str] = []
        self.auth_headers: set[str] = set()
        self._mode_of: dict[int, str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        # The default listen backlog (5) drops SYNs when 16+ clients connect at once: the kernel retries after
        # 1 s, which a short client timeout sees as a timeout.
        server_cls = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 256, "handle_error": _quiet_error})
        self.httpd = server_cls(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = self.max_in_flight = 0
            self.modes.clear()
            self.arrivals.clear()
            self.completions.clear()
            self.service_times.clear()

    def _answer(self, body: dict) -> tuple[int, dict, bytes]:
        user = next((m.get("content") for m in body.get("messages", []) if m.get("role") == "user"), "")
        with self._lock:  # one block, so arrivals[i] and modes[i] describe the same request
            self.requests += 1
            n = next(self._ids)  # never reset: requests still hanging from before a reset keep their own ids
            mode = self._mode_of[n] = self.plan(self.requests, body)
            self.modes.append(mode)
            self.arrivals.append((time.monotonic(), user))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        started = time.monotonic()
        try:
            return self._respond(n, body)
        finally:
            with self._lock:
                self.in_flight -= 1
                mode = self._mode_of.pop(n, "?")
                if not self._closing.is_set():
                    now = time.monotonic()
                    self.completions.append((now, mode))
                    if mode != "timeout":
                        self.service_times.append(now - started)

    def _respond(self, n: int, body: dict) -> tuple[int, dict, bytes]:
        mode = self._mode_of[n]
        msgs = body.get("messages", [])
        system = next((m["content"] for m in msgs if m["role"] == "system"), "")
        source = next((m["content"] for m in msgs if m["role"] == "user"), "")
        reg = _REGISTER_RE.search(system)
        register = reg.group(1) if reg else "hapsyo"
        if mode == "timeout":
            self._closing.wait(self.hang_s)
            return 504, {}, b""
        if self.latency_s:
            time.sleep(self.latency_s)
        if mode == "429":
            return 429, {"Retry-After": self.retry_after}, b'{"error": {"message": "rate limited"}}'
        if mode == "500":
            return 500, {}, b'{"error": {"message": "internal error"}}'
        if mode == "garbage":
            return 200, {}, b'{"choices": [ this is not json'
        content = {
            "ok": lambda: self.translator(source, register),
            "empty": lambda: "",
            "english": lambda: source,
            "wrong_register": lambda: synthetic_translation(source, OPPOSITE.get(register, "banmal")),
            "placeholders": lambda: PLACEHOLDER_RE.sub("", self.translator(source, register)),
        }[mode]()
        payload = {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(system + source) // 4, "completion_tokens": len(content) // 2},
        }
        return 200, {}, json.dumps(payload, ensure_ascii=False).encode("utf-8")

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the body waits for the client's delayed ACK
            # (~40 ms per keep-alive request), which would be charged to the client under test.
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                with server._lock:
                    server.auth_headers.add(self.headers.get("Authorization", ""))
                if not self.path.endswith("/chat/completions"):
                    status, headers, data = 404, {}, b'{"error": "not found"}'
                else:
                    status, headers, data = server._answer(json.loads(raw))
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        return Handler
