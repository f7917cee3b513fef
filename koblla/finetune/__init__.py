"""finetune_base / finetune_instruct: torchtune LoRA runs driven by params.yaml (see docs/finetune.md)."""
