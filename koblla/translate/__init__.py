"""LIMA -> KoLIMA + BiLIMA: translation through a memory and a backend, checked for language and register.

The stage runs `run_translate` (koblla/translate/stage.py); pipeline.py plans and assembles chunks, backends/ talk
to the models, validate.py is the quality gate, memory.py the translation memory.
"""
from koblla.translate.stage import run_translate

__all__ = ["run_translate"]
