"""The `hf` backend: a local transformers chat model (folder with config.json, tokenizer and a chat template).

Batched generation with left padding; the first attempt is greedy, re-translations after a failed check sample
(temperature 0.7, seeded) so they can differ. Every output goes through the same restore + validation as the
other backends. Meant for offline GPU users (e.g. a Korean-capable instruct model served from disk).
"""
from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from koblla.translate.backends.base import Backend, BackendError, ChunkJob, judge, render_context

log = logging.getLogger(__name__)
SAMPLING_TEMPERATURE = 0.7  # re-translations only


class HFBackend(Backend):
    name = "hf"

    def __init__(self, params, prompt, limits):
        super().__init__(params, prompt, limits)
        self.cfg = params.hf
        path = Path(self.cfg.model_path)
        if not (path / "config.json").is_file():
            raise BackendError(
                f"translate.hf.model_path: {str(path)!r} is not a transformers model folder (no config.json); "
                "point it at a local chat model (e.g. one saved with save_pretrained or `huggingface-cli download`)"
            )

    def _load(self):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        c = self.cfg
        device = c.device if c.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = "auto" if c.dtype == "auto" else getattr(torch, c.dtype)
        tok = AutoTokenizer.from_pretrained(c.model_path)
        if not getattr(tok, "chat_template", None):
            raise BackendError(f"{c.model_path}: the tokenizer has no chat template; use an instruct/chat model")
        tok.padding_side = "left"  # decoder-only batched generation continues from the right edge
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(c.model_path, dtype=dtype).to(device).eval()
        log.info("hf backend: %s on %s (%s)", c.model_path, device, model.dtype)
        return torch, tok, model, device

    def run(self, jobs: list[ChunkJob], accept) -> dict[str, list[str]]:
        torch, tok, model, device = self._load()
        torch.manual_seed(0)
        pending, reasons_of = list(jobs), {}
        bar = tqdm(total=len(jobs), desc="translate (hf)", unit="chunk", disable=None)
        for attempt in range(self.params.max_attempts):
            if not pending:
                break
            if attempt:
                self.stats.retries += len(pending)
            failed = []
            for start in range(0, len(pending), self.cfg.batch_size):
                batch = pending[start:start + self.cfg.batch_size]
                for job, raw in zip(batch, self._generate(torch, tok, model, device, batch, attempt, reasons_of),
                                    strict=True):
                    text, reasons = judge(job, raw, self.limits)
                    if text is not None:
                        accept(job, text)
                        bar.update(1)
                    else:
                        self.stats.rejected.update(reasons)
                        reasons_of[job.key] = reasons
                        failed.append(job)
            pending = failed
        bar.update(len(pending))
        bar.close()
        for job in pending:
            log.warning("flagged %s after %d attempt(s): %s", job.where, self.params.max_attempts, reasons_of[job.key])
        return {job.key: reasons_of[job.key] for job in pending}

    def _generate(self, torch, tok, model, device, batch: list[ChunkJob], attempt: int, reasons_of: dict) -> list[str]:
        prompts = [
            tok.apply_chat_template(
                self.prompt.messages(j.masked.text, j.register, reasons_of.get(j.key),
                                     # earlier chunks translated in an earlier batch or run come with their Korean
                                     render_context(j, self.translation_of, self.params.context_chars)),
                tokenize=False, add_generation_prompt=True)
            for j in batch
        ]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        sampling = {"do_sample": True, "temperature": SAMPLING_TEMPERATURE} if attempt else {"do_sample": False}
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=self.cfg.max_new_tokens, pad_token_id=tok.pad_token_id,
                                 **sampling)
        new = out[:, enc["input_ids"].shape[1]:]
        self.stats.requests += len(batch)
        self.stats.tokens_in += int(enc["attention_mask"].sum())
        self.stats.tokens_out += int((new != tok.pad_token_id).sum())
        return tok.batch_decode(new, skip_special_tokens=True)
