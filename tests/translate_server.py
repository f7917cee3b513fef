"""A real OpenAI-compatible Chat Completions server on 127.0.0.1 for tests and benchmarks/translate.py.

It answers POST .../chat/completions and GET .../models from a thread pool (http.server, HTTP/1.1 keep-alive).
Each request gets a mode from `plan(n, body)`: ok, 429 (with Retry-After), 500, timeout (holds the connection past
the client's timeout), garbage (200 with a non-JSON body), gemini_400 (Gemini's real invalid-key error), or one of
FAULT_MODES: a 200 reply that is wrong in one way the quality gate must catch (commentary, truncation, wrong
script, invented sentences, reordered or rewritten code, untranslated, wrong register, lost placeholders, empty).
"ok" answers come from `translator(masked_source, register)`; the register is read from the prompt's
"Target register: X" line.
"""
from __future__ import annotations

import itertools
import json
import random
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from koblla.text.verbatim import PLACEHOLDER_RE, mask, mask_with

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
    "hapsyo": ["이 방법은 대부분의 경우에 잘 동작합니다.", "자세한 내용은 아래에서 설명합니다.",
               "먼저 설정을 확인하십시오."],
    "haeyo": ["이 방법은 대부분의 경우에 잘 동작해요.", "자세한 내용은 아래에서 설명할게요.",
              "먼저 설정을 확인하세요."],
}
_FILLERS = ["처음부터 차근차근", "작은 변경부터", "각 단계마다 꼼꼼하게", "기존 설정을 그대로 두고", "가능하면 천천히"]
OPPOSITE = {"banmal": "hapsyo", "hapsyo": "banmal", "haeyo": "banmal"}
_SENT_RE = re.compile(r"[.!?](?=[\s\"')\]*_]|$)")
_PREFIX_RE = re.compile(r"^([ \t]*(?:#{1,6}[ \t]+|[-*+][ \t]+|\d{1,3}[.)][ \t]+)*)")


def _letters(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def _korean_line(line: str, register: str, ratio: float, k: int) -> str:
    """One line of valid-looking Korean: its markdown prefix, as many sentences as the source line, about `ratio`
    x its letters, its placeholders in order at the end."""
    prefix = _PREFIX_RE.match(line).group(1)
    body = line[len(prefix):]
    holders = PLACEHOLDER_RE.findall(body)
    plain = PLACEHOLDER_RE.sub("", body)
    if not _letters(plain):
        return line  # a placeholder-only line (a code block) stays as it is
    n = len(_SENT_RE.findall(plain))
    sents = _SENTENCES.get(register, _SENTENCES["hapsyo"])
    per = max(6, int(_letters(plain) * ratio / max(n, 1)))
    out = []
    for i in range(max(n, 1)):
        base = sents[(k + i) % len(sents)]
        if _letters(base) > 1.3 * per:  # a short source sentence ("Thanks!"): the last words only
            base = " ".join(base.split()[-2:])
        fill, j = [], 0
        while _letters(" ".join(fill) + base) < per and j < 12:
            fill.append(_FILLERS[(k + i + j) % len(_FILLERS)])
            j += 1
        out.append(" ".join([*fill, base]))
    # Numbers and acronyms stay as written in a real translation (the gate checks them).
    terms = re.findall(r"(?<![\w.])(?:\d+(?:[.,:]\d+)*|[A-Z][A-Z0-9]{2,}s?)(?!\w)", plain)
    text = " ".join([*terms, *out])
    if n == 0:  # a heading, a list item or a lead-in without a full stop keeps none
        text = text.rstrip(".?!") + (":" if plain.rstrip().endswith(":") else "")
    if holders:
        if n:
            head, dot = text[:-1], text[-1]
            text = head + "".join(f" ⟦{h}⟧" for h in holders) + dot
        else:
            text += "".join(f" ⟦{h}⟧" for h in holders)
    return prefix + text


def synthetic_translation(masked: str, register: str, ratio: float = 0.5) -> str:
    """Valid-looking Korean in `register` with the source's structure: same paragraphs, lines, list and heading
    markers, sentence counts and placeholders (in order), about `ratio` x the source's letters."""
    return "\n".join(_korean_line(line, register, ratio, k) if line.strip() else line
                     for k, line in enumerate(masked.split("\n")))


# ---- faulty replies: one per fault class the quality gate must catch -------------------------------------------
_CHINESE = "这个方法在大多数情况下都能正常工作。请先检查设置。"
_JAPANESE = "この方法はほとんどの場合にうまく動作します。まず設定を確認してください。"


def _split_sentences(text: str) -> list[str]:
    return [x for x in re.split(r"(?<=[.!?])[ \t]+", text) if x]


def _cut(text: str) -> str | None:
    """Cut after two of three sentences (the last third of the reply's sentences dropped), None when too short."""
    sents = _split_sentences(text.strip())
    if len(sents) < 3:
        return None
    return " ".join(sents[: (2 * len(sents)) // 3])


def _reorder(text: str) -> str | None:
    holders = PLACEHOLDER_RE.findall(text)
    if len(holders) < 2:
        return None
    a, b = f"⟦{holders[0]}⟧", f"⟦{holders[1]}⟧"
    return text.replace(a, "\x00").replace(b, a).replace("\x00", b)


def _rewrite_code(text: str, masked: str) -> str | None:
    """A code placeholder replaced by the model's own version of the block (a comment translated)."""
    for line in masked.split("\n"):
        if PLACEHOLDER_RE.fullmatch(line.strip()):
            return text.replace(line.strip(), "```python\n# 결과를 출력합니다\nprint(x)\n```", 1)
    return None


def _foreign(text: str, foreign: str) -> str:
    holders = "".join(f" ⟦{h}⟧" for h in PLACEHOLDER_RE.findall(text))
    return (foreign * max(1, len(text) // len(foreign)))[: max(len(foreign), len(text) // 2)] + holders


def faulty_reply(mode: str, masked: str, good: str, register: str) -> tuple[str | None, str]:
    """(content, finish_reason) of a faulty reply of class `mode` to `masked` (whose correct translation is
    `good`); content None when the class does not apply to this source (e.g. reordering needs two spans)."""
    paragraphs = good.split("\n\n")
    last = paragraphs[-1]
    invented = " ".join(_SENTENCES[register][i % 3].replace("이 방법은", "이 밖에도 여러 방법이") for i in range(3))
    faults = {
        "preamble_ko": lambda: "다음은 요청하신 번역입니다:\n\n" + good,
        "preamble_en": lambda: "Here is the translation:\n\n" + good,
        "preamble_sure": lambda: "물론입니다! " + good,
        "trailing_ko": lambda: good + "\n\n(참고: 원문의 뉘앙스를 살려 자연스럽게 옮겼습니다.)",
        "trailing_en": lambda: good + "\n\nNote: technical terms were kept in English.",
        "truncated_length": lambda: good[: len(good) // 2],
        "thinking_empty": lambda: "",
        "truncated_cut": lambda: (c := _cut(last)) and "\n\n".join([*paragraphs[:-1], c]),
        "chinese": lambda: _foreign(good, _CHINESE),
        "japanese": lambda: _foreign(good, _JAPANESE),
        "mixed_script": lambda: good.replace(".", ". " + _CHINESE[:12] + ".", 1) if "." in good else None,
        "over_long": lambda: "\n\n".join([*paragraphs[:-1], last + " " + invented]),
        "code_reorder": lambda: _reorder(good),
        "code_rewritten": lambda: _rewrite_code(good, masked),
        "english": lambda: masked,
        "wrong_register": lambda: synthetic_translation(masked, OPPOSITE.get(register, "banmal")),
        "placeholders": lambda: PLACEHOLDER_RE.sub("", good) if PLACEHOLDER_RE.search(good) else None,
        "empty": lambda: "",
    }
    content = faults[mode]()
    finish = "length" if mode in ("truncated_length", "thinking_empty") else "stop"
    return content, finish


FAULT_MODES = ("preamble_ko", "preamble_en", "preamble_sure", "trailing_ko", "trailing_en", "truncated_length",
               "thinking_empty", "truncated_cut", "chinese", "japanese", "mixed_script", "over_long", "code_reorder",
               "code_rewritten", "english", "wrong_register", "placeholders", "empty")
# Gemini's OpenAI-compatible endpoint answers a wrong key with HTTP 400 and this body (a list around Google's error)
GEMINI_INVALID_KEY_BODY = [{"error": {
    "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
    "details": [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
         "metadata": {"service": "generativelanguage.googleapis.com"}},
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
         "message": "API key not valid. Please pass a valid API key."},
    ]}}]


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


def fault_cycle(modes=None, translator: Translator | None = None) -> Plan:
    """Each request gets a fault class that applies to its text (reordering needs two spans, a cut needs three
    sentences ...), the least used one first, so every class is exercised; "ok" when none applies."""
    modes = list(modes or FAULT_MODES)
    translator = translator or reference_translator()
    lock, used = threading.Lock(), {m: 0 for m in modes}

    def plan(n, body):
        msgs = body.get("messages", [])
        system = next((m["content"] for m in msgs if m["role"] == "system"), "")
        source = msgs[-1]["content"] if msgs else ""
        reg = _REGISTER_RE.search(system)
        register = reg.group(1) if reg else "hapsyo"
        good = translator(source, register)
        fits = [m for m in modes
                if m in ("empty", "thinking_empty") or faulty_reply(m, source, good, register)[0] is not None]
        if not fits:
            return "ok"
        with lock:  # the least used class that applies: rare ones (two code blocks ...) are never starved
            mode = min(fits, key=lambda m: used[m])
            used[mode] += 1
        return mode

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

    def __init__(self, plan: Plan | None = None, translator: Translator | None = None, latency_s: float = 0.0,
                 hang_s: float = 5.0, retry_after: str = "0.05", models: list[str] | None = None,
                 valid_key: str | None = None):
        self.plan, self.translator = plan or always("ok"), translator or reference_translator()
        # GET /models lists `models` (None: an empty list); with `valid_key`, any other key gets Gemini's 400.
        self.models, self.valid_key = models, valid_key
        self.bodies: list[dict] = []  # every chat request body, in arrival order
        self.gets: list[str] = []  # paths of GET requests
        self.sent: list[tuple[str, str, str]] = []  # (mode as sent, masked source, content) of every 200 reply
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
            self.bodies.clear()
            self.gets.clear()
            self.sent.clear()
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
            self.bodies.append(body)
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
        if mode == "gemini_400":
            return 400, {}, json.dumps(GEMINI_INVALID_KEY_BODY).encode()
        finish = "stop"
        good = self.translator(source, register)
        if mode == "ok":
            content = good
        else:
            content, finish = faulty_reply(mode, source, good, register)
            if content is None:  # the class does not apply to this text: answer correctly, counted as "ok"
                content, finish, mode = good, "stop", "ok"
                with self._lock:
                    self._mode_of[n] = "ok"
        with self._lock:
            self.sent.append((mode, source, content))
        payload = {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
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

            def _bad_key(self) -> bool:
                key = server.valid_key
                return key is not None and self.headers.get("Authorization") != f"Bearer {key}"

            def do_GET(self):
                with server._lock:
                    server.auth_headers.add(self.headers.get("Authorization", ""))
                    server.gets.append(self.path)
                if self._bad_key():
                    self._send(400, {}, json.dumps(GEMINI_INVALID_KEY_BODY).encode())
                elif self.path.endswith("/models"):
                    data = [{"id": m, "object": "model", "owned_by": "koblla-test"} for m in server.models or []]
                    self._send(200, {}, json.dumps({"object": "list", "data": data}).encode())
                else:
                    self._send(404, {}, b'{"error": {"message": "not found"}}')

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                with server._lock:
                    server.auth_headers.add(self.headers.get("Authorization", ""))
                if self._bad_key():
                    status, headers, data = 400, {}, json.dumps(GEMINI_INVALID_KEY_BODY).encode()
                elif not self.path.endswith("/chat/completions"):
                    status, headers, data = 404, {}, b'{"error": "not found"}'
                else:
                    status, headers, data = server._answer(json.loads(raw))
                self._send(status, headers, data)

            def _send(self, status, headers, data):
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
