"""Translate LIMA into KoLIMA and BiLIMA (openai-style `messages` JSONL) through a translation memory + backend.

python -m stages.translate --out-dir data/lima_ko --memory data/translation_memory --metrics metrics/translate.json

Reads params.yaml `translate` (input, backend, model, register, ...). The default backend `memory` serves the
shipped reference translations offline; `openai` calls any OpenAI-compatible endpoint (the API key is read from
the env var named in translate.openai.api_key_env); `hf` runs a local transformers chat model. Writes
kolima.jsonl, bilima_en_ko.jsonl, bilima_ko_en.jsonl, lima_en.jsonl and side_by_side.jsonl under --out-dir, appends new
translations to --memory/memory.jsonl, and writes counts to --metrics. See docs/translate.md.
Example (one-off, Gemini):
  GEMINI_API_KEY=... dvc exp run -S translate.backend=openai -S translate.model=gemini-2.5-flash \
      -S translate.prompt_version=v2
"""
import sys

from koblla.cli import make_parser, run_stage, setup_logging
from koblla.params import load_section


def main(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--out-dir", required=True, help="folder for the five JSONL files (replaced atomically)")
    p.add_argument("--memory", required=True, help="translation-memory folder (memory.jsonl is appended to)")
    p.add_argument("--metrics", default=None, help="metrics JSON path")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    params = load_section("translate", a.params)
    from koblla.translate import run_translate

    m = run_translate(params, a.out_dir, a.memory, a.metrics)
    print(
        f"translate: {m['items']} conversations ({m['turns']} turns): {m['items_written']} written to {a.out_dir}, "
        f"{m['items_flagged']} flagged, {m['skipped_records']} skipped; {m['unique_chunks']} unique chunks, "
        f"{m['cache_hits']} from memory, {m['translated_now']} translated now in {m['requests']} requests; "
        f"register compliance user {m['register_compliance_user_pct']}% assistant "
        f"{m['register_compliance_assistant_pct']}%"
    )


if __name__ == "__main__":
    sys.exit(run_stage(main))
