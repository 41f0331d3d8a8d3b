"""The result of an exercise check, and helpers the lesson checkers share.

Every checker is registered with `@exercise("lessonNN.name")`: its Result then carries the
exercise id and a status, shows itself as one line in a notebook, attaches a machine-readable
record to its display (output metadata key ``frcnn_edu``) and is appended to `RECORDS`, which the
instructor's grader (`frcnn_edu.checks.grade`) reads back from the executed notebook.

Statuses: "pass"; "todo" (the exercise is not filled in yet: the stub's NotImplementedError,
or None where a value is asked); "fail" (a wrong answer); "error" (the student's code raised).
"""
import functools
import json

import torch

#: Every check run in this Python process, in order: {"exercise", "status", "message"}.
RECORDS = []
#: Exercise ids of each lesson module, in the order the checkers are defined.
EXERCISES = {}
#: The output-metadata key under which a displayed Result carries its record.
METADATA_KEY = "frcnn_edu"


class Result:
    """`passed`, a message and a status; shows itself as one line in a notebook."""

    def __init__(self, passed, message, status=None):
        self.passed, self.message = bool(passed), message
        self.status = status or ("pass" if self.passed else "fail")
        self.exercise = None

    def __bool__(self):
        return self.passed

    def __repr__(self):
        return ("Correct: " if self.passed else "Not yet: ") + self.message

    def record(self):
        """The machine-readable form: {"exercise", "status", "message"}."""
        return {"exercise": self.exercise, "status": self.status, "message": self.message}

    _repr_pretty_ = lambda self, p, cycle: p.text(repr(self))  # noqa: E731  (IPython display)

    def _repr_mimebundle_(self, include=None, exclude=None):
        """Text for the reader, the record in the output's metadata for the grader."""
        return {"text/plain": repr(self)}, {METADATA_KEY: self.record()}


def not_filled_in(what="the exercise"):
    return Result(False, f"{what} is not filled in yet (NotImplementedError: replace the stub "
                         "with your answer).", status="todo")


def exercise(exercise_id):
    """Register a checker under `exercise_id` ("lessonNN.name"): its Result gets the id and is
    recorded in RECORDS; a checker that crashes on an odd answer reports it instead of raising."""
    lesson = exercise_id.split(".")[0]

    def register(checker):
        EXERCISES.setdefault(lesson, [])
        if exercise_id not in EXERCISES[lesson]:
            EXERCISES[lesson].append(exercise_id)

        @functools.wraps(checker)
        def check(*args, **kwargs):
            try:
                result = checker(*args, **kwargs)
            except Exception as e:  # an answer the checker did not foresee: feedback, not a crash
                result = Result(False, f"the checker could not read your answer "
                                       f"({type(e).__name__}: {e})", status="error")
            result.exercise = exercise_id
            RECORDS.append(result.record())
            return result

        check.exercise_id = exercise_id
        return check
    return register


#: The library's answer to each function exercise, for `use_or_reference`.
REFERENCES = {}
_NOTED = set()


def use_or_reference(fn, exercise_id):
    """`fn`, or the library's reference while `fn` is not filled in yet.

    A lesson calls the student's function through this after the exercise, so that a copy
    whose stub still raises NotImplementedError (or holds None) runs on with the library's
    answer, and says so once, instead of stopping "Run All". Wrong answers are not replaced:
    only a stub is.
    """
    reference = REFERENCES[exercise_id]

    def call(*args):
        if fn is not None:
            try:
                return fn(*args)
            except NotImplementedError:
                pass
        if exercise_id not in _NOTED:
            _NOTED.add(exercise_id)
            print(f"(your {getattr(fn, '__name__', 'answer')} is not filled in yet: the lesson "
                  "goes on with the library's answer)")
        return reference(*args)
    return call


def records_json():
    """RECORDS as one JSON line (what the grader's last cell prints)."""
    return json.dumps(RECORDS)


def run_safely(fn, *args, **kwargs):
    """Call a student's function; return (value, None) or (None, Result explaining the crash)."""
    try:
        return fn(*args, **kwargs), None
    except NotImplementedError:
        return None, not_filled_in()
    except Exception as e:  # a student's bug is feedback, not a crash of the lesson
        return None, Result(False, f"your code raised {type(e).__name__}: {e}", status="error")


def check_close(answer, expected, what, hint, atol=1e-4):
    """Compare a number or tensor with the expected one; wrong shape or value -> the hint."""
    a = torch.as_tensor(answer, dtype=torch.float64) if answer is not None else None
    e = torch.as_tensor(expected, dtype=torch.float64)
    if a is None:
        return Result(False, f"{what} is None; {hint}")
    if a.shape != e.shape:
        return Result(False, f"{what} should have shape {list(e.shape)}, got {list(a.shape)}; {hint}")
    if not torch.allclose(a, e, atol=atol, rtol=1e-4):
        return Result(False, f"{what} is not right; {hint}")
    return Result(True, f"{what} matches the library's answer.")
