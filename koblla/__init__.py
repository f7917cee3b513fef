"""KoBLLa: Llama 3 -> Korean-English bilingual model, as a DVC pipeline around torchtune and lm-eval."""

__version__ = "0.1.0"
