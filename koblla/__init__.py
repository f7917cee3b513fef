"""KoBLLa: Llama 3 -> Korean-English bilingual model, as a DVC pipeline around torchtune and lm-eval."""
import os as _os

__version__ = "0.1.0"

# CPU reproducibility: pin the CPU kernels' instruction set to AVX2 so trained weights do not depend on whether the
# CPU has AVX-512 (ATen's own kernels, MKL's conditional numerical reproducibility, oneDNN). Measured here (AMD EPYC,
# AVX-512): make_tiny_models' instruct model differs in bytes between the default (AVX-512) paths and these; with
# these, 1 and 2 threads give the same bytes. Set before torch is imported (every stage imports koblla first) and
# inherited by the torchtune subprocesses. Export another value to override (e.g. ATEN_CPU_CAPABILITY=avx512).
for _k, _v in (("ATEN_CPU_CAPABILITY", "avx2"), ("MKL_CBWR", "AVX2"), ("ONEDNN_MAX_CPU_ISA", "AVX2")):
    _os.environ.setdefault(_k, _v)
