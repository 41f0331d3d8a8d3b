"""Tests for lesson 06: the table readers print what the runs hold and judge the paper's order
only by gaps larger than the seed spread; the checkers pass right answers and reject plausible
wrong ones with the matching hint; a stub (NotImplementedError) is reported, never raised."""
import statistics

import numpy as np
import pytest
import torch

from frcnn_edu import checks
from frcnn_edu.checks import lesson06 as L


def _stub(*args, **kwargs):
    raise NotImplementedError("replace this line with your answer")


def _row(name, paper, maps, **extra):
    return {"name": name, "paper": paper, "config": {}, "note": "",
            "runs": [{"seed": s, "mAP": m, "seconds": 10.0, "steps": 5, **extra}
                     for s, m in enumerate(maps)]}


def test_lesson_module_is_reachable_from_checks():
    assert checks.lesson06 is L


# ------------------------------------------------------------------ table_lines

def test_table_lines_puts_paper_and_seeds_side_by_side():
    table = {"rows": [_row("1 scale, 1 ratio", 66.7, [0.50, 0.54], ms_per_image=12.0,
                           fc_params=1671936),
                      _row("detection NMS 0.5", None, [0.6]),
                      _row("not run yet", 69.9, [])]}
    head, rule, *rows = L.table_lines(table, [0, 1])
    assert head.split() == ["row", "paper", "seed", "0", "seed", "1", "mean", "spread",
                            "seconds", "ms_per_image", "fc_params"]
    assert set(rule) == {"-"}
    assert rows[0].split()[4:] == ["66.7", "50.0", "54.0", "52.0", "4.0", "10", "12", "1,671,936"]
    assert rows[1].split()[3:] == ["-", "60.0", "-", "60.0", "0.0", "10", "-", "-"]
    assert rows[2].split()[3:] == ["69.9", "-", "-", "-", "-", "-", "-", "-"]


def test_table_lines_shows_map_like_extras_in_percent_and_skips_lists():
    table = {"rows": [_row("top-300", 56.8, [0.4, 0.5], mAP_crowded=0.25,
                           ap={"star": 0.1}, eval_seconds=3.0)]}
    head, _, row = L.table_lines(table, [0, 1])
    assert "mAP_crowded" in head and "ap" not in head.split() and "eval_seconds" not in head
    assert row.split()[-1] == "25.0"


# ------------------------------------------------------------------ verdict_lines

def test_verdict_lines_counts_only_gaps_beyond_the_seed_spread():
    table = {"rows": [_row("best", 69.9, [0.60, 0.62]),       # mean 61, spread 2
                      _row("held", 66.7, [0.50, 0.51]),       # gap 10.5 > 2: held
                      _row("close", 69.8, [0.605, 0.62]),     # gap 0.25 < 2: within
                      _row("reversed", 68.8, [0.70, 0.71]),   # gap -9.5, beyond: reversed
                      _row("tie", 69.9, [0.1, 0.1]),
                      _row("no paper", None, [0.9, 0.9])]}
    lines = L.verdict_lines(table)
    assert lines[0] == "best row: paper 'best', ours 'reversed'"      # rows with a paper value
    assert "held in 1 of 3 pairs; reversed beyond the seed spread in 1; within the seed " \
           "spread (not shown either way) in 1" in lines[1]
    text = "\n".join(lines)
    assert "best (69.9) > held (66.7); ours 61.0 vs 50.5: held (gap 10.5 > seed spread 2.0)" in text
    assert "close (69.8); ours 61.0 vs 61.3: not shown, reversed but the gap 0.3 is within" in text
    assert "reversed (68.8); ours 61.0 vs 70.5: did not hold, reversed by 9.5 points" in text
    assert "paper: best and tie score the same (69.9); no order to test" in text
    assert lines[-1] == "no paper value (not compared): no paper"


def test_verdict_lines_best_row_ignores_rows_without_a_paper_value():
    table = {"rows": [_row("a", 60.0, [0.3, 0.3]), _row("b", 50.0, [0.4, 0.4]),
                      _row("c", None, [0.9, 0.9])]}
    assert L.verdict_lines(table)[0] == "best row: paper 'a', ours 'b'"


def test_verdict_lines_equal_means():
    table = {"rows": [_row("a", 60.0, [0.5, 0.5]), _row("b", 50.0, [0.5, 0.5])]}
    assert L.verdict_lines(table)[-1].endswith("ours 50.0 vs 50.0: not shown, equal means "
                                               "(seed spread 0.0)")


def test_verdict_lines_rows_not_run_and_too_few_rows():
    table = {"rows": [_row("a", 60.0, []), _row("b", 50.0, [])]}
    lines = L.verdict_lines(table)
    assert lines[0].startswith("paper's order held in 0 of 0 pairs")
    assert lines[1].endswith("ours: not run")
    assert L.verdict_lines({"rows": [_row("a", 60.0, [0.5]), _row("b", None, [0.4])]}) == \
        ["fewer than two rows carry a paper value: no order to compare"]


# ------------------------------------------------------------------ exercise 1

def seed_spread(runs):
    values = [r["mAP"] for r in runs]
    return sum(values) / len(values), max(values) - min(values)


def differs(row_a, row_b):
    (ma, sa), (mb, sb) = seed_spread(row_a["runs"]), seed_spread(row_b["runs"])
    return abs(ma - mb) > max(sa, sb)


def test_check_seed_spread_right_in_several_forms():
    assert L.check_seed_spread(seed_spread, differs)

    def np_spread(runs):
        v = np.array([r["mAP"] for r in runs])
        return v.mean(), np.ptp(v)

    def np_differs(a, b):
        (ma, sa), (mb, sb) = np_spread(a["runs"]), np_spread(b["runs"])
        return np.abs(ma - mb) > np.maximum(sa, sb)          # a NumPy bool

    assert L.check_seed_spread(np_spread, np_differs)

    def torch_differs(a, b):
        (ma, sa), (mb, sb) = seed_spread(a["runs"]), seed_spread(b["runs"])
        return torch.tensor(abs(ma - mb)) > max(sa, sb)      # a one-element bool tensor

    assert L.check_seed_spread(seed_spread, torch_differs)


def test_seed_cases_cover_both_answers_and_the_edges():
    cases = L._seed_cases()
    assert len(cases) >= 30
    answers = [differs({"runs": L._runs(a)}, {"runs": L._runs(b)}) for a, b in cases]
    assert 5 <= sum(answers) <= len(answers) - 5
    assert any(len(a) == 1 for a, _ in cases) and ([0.5, 0.5], [0.5, 0.5]) in cases
    assert {len(a) for a, _ in cases} >= {1, 2, 3, 4}


def _with_spread(fn):
    return lambda runs: (statistics.mean(r["mAP"] for r in runs), fn([r["mAP"] for r in runs]))


@pytest.mark.parametrize("wrong, hint", [
    (_with_spread(statistics.pstdev), "standard deviation"),
    (_with_spread(lambda v: statistics.stdev(v) if len(v) > 1 else 0.0), "standard deviation"),
    (_with_spread(lambda v: (max(v) - min(v)) / 2), "half the range"),
    (_with_spread(lambda v: v[-1] - v[0]), "last - first"),
    (lambda runs: (statistics.median(r["mAP"] for r in runs),
                   max(r["mAP"] for r in runs) - min(r["mAP"] for r in runs)), "median"),
])
def test_check_seed_spread_rejects_wrong_spreads(wrong, hint):
    res = L.check_seed_spread(wrong, differs)
    assert not res and hint in res.message


def _differs_by(rule):
    def fn(a, b):
        (ma, sa), (mb, sb) = seed_spread(a["runs"]), seed_spread(b["runs"])
        return rule(ma, sa, mb, sb)
    return fn


@pytest.mark.parametrize("rule, hint", [
    (lambda ma, sa, mb, sb: abs(ma - mb) >= max(sa, sb), "use >, not >="),
    (lambda ma, sa, mb, sb: abs(ma - mb) > sa + sb, "not with their sum"),
    (lambda ma, sa, mb, sb: abs(ma - mb) > min(sa, sb), "LARGER of the two spreads"),
    (lambda ma, sa, mb, sb: ma - mb > max(sa, sb), "absolute gap"),
    (lambda ma, sa, mb, sb: abs(ma - mb) > (sa + sb) / 2, "LARGER of the two spreads"),
])
def test_check_seed_spread_rejects_wrong_rules(rule, hint):
    res = L.check_seed_spread(seed_spread, _differs_by(rule))
    assert not res and hint in res.message


def test_check_seed_spread_rejects_first_seed_only_and_constants():
    first_seed = lambda a, b: a["runs"][0]["mAP"] != b["runs"][0]["mAP"]  # noqa: E731
    assert not L.check_seed_spread(seed_spread, first_seed)
    assert not L.check_seed_spread(seed_spread, lambda a, b: True)
    assert not L.check_seed_spread(seed_spread, lambda a, b: False)


def test_check_seed_spread_stub_crash_and_bad_returns():
    res = L.check_seed_spread(_stub, differs)
    assert not res and "not filled in" in res.message
    res = L.check_seed_spread(seed_spread, _stub)
    assert not res and "not filled in" in res.message
    res = L.check_seed_spread(lambda runs: 0.5, differs)
    assert not res and "pair (mean, spread)" in res.message
    res = L.check_seed_spread(seed_spread, lambda a, b: 0.3)
    assert not res and "True or False" in res.message
    res = L.check_seed_spread(seed_spread, lambda a, b: a["mAP"])
    assert not res and "KeyError" in res.message


# ------------------------------------------------------------------ exercise 2

def svd_time_saved(ms, shapes, ranks):
    saved = 0.0
    for layer, t in ranks.items():
        u, v = shapes[layer]
        saved += ms[layer] * max(0.0, 1 - t * (u + v) / (u * v))
    return saved / sum(ms.values())


def test_check_svd_time_saved_right_and_the_paper_like_case():
    assert L.check_svd_time_saved(svd_time_saved)
    assert L.check_svd_time_saved(lambda *a: torch.tensor(svd_time_saved(*a)))
    ms, shapes, ranks = L._SVD_CASES[0]
    assert sum(ms.values()) == 320 and (ms["fc6"] + ms["fc7"]) / 320 == pytest.approx(0.45)
    assert 0.30 < svd_time_saved(ms, shapes, ranks) < 0.34     # the paper: "over 30 %"


def test_svd_cases_include_a_layer_the_factorisation_would_slow_down():
    slowed = [(layer, t) for _, shapes, ranks in L._SVD_CASES for layer, t in ranks.items()
              if t * sum(shapes[layer]) > shapes[layer][0] * shapes[layer][1]]
    assert slowed


@pytest.mark.parametrize("index", range(len(L._SVD_WRONG)))
def test_check_svd_time_saved_rejects_plausible_slips(index):
    wrong, hint = L._SVD_WRONG[index]
    res = L.check_svd_time_saved(wrong)
    assert not res and hint in res.message


def test_check_svd_time_saved_other_wrong_answers():
    res = L.check_svd_time_saved(lambda ms, shapes, ranks: 0.3)
    assert not res and "sum over compressed layers" in res.message

    def every_fc_layer(ms, shapes, ranks):      # compresses layers the ranks do not name
        full = {k: ranks.get(k, 1) for k in shapes}
        return svd_time_saved(ms, shapes, full)
    assert not L.check_svd_time_saved(every_fc_layer)


def test_check_svd_time_saved_stub_and_bad_returns():
    res = L.check_svd_time_saved(_stub)
    assert not res and "not filled in" in res.message
    res = L.check_svd_time_saved(lambda *a: "33%")
    assert not res and "number" in res.message
    res = L.check_svd_time_saved(lambda *a: float("inf"))
    assert not res and "division by zero" in res.message
    res = L.check_svd_time_saved(lambda ms, shapes, ranks: ms["fc8"])
    assert not res and "KeyError" in res.message


def test_result_repr():
    assert repr(L.check_svd_time_saved(svd_time_saved)).startswith("Correct: ")
    assert repr(L.check_seed_spread(_stub, differs)).startswith("Not yet: ")
