"""The result of an exercise check, and helpers the lesson checkers share."""
import torch


class Result:
    """`passed` and a message; shows itself as one line in a notebook."""

    def __init__(self, passed, message):
        self.passed, self.message = bool(passed), message

    def __bool__(self):
        return self.passed

    def __repr__(self):
        return ("Correct: " if self.passed else "Not yet: ") + self.message

    _repr_pretty_ = lambda self, p, cycle: p.text(repr(self))  # noqa: E731  (IPython display)


def run_safely(fn, *args, **kwargs):
    """Call a student's function; return (value, None) or (None, Result explaining the crash)."""
    try:
        return fn(*args, **kwargs), None
    except NotImplementedError:
        return None, Result(False, "the exercise is not filled in yet (NotImplementedError)")
    except Exception as e:  # a student's bug is feedback, not a crash of the lesson
        return None, Result(False, f"your code raised {type(e).__name__}: {e}")


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
