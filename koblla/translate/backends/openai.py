"""The `openai` backend: any OpenAI-compatible Chat Completions endpoint over async httpx.

Concurrency: at most `concurrency` requests in flight (a slot is held only while a request is on the wire, never
during a backoff sleep, so failing requests do not starve the others; retries take free slots before first tries,
so they do not pile up into a long tail at the end of the run). Quotas: RPM and TPM token buckets.
Transport retries (429, 5xx, timeouts, connection errors, unreadable JSON): up to `max_retries`, sleeping
full-jitter exponential backoff, min(backoff_max_s, backoff_base_s * 2**retry) * U(0, 1), but never less than the
server's Retry-After. Every other 4xx (400 for a bad key at Gemini, an unsupported parameter at OpenAI; 401, 403,
404 ...) stops the run at once with the provider's message, and so does a failed preflight: before the first
translation one cheap call (GET {base_url}/models, or a 1-token completion) checks URL, key and model. Validation
failures re-translate up to max_attempts with a note on why, at a temperature raised by 0.3 per attempt (a
deterministic model repeats itself). A reply cut by the output budget (finish_reason "length", thinking models
spend it on thinking) is asked again once with max_tokens x truncation_budget_factor, then flagged "truncated".
Each request carries the conversation so far (prompt v2+): a chunk waits for the earlier chunks of its
conversation, whose accepted translations go into its context.

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

from koblla.text.register import kiwi
from koblla.translate.backends.base import Backend, BackendError, ChunkJob, judge, render_context
from koblla.translate.ratelimit import PrioritySlots, RateLimiter
from koblla.translate.segment import estimate_tokens

log = logging.getLogger(__name__)
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FATAL_HINT = {400: "bad request: an invalid key (Gemini answers 400 API_KEY_INVALID) or a parameter the model does "
                   "not accept (max_tokens vs max_completion_tokens, temperature, extra_body)",
              401: "the API key was rejected", 403: "access denied", 404: "unknown URL or model"}
RETRYABLE_4XX = {408, 409, 429}


def provider_message(resp: httpx.Response) -> str:
    """The provider's own error text: error.message (+ reason) from an OpenAI-style body, Gemini's list-wrapped
    body ([{"error": {...}}]) or a plain text body, shortened."""
    try:
        data = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return resp.text.strip()[:500] or "(empty body)"
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        msg = str(err.get("message") or err.get("status") or json.dumps(err)[:500])
        reasons = [d.get("reason") for d in err.get("details") or [] if isinstance(d, dict) and d.get("reason")]
        code = err.get("status") or err.get("code") or err.get("type")
        extra = ", ".join(str(x) for x in [code, *reasons] if x)
        return f"{msg} ({extra})" if extra else msg
    return str(err)[:500]


class FatalHTTP(BackendError):
    pass


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
        self.preflight()
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

    async def _run_all(self, jobs: list[ChunkJob], accept) -> dict[str, list[str]]:
        c = self.cfg
        self._slots = PrioritySlots(c.concurrency)
        self._limiter = RateLimiter(c.rpm, c.tpm)
        flagged: dict[str, list[str]] = {}
        bar = tqdm(total=len(jobs), desc="translate", unit="chunk", disable=None)
        headers = {"Authorization": f"Bearer {self._api_key}"}
        pool = httpx.Limits(max_connections=c.concurrency, max_keepalive_connections=c.concurrency)
        async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(c.timeout_s), limits=pool) as client:

            done = {j.key: asyncio.Event() for j in jobs}

            async def one(job: ChunkJob) -> None:
                try:
                    for _, _, key in job.context:  # earlier chunks of the conversation first: they are context
                        if key in done:
                            await done[key].wait()
                    reasons = await self._translate(client, job, accept)
                    if reasons:
                        flagged[job.key] = reasons
                        log.warning("flagged %s after %d attempt(s): %s", job.where, self.params.max_attempts,
                                    reasons)
                    bar.update(1)
                finally:
                    done[job.key].set()

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

    async def _translate(self, client: httpx.AsyncClient, job: ChunkJob, accept) -> list[str]:
        """Attempts until one validates: [] on success (accept() called), else the last attempt's reasons."""
        reasons: list[str] = []
        context = render_context(job, self.translation_of, self.params.context_chars)
        budget, raised = self.cfg.max_tokens, False
        attempt = 0
        while attempt < self.params.max_attempts:
            messages = self.prompt.messages(job.masked.text, job.register, reasons or None, context)
            temperature = None if self.cfg.temperature is None else min(1.0, self.cfg.temperature + 0.3 * attempt)
            try:
                raw, finish = await self._complete(client, messages, temperature, job, budget, retried=attempt > 0)
            except Retryable as e:
                return ["backend_error"] if e.kind == "exhausted" else [e.kind]
            text, reasons = await asyncio.get_running_loop().run_in_executor(
                self._pool, judge, job, raw, self.limits, finish)
            if text is not None:
                accept(job, text)
                return []
            self.stats.rejected.update(reasons)
            log.debug("%s attempt %d rejected: %s", job.where, attempt + 1, reasons)
            if reasons == ["truncated"]:
                if raised:
                    return reasons  # cut even with the larger budget: flag it
                budget, raised = int(budget * self.cfg.truncation_budget_factor), True
                self.stats.retries += 1
                reasons = []  # not the model's fault: no retry note
                continue  # the same attempt again, with the larger budget
            attempt += 1
            if attempt < self.params.max_attempts:
                self.stats.retries += 1  # a re-translation
        return reasons

    async def _complete(self, client: httpx.AsyncClient, messages: list[dict], temperature: float | None, job: ChunkJob,
                        max_tokens: int, retried: bool = False) -> tuple[str, str | None]:
        c = self.cfg
        body = self.body(messages, temperature, max_tokens)
        prompt_tokens = sum(estimate_tokens(m["content"]) for m in messages)
        for retry in range(c.max_retries + 1):
            if retry:
                self.stats.retries += 1
            await self._limiter.acquire(prompt_tokens + min(max_tokens, 2 * estimate_tokens(job.source)))
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

    def fatal(self, resp: httpx.Response, what: str,
              after: str = "Fix these and rerun; translations so far are in the memory.") -> FatalHTTP:
        """The stage-stopping error for a 4xx: provider message, URL, model, the key's env var NAME (never the key)."""
        hint = FATAL_HINT.get(resp.status_code, "client error")
        return FatalHTTP(
            f"{what}: {resp.request.method} {resp.request.url} answered HTTP {resp.status_code}: "
            f"{provider_message(resp)}\n  {hint}.\n  model: {self.params.model!r} (translate.model); "
            f"base_url: {self.cfg.base_url} (translate.openai.base_url); key from env var {self.cfg.api_key_env} "
            f"(translate.openai.api_key_env). {after}"
        )

    def _parse(self, resp: httpx.Response, prompt_tokens: int) -> tuple[str, str | None]:
        status = resp.status_code
        if status in RETRYABLE_4XX or status >= 500:
            raise Retryable(f"http_{status}", parse_retry_after(resp.headers.get("retry-after")))
        if 400 <= status < 500:
            raise self.fatal(resp, "translate stopped")
        if status != 200:
            raise Retryable(f"http_{status}")
        try:
            data = resp.json()
            choice = data["choices"][0]
            msg = choice["message"]
            content = msg.get("content") or ""
            finish = choice.get("finish_reason")
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise Retryable("bad_json") from None
        usage = data.get("usage") or {}
        self.stats.tokens_in += int(usage.get("prompt_tokens") or prompt_tokens)
        self.stats.tokens_out += int(usage.get("completion_tokens") or (estimate_tokens(content) if content else 0))
        return content, finish

    def body(self, messages: list[dict], temperature: float | None, max_tokens: int) -> dict:
        """The request body: model, messages, the output budget under the param name the provider wants, the
        temperature unless it is None, then extra_body merged in verbatim (it wins on a clash)."""
        body = {"model": self.params.model, "messages": messages, self.cfg.max_tokens_param: max_tokens}
        if temperature is not None:
            body["temperature"] = temperature
        body.update(self.cfg.extra_body)
        return body

    def preflight(self) -> None:
        """One cheap call before any work; a failure stops the stage with the provider's message."""
        c = self.cfg
        if c.preflight == "off":
            return
        base = c.base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {self._api_key}"}
        where = f"translate preflight ({c.preflight})"
        try:
            with httpx.Client(headers=headers, timeout=httpx.Timeout(c.timeout_s)) as client:
                if c.preflight == "models":
                    resp = client.get(base + "/models")
                    if resp.status_code == 200:
                        self._check_model_listed(resp)
                        return
                    if resp.status_code not in (404, 405):
                        raise self.fatal(resp, where, "Fix these and rerun; nothing was translated.")
                    where += ", /models not served, then a 1-token completion"
                body = self.body([{"role": "user", "content": "Reply with OK."}], None, 1)
                self.stats.requests += 1
                resp = client.post(self.url, json=body)
        except httpx.HTTPError as e:
            raise BackendError(
                f"{where}: cannot reach {base} ({type(e).__name__}: {e}); check translate.openai.base_url and that "
                f"the server runs (model {self.params.model!r}, key from env var {c.api_key_env})"
            ) from None
        if resp.status_code != 200:
            raise self.fatal(resp, where, "Fix these and rerun; nothing was translated.")

    def _check_model_listed(self, resp: httpx.Response) -> None:
        try:
            ids = [str(m.get("id", "")) for m in resp.json().get("data", [])]
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, AttributeError, TypeError):
            return  # not an OpenAI-style list: the URL and key work, which is what the check is for
        names = {i.removeprefix("models/") for i in ids}
        if ids and self.params.model.removeprefix("models/") not in names:
            shown = ", ".join(sorted(names)[:30]) + (" ..." if len(names) > 30 else "")
            raise BackendError(
                f"translate preflight (models): {resp.request.url} does not list model {self.params.model!r} "
                f"(translate.model). It serves: {shown}. Set translate.model to one of these (key from env var "
                f"{self.cfg.api_key_env}), or translate.openai.preflight: completion if this server lists only some."
            )
