"""Exception types raised by the library; only stage entry points turn them into messages and exit codes."""


class KoBLLaError(Exception):
    """Base class: a user-facing problem whose message says what is wrong and what to do."""


class ParamsError(KoBLLaError):
    """params.yaml is invalid: unknown key, wrong type, missing path."""


class InputError(KoBLLaError):
    """An input file (dump, dataset, checkpoint) is missing or malformed; the message names it."""


class EvaluationError(KoBLLaError):
    """lm-eval ran but gave nothing to record (no results, no scores for the requested tasks)."""
