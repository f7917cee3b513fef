"""Dtype names, one home: the short names params use (torchtune's bf16 / fp16 / fp32), the long names of HF's
config.json and of evaluate.dtype (bfloat16 / float16 / float32), and safetensors' header names (BF16 / F16 / F32)."""
from __future__ import annotations

SHORT_TO_LONG = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
SAFETENSORS_TO_SHORT = {"BF16": "bf16", "F16": "fp16", "F32": "fp32"}
SAFETENSORS_TO_LONG = {k: SHORT_TO_LONG[v] for k, v in SAFETENSORS_TO_SHORT.items()}


def torch_dtype(name: str):
    """The torch dtype of a short (bf16) or long (bfloat16) name."""
    import torch

    return getattr(torch, SHORT_TO_LONG.get(name, name))
