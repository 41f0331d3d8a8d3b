"""One way to check an implementation exercise: many cases, the smallest failure, no shortcuts.

    check_function(student_fn, reference_fn, cases, compare=..., forbidden=[...], hint=...)

calls the student's function *positionally*, as the lesson's stub defines it, on every case
(hand-made edge cases first, then seeded random ones), compares each answer with the library's
reference, and reports the smallest failing case with its inputs, the expected answer, the
student's answer and a hint naming the likely slip. Where the exercise says "implement it",
`forbidden` names the library functions it replaces ("frcnn_edu.boxes.box_iou"): while the
student's code runs they are replaced by a tripwire wherever a notebook can reach them (the
module, any frcnn_edu module that re-exports them, and the globals of the student's function),
and a solution that calls one is refused with a message saying so.

Shape key: none (cases are tuples of positional arguments, whatever the exercise takes).
"""
import contextlib
import copy
import importlib
import math
import sys

import torch

from .result import Result, not_filled_in


class ForbiddenCall(BaseException):
    """Raised by a tripwire. A BaseException, so that a student's `except Exception` cannot
    swallow it (the call is also recorded, in case something catches everything)."""


class _Tripwire:
    """Stands in for a forbidden function: library code calling it gets the real function, a
    call from anywhere else (the student's code) is recorded and stopped."""

    def __init__(self, dotted, original, calls):
        self.dotted, self.original, self.calls = dotted, original, calls
        self.__name__ = getattr(original, "__name__", dotted)
        self.__doc__ = getattr(original, "__doc__", None)

    def __call__(self, *args, **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        library = caller.startswith(("frcnn_edu.", "torch", "torchvision")) and \
            not caller.startswith("frcnn_edu.checks.lesson")
        if library:
            return self.original(*args, **kwargs)
        self.calls.append(self.dotted)
        raise ForbiddenCall(self.dotted)


def _resolve(dotted):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@contextlib.contextmanager
def tripwires(forbidden, student_fn=None):
    """Replace each function named in `forbidden` by a tripwire while the block runs; yields the
    list of forbidden names the code called."""
    calls, patched = [], []
    for dotted in forbidden:
        original = _resolve(dotted)
        wire = _Tripwire(dotted, original, calls)
        roots = dotted.split(".")[0], "frcnn_edu"
        namespaces = [vars(m) for name, m in list(sys.modules.items())
                      if m is not None and name.split(".")[0] in roots
                      and not name.startswith("frcnn_edu.checks")]
        for space in namespaces + [_globals_of(student_fn)]:
            for key, value in list(space.items()):
                if value is original:
                    patched.append((space, key, value))
                    space[key] = wire
    try:
        yield calls
    finally:
        for space, key, value in reversed(patched):
            space[key] = value


def _globals_of(fn):
    fn = getattr(fn, "__func__", fn)
    return getattr(fn, "__globals__", {})


def call_student(fn, args, calls=None):
    """(value, None) or (None, Result) for one call of the student's function on `args` (a tuple,
    passed positionally; tensors are copied so that the student's code may modify them). Run it
    inside `tripwires(...)` and pass the list it yields as `calls` to refuse forbidden calls."""
    args = copy.deepcopy(args)
    calls = [] if calls is None else calls
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, not_filled_in()
    except ForbiddenCall as e:
        return None, forbidden_result(str(e))
    except Exception as e:  # a student's bug is feedback, not a crash of the lesson
        if calls:
            return None, forbidden_result(calls[0])
        return None, Result(False, f"your code raised {type(e).__name__}: {e}", status="error")


def forbidden_result(dotted):
    result = Result(False, f"your solution calls {dotted}; write it yourself (this exercise "
                           "asks you to implement what that function does: use torch and "
                           "Python, not the function it replaces).")
    result.forbidden = True
    return result


def show(value, limit=400):
    """A short printable form of an input or an answer."""
    if torch.is_tensor(value):
        text = f"tensor({_rounded(value.tolist())})" if 0 < value.numel() <= 64 else \
            f"tensor of shape {list(value.shape)}"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (list, tuple)) and value and all(torch.is_tensor(v) for v in value):
        text = "[" + ", ".join(show(v, limit) for v in value) + "]"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


def _rounded(value):
    """Nested lists of numbers with floats shown to 6 significant digits."""
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return float(f"{value:.6g}") if isinstance(value, float) else value


def size_of(value):
    """How big a case is (to report the smallest failing one): elements of tensors, items of
    sequences, 1 for a number."""
    if torch.is_tensor(value):
        return value.numel()
    if isinstance(value, dict):
        return sum(size_of(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(size_of(v) for v in value) + 1
    return 1


class Wrong(Exception):
    """Raised by a `convert` function: the answer has the wrong type or shape (message says how)."""


def check_function(student_fn, reference_fn, cases, compare, *, convert=None, forbidden=(),
                   hint=None, variants=None, name="your function", passed="", describe=None):
    """Check `student_fn` against `reference_fn` on `cases` (tuples of positional arguments).

    convert(got, args) -> the answer in the form `compare` takes, or raises Wrong(message).
    compare(got, expected, args) -> True when right. variants(*args) -> [(hint, the answer that
    slip gives, or a predicate on the student's answer)]: the hint of the first slip that
    explains the student's answers on every case is given (else on every failing case, else on
    the smallest). hint(args, got, expected) -> the likely slip, or a string: used when no
    variant explains the answers. describe(args) -> how
    to print the inputs (default: each argument). Returns a Result: passed, or the smallest
    failing case with its inputs, the expected answer, the student's answer and the hint.
    """
    if not callable(student_fn):
        if student_fn is None:
            return not_filled_in()
        return Result(False, f"pass your function itself, got {type(student_fn).__name__}")
    for dotted in forbidden:
        if getattr(student_fn, "func", student_fn) is _resolve(dotted):
            return forbidden_result(dotted)
    failures = []
    expected_all = [reference_fn(*copy.deepcopy(args)) for args in cases]
    with tripwires(forbidden, student_fn) as calls:
        answers = []
        for args in cases:
            answers.append(call_student(student_fn, args, calls))
            err = answers[-1][1]
            if err is not None and (err.status == "todo" or getattr(err, "forbidden", False)):
                return err                   # not filled in, or a forbidden call: say so at once
        if calls:                            # a forbidden call that something swallowed
            return forbidden_result(calls[0])
    converted = []
    for args, expected, (got, err) in zip(cases, expected_all, answers):
        if err is None:
            try:
                got = convert(got, args) if convert else got
            except Wrong as w:
                err = Result(False, str(w))
        converted.append((args, got, err))
        if err is None and compare(got, expected, args):
            continue
        # a crash is reported before a wrong value, then the smallest case first
        failures.append((err is None or err.status != "error", size_of(args), len(failures),
                         args, expected, got, err))
    if not failures:
        return Result(True, passed or f"{name} matches the library on all {len(cases)} cases.")
    _, _, _, args, expected, got, err = min(failures, key=lambda f: f[:3])
    inputs = describe(args) if describe else ", ".join(show(a) for a in args)
    where = f"{len(failures)} of {len(cases)} cases fail; the smallest: {name}({inputs})"
    if err is not None:
        return Result(False, f"{where}: {err.message}", status=err.status)
    why = None
    if variants:
        answered = [(case, got) for case, got, err in converted if err is None]
        failed = [(f[3], f[5]) for f in failures if f[6] is None]
        why = _explain(variants, answered, failed, compare, args, got)
    if why is None:
        why = hint(args, got, expected) if callable(hint) else hint
    return Result(False, f"{where} gave {show(got)}, expected {show(expected)}"
                         + (f": {why}" if why else "") + ".")


def _explain(variants, answered, failed, compare, args, got):
    """The hint of the slip that explains every answer (right ones included), else every wrong
    answer, else the smallest wrong one. `answered` / `failed`: [(case, converted answer)].
    A variant whose answer is None says nothing about that case."""
    table = {}
    for case, _ in answered + failed + [(args, got)]:
        if id(case) not in table:
            table[id(case)] = variants(*copy.deepcopy(case))
    hints = max(table.values(), key=len) and [h for h, _ in max(table.values(), key=len)]

    def verdict(j, case, value):          # True / False, or None when the slip is undefined
        row = table[id(case)]
        v = row[j][1] if j < len(row) else None
        if v is None:
            return None
        return v(value) if callable(v) else compare(value, v, case)

    for group in (answered, failed):
        for j, text in enumerate(hints):
            seen = [verdict(j, case, value) for case, value in group]
            seen = [x for x in seen if x is not None]
            if seen and all(seen):
                return text
    return next((h for j, h in enumerate(hints) if verdict(j, args, got)), None)


def close(rtol=1e-5, atol=1e-5):
    """A `compare` for numbers, tuples of numbers and tensors (same shape, values within tol)."""
    def compare(got, expected, args=None):
        g = torch.as_tensor(got, dtype=torch.float64)
        e = torch.as_tensor(expected, dtype=torch.float64)
        return g.shape == e.shape and bool(torch.allclose(g, e, rtol=rtol, atol=atol, equal_nan=True))
    return compare


def as_float_tensor(shape_of=None, what="the answer"):
    """A `convert` to a float64 tensor; `shape_of(args)` gives the shape it must have."""
    def convert(got, args):
        if got is None:
            raise Wrong(f"{what} is None: return it")
        try:
            t = torch.as_tensor(got, dtype=torch.float64) if not torch.is_tensor(got) \
                else got.detach().double()
        except (TypeError, ValueError, RuntimeError):
            raise Wrong(f"{what} should be a tensor or numbers, got {type(got).__name__}")
        if shape_of is not None and t.numel() == 0 and math.prod(shape_of(args)) == 0:
            t = t.reshape(tuple(shape_of(args)))           # [] for "no boxes" is fine
        if shape_of is not None and tuple(t.shape) != tuple(shape_of(args)):
            raise Wrong(f"{what} should have shape {list(shape_of(args))}, got {list(t.shape)}")
        return t
    return convert


def seeded(seed):
    """A CPU generator for the random cases (the same cases on every run)."""
    return torch.Generator().manual_seed(seed)


def random_boxes(n, generator, extent=100.0, min_size=1.0, max_size=50.0, integer=False):
    """`n` random valid boxes [n, 4] (x2 > x1, y2 > y1) inside [0, extent + max_size]."""
    xy = torch.rand(n, 2, generator=generator) * extent
    wh = min_size + torch.rand(n, 2, generator=generator) * (max_size - min_size)
    if integer:                      # whole pixels: ties and touching boxes happen
        xy, wh = xy.round(), wh.round().clamp_min(1)
    return torch.cat([xy, xy + wh], 1)
