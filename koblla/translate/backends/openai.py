"""The `openai` backend: any OpenAI-compatible Chat Completions endpoint over async httpx.

Concurrency: at most `concurrency` requests in flight (a slot is held only while a request is on the wire, never
during a backoff sleep, so failing requests do not starve the others; retries take free slots before first tries,
so they do not pile up into a long tail at the end of the run). Quotas: RPM and TPM token buckets.
Transport retries (429, 5xx, timeouts, connection errors, unreadable JSON): up to `max_retries`, sleeping
full-jitter exponential backoff, min(backoff_max_s, backoff_base_s * 2**retry) * U(0, 1), but never less than the
server's Retry-After. Configuration errors (401/403/404) stop the run. Validation failures re-translate up to
max_attempts with a note on why, at a temperature raised by 0.3 per attempt (a deterministic model repeats itself).

The API key is read from the environment variable NAMED in params and goes only into the Authorization header:
it is never logged, stored or put into an exception message.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import multiprocessing
import os
import random
import re
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import httpx
from tqdm import tqdm

from koblla.translate.backends.base import Backend, BackendError, Job, judge
from koblla.translate.ratelimit import PrioritySlots, RateLimiter
from koblla.translate.register import kiwi
from koblla.translate.segment import estimate_tokens

log = logging.getLogger(__name__)
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FATAL_STATUS = {401: "the API key was rejected", 403: "access denied", 404: "unknown URL or model"}


class Retryable(Exception):
    def __init__(self, kind: str, retry_after: float | None = None):
        super().__init__(kind)
        self.kind, self.retry_after = kind, retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number (fractions allowed) or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def read_api_key(env_name: str) -> str:
    if not _ENV_NAME_RE.fullmatch(env_name or ""):
        # Do not echo the value: a user may have pasted the key itself here.
        raise BackendError(
            "translate.openai.api_key_env must be the NAME of an environment variable (like GEMINI_API_KEY), "
            "not a key; put the key in that variable, never in params.yaml"
        )
    key = os.environ.get(env_name)
    if not key:
        raise BackendError(
            f"environment variable {env_name} (translate.openai.api_key_env) is not set: export {env_name}=<your key> "
            f"(a local server without auth such as vLLM or Ollama accepts any value, e.g. export {env_name}=none)"
        )
    return key


# Validation runs in a worker process: kiwipiepy holds the GIL while it analyses (about 1 ms a sentence, so 10+ ms
# for a long answer), which from a thread stalls the event loop and leaves slots idle between one response and the
# next request. One worker per Python process, started on first use and kept (loading its analyser takes
# seconds), so later runs in the same process (tests, notebooks) do not pay for it again.
_validator: ProcessPoolExecutor | None = None
_validator_lock = threading.Lock()


def validator_pool() -> ProcessPoolExecutor:
    global _validator
    with _validator_lock:
        if _validator is None:
            # "spawn": a fork of this process could inherit locks held by its other threads.
            _validator = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_validator_init, initargs=(os.getpid(),))
        return _validator


def _drop_validator_pool(pool: ProcessPoolExecutor) -> None:
    global _validator
    with _validator_lock:
        if _validator is pool:
            _validator = None
    pool.shutdown(wait=False, cancel_futures=True)


def _validator_init(parent_pid: int) -> None:
    """In the validator process: load the analyser, and exit when the stage process is gone (even kill -9)."""
    kiwi()

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


def _validator_ready() -> bool:
    return True


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, params, prompt, limits):
        super().__init__(params, prompt, limits)
        self.cfg = params.openai
        self._api_key = read_api_key(self.cfg.api_key_env)
        self.url = self.cfg.base_url.rstrip("/") + "/chat/completions"
        self._rng = random.Random()
        # httpx logs every request at INFO: keep the stage log to what matters (it never logs headers anyway).
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))

    def run(self, jobs, accept):
        self._pool = pool = validator_pool()
        try:
            ready = pool.submit(_validator_ready)  # starts the worker (its analyser loads in seconds) ...
            kiwi()  # ... while this process loads its own, for the register metrics after the run
            ready.result()
            return asyncio.run(self._run_all(jobs, accept))
        except BrokenProcessPool as e:
            _drop_validator_pool(pool)
            raise BackendError(f"the translation validator process died ({e}); rerun the stage: finished "
                               "translations are in the translation memory and will not be requested again") from None

    async def _run_all(self, jobs: list[Job], accept) -> dict[str, list[str]]:
        c = self.cfg
        self._slots = PrioritySlots(c.concurrency)
        self._limiter = RateLimiter(c.rpm, c.tpm)
        flagged: dict[str, list[str]] = {}
        bar = tqdm(total=len(jobs), desc="translate", unit="chunk", disable=None)
        headers = {"Authorization": f"Bearer {self._api_key}"}
        pool = httpx.Limits(max_connections=c.concurrency, max_keepalive_connections=c.concurrency)
        async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(c.timeout_s), limits=pool) as client:

            async def one(job: Job) -> None:
                reasons = await self._translate(client, job, accept)
                if reasons:
                    flagged[job.key] = reasons
                    log.warning("flagged %s after %d attempt(s): %s", job.where, self.params.max_attempts, reasons)
                bar.update(1)

            tasks = [asyncio.create_task(one(j)) for j in jobs]
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            finally:
                bar.close()
        return flagged

    async def _translate(self, client: httpx.AsyncClient, job: Job, accept) -> list[str]:
        """Attempts until one validates: [] on success (accept() called), else the last attempt's reasons."""
        reasons: list[str] = []
        for attempt in range(self.params.max_attempts):
            if attempt:
                self.stats.retries += 1
            messages = self.prompt.messages(job.masked.text, job.register, reasons or None)
            temperature = min(1.0, self.cfg.temperature + 0.3 * attempt)
            try:
                raw = await self._complete(client, messages, temperature, job, retried=attempt > 0)
            except Retryable as e:
                return ["backend_error"] if e.kind == "exhausted" else [e.kind]
            text, reasons = await asyncio.get_running_loop().run_in_executor(self._pool, judge, job, raw, self.limits)
            if text is not None:
                accept(job, text)
                return []
            self.stats.rejected.update(reasons)
            log.debug("%s attempt %d rejected: %s", job.where, attempt + 1, reasons)
        return reasons

    async def _complete(self, client: httpx.AsyncClient, messages: list[dict], temperature: float, job: Job,
                        retried: bool = False) -> str:
        c = self.cfg
        body = {"model": self.params.model, "messages": messages, "temperature": temperature,
                "max_tokens": c.max_tokens}
        prompt_tokens = sum(estimate_tokens(m["content"]) for m in messages)
        for retry in range(c.max_retries + 1):
            if retry:
                self.stats.retries += 1
            await self._limiter.acquire(prompt_tokens + min(c.max_tokens, 2 * estimate_tokens(job.source)))
            try:
                async with self._slots.slot(priority=0 if retry or retried else 1):
                    self.stats.requests += 1
                    resp = await client.post(self.url, json=body)
                return self._parse(resp, prompt_tokens)
            except Retryable as e:
                failure = e
            except httpx.TimeoutException:
                failure = Retryable("timeout")
            except httpx.TransportError as e:
                failure = Retryable(f"connection_{type(e).__name__}")
            self.stats.transport_errors[failure.kind] += 1
            if retry == c.max_retries:
                break
            delay = min(c.backoff_max_s, c.backoff_base_s * 2**retry) * self._rng.random()
            if failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
            log.debug("%s: %s, retry %d in %.2f s", job.where, failure.kind, retry + 1, delay)
            await asyncio.sleep(delay)
        log.warning("%s: giving up after %d retries (last: %s)", job.where, c.max_retries, failure.kind)
        raise Retryable("exhausted")

    def _parse(self, resp: httpx.Response, prompt_tokens: int) -> str:
        status = resp.status_code
        if status == 429 or status >= 500:
            raise Retryable(f"http_{status}", parse_retry_after(resp.headers.get("retry-after")))
        if status in FATAL_STATUS:
            raise BackendError(
                f"{self.url} answered {status} ({FATAL_STATUS[status]}): check translate.openai.base_url, "
                f"translate.model ({self.params.model!r}) and the key in ${self.cfg.api_key_env}"
            )
        if status != 200:
            self.stats.transport_errors[f"http_{status}"] += 1
            log.warning("%s answered %d: %s", self.url, status, resp.text[:300])
            return ""  # judged "empty": re-translated up to max_attempts, then flagged
        try:
            data = resp.json()
            msg = data["choices"][0]["message"]
            content = msg.get("content") or ""
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise Retryable("bad_json") from None
        usage = data.get("usage") or {}
        self.stats.tokens_in += int(usage.get("prompt_tokens") or prompt_tokens)
        self.stats.tokens_out += int(usage.get("completion_tokens") or (estimate_tokens(content) if content else 0))
        return content
