"""Entry points: one thin `python -m stages.NAME` module each (argument parsing only; the logic is in koblla/).

DVC stages (dvc.yaml runs them; each module is named like its stage): check_params, make_sample_dump,
make_tiny_models, extract_wiki, translate, finetune_base, chat_vector, finetune_instruct, evaluate, report.

Helpers, run by hand and not DVC stages (here so that every command reads `python -m stages.NAME`):
- chat: talk to any model of the chain in the terminal (koblla/chat.py);
- download_wiki: a dated kowiki dump + index, checksums verified, for the real run (needs network);
- fetch_eval_data: fills the HF datasets cache for the real run's built-in lm-eval tasks (needs network, once).
"""
