"""Checkers and table readers for lesson 06 (the papers' ablation tables in miniature).

    table_lines(table, seeds)        the side-by-side table: row | paper | ours per seed | mean | spread
    verdict_lines(table)             the paper's order against ours, pair by pair, as sentences
    check_seed_spread(seed_spread, differs)  exercise 1: a row's seed spread; do two rows differ?
    check_svd_time_saved(fn)         exercise 2: share of the detection time truncated SVD saves

A table is one entry of ``benchmarks/results/paper_tables.json``'s "tables": a dict with
"paper" (the source), "rows", each row {"name", "paper": mAP in % or None, "runs": [{"seed",
"mAP" (a fraction), ...}]}. The paper's numbers are percentages, ours fractions; the printed
tables show both in %. "Spread" is the range over seeds (max - min): how far a row moves when
only the random seed changes. Two rows differ, in this course's rule, when the gap between
their means is larger than the larger of their two spreads.
"""
import math
import random
import statistics

from . import harness
from .result import Result, exercise, run_safely

__all__ = ["table_lines", "verdict_lines", "check_seed_spread", "check_svd_time_saved"]

# Run keys not shown as extra columns ("eval_seconds" repeats "seconds" for evaluation-only rows).
_NOT_EXTRA = {"seed", "mAP", "steps", "eval_seconds"}


# ----------------------------------------------------------------------------- reading tables
def _mean_spread(runs):
    """(mean, max - min) of the runs' mAP, or (None, None) for a row that has not been run."""
    values = [float(r["mAP"]) for r in runs]
    if not values:
        return None, None
    return sum(values) / len(values), max(values) - min(values)


def _extra_keys(rows):
    """Numeric run fields other than _NOT_EXTRA (seconds, ms_per_image, ...), in order."""
    keys = []
    for row in rows:
        for run in row["runs"]:
            for k, v in run.items():
                if k not in _NOT_EXTRA and k not in keys and isinstance(v, (int, float)):
                    keys.append(k)
    return keys


def _pct(x, width):
    return f"{'-':>{width}}" if x is None else f"{100 * x:>{width}.1f}"


def table_lines(table, seeds):
    """Lines of text: one per row, the paper's mAP (%) next to ours (%) for each seed in `seeds`,
    their mean and spread (points), then the mean over seeds of any extra numeric run field
    (seconds, ms_per_image, ...; fields named mAP... in %)."""
    rows = table["rows"]
    extras = _extra_keys(rows)
    w = max([len("row")] + [len(r["name"]) for r in rows])
    head = f"{'row':<{w}} {'paper':>6} " + " ".join(f"{'seed ' + str(s):>7}" for s in seeds)
    head += f" {'mean':>6} {'spread':>6}" + "".join(f" {k:>{max(9, len(k))}}" for k in extras)
    lines = [head, "-" * len(head)]
    for row in rows:
        by_seed = {r["seed"]: r for r in row["runs"]}
        mean, spread = _mean_spread(row["runs"])
        paper = "-" if row.get("paper") is None else f"{row['paper']:.1f}"
        line = f"{row['name']:<{w}} {paper:>6} "
        line += " ".join(_pct(by_seed[s]["mAP"] if s in by_seed else None, 7) for s in seeds)
        line += f" {_pct(mean, 6)} {_pct(spread, 6)}"
        for k in extras:
            vals = [r[k] for r in row["runs"] if isinstance(r.get(k), (int, float))]
            mean_k = sum(vals) / len(vals) if vals else None
            text = "-" if mean_k is None else (      # mAP-like fields (fractions) shown in %
                f"{100 * mean_k:.1f}" if k.startswith("mAP") else
                f"{mean_k:,.0f}" if abs(mean_k) >= 100 else f"{mean_k:.3g}")
            line += f" {text:>{max(9, len(k))}}"
        lines.append(line)
    return lines


def _pair_sentence(hi, lo):
    """One sentence: the paper puts row `hi` above row `lo`; what did our seeds do?"""
    (m_hi, s_hi), (m_lo, s_lo) = _mean_spread(hi["runs"]), _mean_spread(lo["runs"])
    paper = f"paper: {hi['name']} ({hi['paper']:.1f}) > {lo['name']} ({lo['paper']:.1f})"
    if m_hi is None or m_lo is None:
        return f"{paper}; ours: not run", None
    gap, noise = 100 * (m_hi - m_lo), 100 * max(s_hi, s_lo)
    ours = f"ours {100 * m_hi:.1f} vs {100 * m_lo:.1f}"
    if abs(gap) > noise:
        if gap > 0:
            return f"{paper}; {ours}: held (gap {gap:.1f} > seed spread {noise:.1f})", "held"
        return (f"{paper}; {ours}: did not hold, reversed by {-gap:.1f} points, more than the "
                f"seed spread {noise:.1f}"), "reversed"
    if gap == 0:
        return f"{paper}; {ours}: not shown, equal means (seed spread {noise:.1f})", "within"
    order = "same order" if gap > 0 else "reversed"
    return (f"{paper}; {ours}: not shown, {order} but the gap {abs(gap):.1f} is within the seed "
            f"spread {noise:.1f}"), "within"


def verdict_lines(table):
    """Sentences that compare the paper's order with ours: the paper's best row against every
    other row that has a paper value (a gap counts only if it beats the seed spread)."""
    rated = [r for r in table["rows"] if r.get("paper") is not None]
    lines, counts = [], {"held": 0, "reversed": 0, "within": 0}
    if len(rated) < 2:
        return ["fewer than two rows carry a paper value: no order to compare"]
    best = max(rated, key=lambda r: r["paper"])
    for row in rated:
        if row is best:
            continue
        if row["paper"] == best["paper"]:
            lines.append(f"paper: {best['name']} and {row['name']} score the same ({row['paper']:.1f}); "
                         "no order to test")
            continue
        sentence, kind = _pair_sentence(best, row)
        lines.append(sentence)
        if kind:
            counts[kind] += 1
    run = [r for r in rated if r["runs"]]
    if run:
        ours_best = max(run, key=lambda r: _mean_spread(r["runs"])[0])
        lines.insert(0, f"best row: paper {best['name']!r}, ours {ours_best['name']!r}")
    lines.insert(1 if run else 0,
                 f"paper's order held in {counts['held']} of {sum(counts.values())} pairs; "
                 f"reversed beyond the seed spread in {counts['reversed']}; within the seed "
                 f"spread (not shown either way) in {counts['within']}")
    unrated = [r["name"] for r in table["rows"] if r.get("paper") is None]
    if unrated:
        lines.append(f"no paper value (not compared): {', '.join(unrated)}")
    return lines


# ----------------------------------------------------------------------------- exercise 1
def _runs(values):
    return [{"seed": s, "mAP": v, "seconds": 60.0, "steps": 300} for s, v in enumerate(values)]


def _seed_cases():
    """(runs_a, runs_b) pairs: hand-made edge cases, then 30 seeded random ones (1-4 seeds)."""
    q = 0.03125                                         # binary fractions: exact comparisons
    cases = [([0.5], [0.5]), ([0.5], [0.625]), ([0.5, 0.5], [0.5, 0.5]),
             ([0.25, 0.5], [0.5, 0.75]),                # gap == spread: not different
             ([0.25, 0.5], [0.75, 0.75]), ([0.75, 0.5], [0.25, 0.375]),
             ([0.5, 0.5 + 4 * q], [0.5 + 3 * q, 0.5 + 3 * q]),   # gap < larger spread only
             ([0.5, 0.5 + 2 * q], [0.5 + 5 * q, 0.5 + 6 * q]),   # max-rule differs, sum-rule not
             ([0.4, 0.5, 0.9], [0.3, 0.31]),            # 3 seeds: mean != midpoint
             ([0.625, 0.25, 0.5], [0.5, 0.5, 0.5])]
    rng = random.Random(6)
    while len(cases) < 40:
        a = [round(rng.uniform(0.2, 0.8), 4) for _ in range(rng.randint(1, 4))]
        centre = rng.choice(a) + rng.uniform(-0.15, 0.15)
        b = [round(centre + rng.uniform(-0.03, 0.03), 4) for _ in range(rng.randint(1, 4))]
        (ma, sa), (mb, sb) = _mean_spread(_runs(a)), _mean_spread(_runs(b))
        if abs(abs(ma - mb) - max(sa, sb)) > 1e-6:     # no float ties in the random cases
            cases.append((a, b))
    return cases


_PROBE = [0.25, 1.0, 0.5]        # three seeds: tells a range from a deviation or last - first


def _spread_hint(seed_spread):
    """Name the slip by the student's spread on _PROBE (with two seeds some slips coincide)."""
    got, err = run_safely(seed_spread, _runs(_PROBE))
    try:
        spread = float(got[1]) if err is None else None
    except (TypeError, ValueError, IndexError, KeyError):
        spread = None
    if spread is not None:
        close = lambda x: math.isclose(spread, x, abs_tol=1e-9)  # noqa: E731
        if close(statistics.pstdev(_PROBE)) or close(statistics.stdev(_PROBE)):
            return "that is a standard deviation; the spread here is the range, max - min"
        if close((max(_PROBE) - min(_PROBE)) / 2):
            return "that is half the range; the spread is the whole range, max - min"
        if close(_PROBE[-1] - _PROBE[0]):
            return "last - first is not the range (and can be negative): use max - min"
    return "spread = max - min of the seeds' mAP (0 for a single seed)"


def _check_one_spread(seed_spread, values):
    got, err = run_safely(seed_spread, _runs(values))
    if err is not None:
        return err
    try:
        mean, spread = (float(x) for x in got)
    except (TypeError, ValueError):
        return Result(False, f"seed_spread should return a pair (mean, spread), got {got!r}")
    want_mean, want_spread = _mean_spread(_runs(values))
    where = f"for the seeds' mAP {values}"
    if not math.isclose(mean, want_mean, abs_tol=1e-9):
        hint = ("that is the median; use the mean" if math.isclose(
            mean, sorted(values)[len(values) // 2], abs_tol=1e-9) and len(values) % 2 else
                "the mean is the sum of the seeds' mAP divided by the number of seeds")
        return Result(False, f"{where} your mean is {mean:.4g}, expected {want_mean:.4g}: {hint}")
    if not math.isclose(spread, want_spread, abs_tol=1e-9):
        return Result(False, f"{where} your spread is {spread:.4g}, expected "
                             f"{want_spread:.4g}: {_spread_hint(seed_spread)}")
    return None


_DIFFERS_WRONG = (  # (a plausible slip as a rule on (mean_a, spread_a, mean_b, spread_b), hint)
    (lambda ma, sa, mb, sb: abs(ma - mb) >= max(sa, sb),
     "a gap equal to the spread is not larger than it: use >, not >="),
    (lambda ma, sa, mb, sb: ma - mb > max(sa, sb),
     "the order of the two rows must not matter: compare the absolute gap"),
    (lambda ma, sa, mb, sb: abs(ma - mb) > sa + sb,
     "compare with the larger of the two spreads, not with their sum"),
    (lambda ma, sa, mb, sb: abs(ma - mb) > min(sa, sb),
     "compare with the LARGER of the two spreads: either row moves that much by seed alone"),
)


def _differs_hint(a, b, got):
    (ma, sa), (mb, sb) = _mean_spread(_runs(a)), _mean_spread(_runs(b))
    return next((hint for rule, hint in _DIFFERS_WRONG if rule(ma, sa, mb, sb) == got),
                "differs = |mean_a - mean_b| > max(spread_a, spread_b)")


def _as_bool(value):
    """True / False from a bool, a NumPy bool or a one-element bool tensor; None otherwise."""
    if type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    if type(value).__name__ == "Tensor" and value.numel() == 1 and str(value.dtype) == "torch.bool":
        return bool(value)
    return None


@exercise("lesson06.seed_spread")
def check_seed_spread(seed_spread, differs):
    """seed_spread(runs) -> (mean, spread) of the runs' "mAP"; differs(row_a, row_b) -> bool,
    True when |mean_a - mean_b| > max(spread_a, spread_b). Rows are dicts with "runs"."""
    cases = _seed_cases()
    for a, b in cases:
        for values in (a, b):
            failure = _check_one_spread(seed_spread, values)
            if failure is not None:
                return failure
    for a, b in cases:
        row_a, row_b = {"name": "A", "runs": _runs(a)}, {"name": "B", "runs": _runs(b)}
        got, err = run_safely(differs, row_a, row_b)
        if err is not None:
            return err
        if _as_bool(got) is None:
            return Result(False, f"differs should return True or False, got {got!r}")
        got = _as_bool(got)
        (ma, sa), (mb, sb) = _mean_spread(row_a["runs"]), _mean_spread(row_b["runs"])
        want = abs(ma - mb) > max(sa, sb)
        if got != want:
            return Result(False, f"for rows with seed mAP {a} and {b} differs gave {got}, "
                                 f"expected {want}: {_differs_hint(a, b, got)}.")
    return Result(True, "a gap counts only when it is larger than what changing the seed alone "
                        "does to either row; with one seed the spread is 0, so any gap counts, "
                        "which is why one seed cannot show that a gap is real.")


# ----------------------------------------------------------------------------- exercise 2
# (ms per image by part, {layer: (u outputs, v inputs)}, {layer: rank t}). The first case is
# shaped like the paper's Figure 2 (VGG-16, fc6 + fc7 about 45 % of the time before the SVD).
_PAPER_SHAPES = {"fc6": (4096, 25088), "fc7": (4096, 4096)}
_SVD_CASES = (
    ({"conv": 146.0, "roi_pool5": 17.0, "fc6": 124.0, "fc7": 20.0, "other": 13.0},
     _PAPER_SHAPES, {"fc6": 1024, "fc7": 256}),
    ({"conv": 5.0, "fc6": 3.0, "fc7": 0.4, "other": 1.6},
     {"fc6": (256, 6272), "fc7": (256, 256)}, {"fc6": 64, "fc7": 32}),
    ({"conv": 50.0, "fc6": 30.0, "fc7": 20.0}, _PAPER_SHAPES, {"fc6": 512}),
    ({"conv": 10.0, "fc6": 10.0, "fc7": 10.0},                 # fc7 at this rank would be slower
     _PAPER_SHAPES, {"fc6": 2048, "fc7": 3000}),
    ({"backbone": 8.0, "fc6": 6.0, "fc7": 6.0, "heads": 0.5},
     {"fc6": (1024, 4096), "fc7": (1024, 1024)}, {"fc6": 128, "fc7": 700}),
    ({"conv": 100.0, "fc": 1.0}, {"fc": (100, 100)}, {"fc": 50}),      # exactly break-even
)


def _svd_saved(ms, shapes, ranks, clamp=True, fc_only=False, cost=None):
    cost = cost or (lambda u, v, t: t * (u + v))
    saved = 0.0
    for layer, t in ranks.items():
        u, v = shapes[layer]
        keep = cost(u, v, t) / (u * v)
        saved += ms[layer] * (max(0.0, 1 - keep) if clamp else 1 - keep)
    total = sum(ms[k] for k in ranks) if fc_only else sum(ms.values())
    return saved / total


_SVD_WRONG = (  # (a plausible slip, the hint it gets)
    (lambda ms, sh, r: _svd_saved(ms, sh, r, fc_only=True),
     "that is the share of the fc layers' own time; divide by the whole detection time (the "
     "conv layers and the rest do not get faster)"),
    (lambda ms, sh, r: _svd_saved(ms, sh, r, clamp=False),
     "a layer whose factorised form costs more (t (u + v) >= u v) is left as it is: it saves "
     "nothing, it does not add time"),
    (lambda ms, sh, r: 1 - _svd_saved(ms, sh, r),
     "that is the share of the time that remains; the question asks for the share saved"),
    (lambda ms, sh, r: 100 * _svd_saved(ms, sh, r),
     "give a fraction (0.3), not a percentage (30)"),
    (lambda ms, sh, r: 1 / (1 - _svd_saved(ms, sh, r)),
     "that is the speed-up (old time / new time), not the share of time saved"),
    (lambda ms, sh, r: _svd_saved(ms, sh, r, cost=lambda u, v, t: t * min(u, v)),
     "the two new layers are t x v and u x t: the cost per RoI is t (u + v)"),
    (lambda ms, sh, r: _svd_saved(ms, sh, r, cost=lambda u, v, t: t * t),
     "the two new layers are t x v and u x t: the cost per RoI is t (u + v), not t^2"),
    (lambda ms, sh, r: _svd_saved(ms, sh, r, cost=lambda u, v, t: t * max(u, v)),
     "count both new layers: t x v and u x t, so t (u + v)"),
    (lambda ms, sh, r: _svd_saved(ms, sh, r, cost=lambda u, v, t: t * (u + v + 1)),
     "the singular values are folded into the first layer: the cost is t (u + v)"),
)


def _svd_time_cases():
    """The hand-made cases, then 20 seeded random timings, shapes and ranks."""
    rng = random.Random(62)
    cases = [tuple(dict(x) for x in c) for c in _SVD_CASES]
    for _ in range(20):
        layers = [f"fc{i}" for i in range(rng.randint(1, 3))]
        ms = {"conv": round(rng.uniform(1, 100), 2), **{k: round(rng.uniform(0.5, 50), 2) for k in layers}}
        shapes = {k: (rng.choice((64, 256, 1024, 4096)), rng.choice((256, 1024, 6272, 25088)))
                  for k in layers}
        ranks = {k: rng.randint(1, min(shapes[k])) for k in layers if rng.random() < 0.8}
        ranks = ranks or {layers[0]: rng.randint(1, min(shapes[layers[0]]))}
        cases.append((ms, shapes, ranks))
    return cases


def _or_none(fn, *args):
    try:
        return fn(*args)
    except ZeroDivisionError:
        return None


def _svd_number(got, args):
    try:
        got = float(got)
    except (TypeError, ValueError):
        raise harness.Wrong(f"return a number (a fraction), got {got!r}")
    if not math.isfinite(got):
        raise harness.Wrong(f"the answer is {got}; check for a division by zero")
    return got


@exercise("lesson06.svd_time_saved")
def check_svd_time_saved(fn):
    """fn(ms, shapes, ranks) -> the fraction of the per-image detection time that truncated SVD
    saves, if each fc layer's time is proportional to its multiply-adds (u v per RoI before,
    t (u + v) after) and a layer is factorised only when that makes it cheaper."""
    cases = _svd_time_cases()
    paper = _svd_saved(*_SVD_CASES[0])
    return harness.check_function(
        fn, _svd_saved, cases,
        lambda got, want, args: math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9),
        convert=_svd_number, name="svd_time_saved",
        variants=lambda ms, sh, r: [(h, _or_none(wrong, ms, sh, r)) for wrong, h in _SVD_WRONG],
        hint="saved = sum over compressed layers of ms_layer * max(0, 1 - t (u + v) / (u v)), "
             "divided by the total ms",
        passed=f"in the paper-like case the SVD saves {paper:.0%} of the time: fc6 shrinks to "
               "29 % of its multiply-adds and fc7 to 12.5 %, but the conv layers, untouched, "
               f"bound the gain (the paper: over 30 % less time); {len(cases)} cases checked.")
