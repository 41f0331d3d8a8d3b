"""Exercise checkers used by the lessons: each says right or wrong, with a hint when wrong.

    from frcnn_edu import checks
    checks.lesson00.check_iou(my_iou)     # prints "Correct: ..." or "Not yet: <hint>"

Every checker returns a `Result`; it never raises on a wrong answer (a student keeps going), but
`bool(result)` is False, so tests and auto-graders can use it. An answer that crashes is reported
as wrong with the exception, also without raising. `Result.status` says "pass", "todo" (not
filled in yet), "fail" or "error"; `python -m frcnn_edu grade` collects them for a class
(`checks/grade.py`). Implementation exercises are checked by `checks/harness.py`.
"""
from importlib import import_module

from .result import Result, check_close, run_safely, use_or_reference

LESSONS = ("lesson00", "lesson01", "lesson02", "lesson03", "lesson04", "lesson05",
           "lesson06", "lesson07", "lesson08")


def __getattr__(name):  # import each lesson's checkers on first use
    if name in LESSONS or name == "harness":
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Result", "check_close", "run_safely", "use_or_reference", *LESSONS]
