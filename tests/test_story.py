"""The runs carry the story: the ladder holds, and the prose quotes its sources.

* `benchmarks/results/ladder.json` (written by benchmarks/ladder.py) has the papers' order,
  R-CNN < Fast R-CNN < Faster R-CNN, and Faster R-CNN with 300 RPN proposals is at least as good
  as Fast R-CNN with all of selective search's boxes (Faster R-CNN Table 2's claim).
* Every three-decimal number in a lesson's markdown is printed by that lesson's saved outputs or
  stands in a results file (so prose and outputs cannot drift apart); the README's ladder row
  quotes ladder.json.
* The lessons' own saved runs keep the order too: lesson 01's R-CNN < lesson 02's Fast R-CNN <
  lesson 05's Faster R-CNN (approximate joint).
* Lesson budgets are steps: no `minutes=` outside the quick test setting.
* Lesson 06's "What held here" paragraphs quote the numbers its tables print.
"""
import json
import re
from pathlib import Path

import nbformat
import pytest

from frcnn_edu.results import RESULTS_DIR, load_results

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
THREE_DECIMALS = re.compile(r"(?<![\d.])\d\.\d{3}(?![\d])")
# numbers in the prose that are arithmetic, not runs: lesson -> {number: what it is}
CONSTANTS = {"00": {"0.167": "1/6, a worked IoU"},
             "04": {"0.693": "log 2", "1.125": "0.5 * 1.5 ** 2, the worked smooth-L1 case"}}


def ladder():
    return load_results("ladder")


def test_the_ladder_has_the_papers_order():
    lad = ladder()
    assert lad["rcnn"]["mAP"] < lad["fast_rcnn"]["mAP"] < lad["faster_rcnn"]["mAP"]


def test_300_rpn_proposals_match_or_beat_all_of_selective_search():
    lad = ladder()
    assert lad["settings"]["faster_rcnn_test_proposals"] == 300
    assert lad["faster_rcnn"]["top_n"]["300"] == lad["faster_rcnn"]["mAP"]
    assert lad["faster_rcnn"]["mAP"] >= lad["fast_rcnn"]["mAP"]


def test_the_ladder_was_trained_under_one_budget():
    lad = ladder()
    steps = lad["settings"]["steps"]
    assert lad["fast_rcnn"]["steps"] == lad["faster_rcnn"]["steps"] == steps
    assert lad["settings"]["train_images"] == 1000 and lad["settings"]["test_images"] == 200


def _outputs(nb):
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                texts.append(out["text"])
            elif "text/plain" in out.get("data", {}):
                texts.append(out["data"]["text/plain"])
    return "\n".join(texts)


def _results_numbers():
    """Every number of the results files, as the prose may round it (3 decimals)."""
    found = set()

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, float):
            found.add(f"{value:.3f}")
    for path in RESULTS_DIR.glob("*.json"):
        walk(json.loads(path.read_text()))
    return found


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_numbers_in_the_prose_come_from_the_outputs_or_a_results_file(path):
    nb = nbformat.read(path, as_version=4)
    printed, stored = _outputs(nb), _results_numbers()
    allowed = CONSTANTS.get(path.name[:2], {})
    stray = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for number in THREE_DECIMALS.findall(cell.source):
            if number not in printed and number not in stored and number not in allowed:
                stray.append(f"cell {i}: {number}")
    assert not stray, f"{path.name}: numbers in the prose that no output or results file shows: {stray}"


def test_the_readme_quotes_the_grading_time():
    graded = load_results("grading")
    minutes, seconds = divmod(round(graded["seconds"]), 60)
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert graded["rows_right"] and not graded["timed_out"]
    assert (f"A class of {graded['copies']} lesson-{graded['lesson'][:2]} notebooks took "
            f"{minutes} min {seconds} s on a {graded['cores']}-core CPU") in readme


def test_the_readme_quotes_the_ladder():
    lad, readme = ladder(), (ROOT / "README.md").read_text()
    # the results table's row (a table line), not the sentence that names the command
    row = next(line for line in readme.splitlines()
               if line.startswith("|") and "benchmarks/ladder.py" in line)
    quoted = THREE_DECIMALS.findall(row)
    assert quoted[:3] == [f"{lad[k]['mAP']:.3f}" for k in ("rcnn", "fast_rcnn", "faster_rcnn")], row


def _lesson(prefix):
    return nbformat.read(next(p for p in LESSONS if p.name.startswith(prefix)), as_version=4)


def _last_float(pattern, text):
    values = re.findall(pattern, text)
    assert values, f"pattern {pattern!r} not found in the saved outputs"
    return float(values[-1])


def test_the_lessons_own_runs_keep_the_ladders_order():
    rcnn = _last_float(r"with box regression\s+(\d\.\d{3})", _outputs(_lesson("01")))
    fast = _last_float(r"mAP@0\.5 on \d+ test images: (\d\.\d{3})", _outputs(_lesson("02")))
    # the 4-step vs joint table (AP per class follows), not the shorter exact-joint pair
    faster = _last_float(r"approximate joint\s+(\d\.\d{3})\s+ellipse", _outputs(_lesson("05")))
    assert rcnn < fast < faster, (rcnn, fast, faster)


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_budgets_are_steps_not_minutes(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            for line in cell.source.splitlines():
                assert not re.search(r"\bminutes\s*=", line) or "FAST" in line, \
                    f"{path.name}: a budget in minutes gives other numbers on a slower machine: {line}"


DECIMAL = re.compile(r"(?<![\d.])\d+\.\d+(?![\d])")
# Lesson 06's verdict paragraphs may also quote arithmetic on the papers' own numbers.
PAPER_ARITHMETIC = {"9.5": "R-CNN table 2: 54.2 - 44.7", "3.5": "Fast R-CNN table 6: 66.9 - 63.4",
                    "2.7": "Faster R-CNN table 9: 69.9 - 67.2", "12.2": "table 2: 56.8 - 44.6",
                    "1.6": "table 2: 56.8 - 55.2", "4.3": "R-CNN table 2: 58.5 - 54.2",
                    "6.4": "fc6's weights in MB: 6272 x 256 x 4 bytes"}


def test_lesson06_says_what_held_with_the_numbers_its_tables_print():
    """Each 'What held here' paragraph quotes numbers printed above it (the tables, verdicts and
    measurements) or the papers' own: regenerate paper_tables.json and stale prose fails here."""
    nb = nbformat.read(ROOT / "notebooks" / "06_paper_tables.ipynb", as_version=4)
    printed = set(DECIMAL.findall(_outputs(nb)))
    paragraphs = [(i, c.source.split("\n\n")[0]) for i, c in enumerate(nb.cells)
                  if c.cell_type == "markdown" and c.source.startswith("**What held here")]
    assert len(paragraphs) == 6, "one verdict paragraph per table"
    stray = [f"cell {i}: {n}" for i, text in paragraphs for n in DECIMAL.findall(text)
             if n not in printed and n not in PAPER_ARITHMETIC]
    assert not stray, f"numbers no output of lesson 06 prints: {stray}"


# Lesson 07 may quote the paper's Table 2 (COCO mask AP) beside our numbers.
MASK_RCNN_PAPER = {"30.3": "Table 2b/2c: RoIAlign + sigmoid", "26.9": "Table 2c: RoIPool",
                   "24.8": "Table 2b: softmax",
                   "0.5": "the mask threshold / IoU", "0.95": "the top IoU threshold",
                   "0.90": "the box-mAP reference of RESULTS.md",
                   "0.85": "the course's mask AP@0.5 target (issue 16)"}


def test_lesson07_quotes_the_numbers_its_outputs_and_results_print():
    """The paragraphs after lesson 07's results tables ("What we measured") quote numbers that
    the tables above them print (from mask_rcnn.json) or the paper's Table 2."""
    nb = nbformat.read(ROOT / "notebooks" / "07_mask_rcnn.ipynb", as_version=4)
    printed = set(DECIMAL.findall(_outputs(nb)))
    paragraphs = [(i, c.source) for i, c in enumerate(nb.cells)
                  if c.cell_type == "markdown" and c.source.startswith("**What we measured")]
    assert len(paragraphs) == 2, "one paragraph after the study, one after the command-line runs"
    stray = [f"cell {i}: {n}" for i, text in paragraphs for n in DECIMAL.findall(text)
             if n not in printed and n not in MASK_RCNN_PAPER]
    assert not stray, f"numbers no output of lesson 07 prints: {stray}"
    results = load_results("mask_rcnn")
    rows = results["study"]["rows"]
    table = _outputs(nb)
    for name, row in rows.items():  # the saved table is the results file's
        assert f"{100 * row['AP']:.1f}" in table, name


# Lesson 08 may quote published numbers and settings beside its own runs.
LESSON08_SOURCES = {"69.9": "Faster R-CNN Table 3, VOC07 (VGG-16)", "73.2": "VOC07+12",
                    "0.5": "the IoU threshold / min_visible", "0.3": "the detector's NMS",
                    "0.7": "the RPN's positive IoU", "0.0005": "Adam's lr"}


def test_lesson08_quotes_the_numbers_its_outputs_print():
    """Lesson 08's "What we measured" paragraph quotes its own printed outputs (mAP of the
    detector and the baseline, steps, seconds) or the published numbers it cites."""
    nb = nbformat.read(ROOT / "notebooks" / "08_your_own_data.ipynb", as_version=4)
    printed = set(DECIMAL.findall(_outputs(nb))) | set(re.findall(r"\d+", _outputs(nb)))
    paragraphs = [(i, c.source) for i, c in enumerate(nb.cells)
                  if c.cell_type == "markdown" and c.source.startswith("**What we measured")]
    assert len(paragraphs) == 1, "one paragraph after the scores"
    stray = [f"cell {i}: {n}" for i, text in paragraphs for n in DECIMAL.findall(text)
             if n not in printed and n not in LESSON08_SOURCES]
    assert not stray, f"numbers no output of lesson 08 prints: {stray}"
    assert "mAP@0.5" in _outputs(nb) and "sliding window" in _outputs(nb)


def _lesson08_scores():
    """{(split, "baseline" | "detector"): mAP} as lesson 08's section 5 prints them."""
    nb = nbformat.read(ROOT / "notebooks" / "08_your_own_data.ipynb", as_version=4)
    text = _outputs(nb)
    scores = {}
    for split in ("test", "othersites"):
        for kind, pattern in (("baseline", "sliding window"), ("detector", "Faster R-CNN")):
            m = re.search(rf"{split}: {pattern}[^\n]*?mAP@0.5 (\d\.\d{{3}})", text)
            assert m, f"lesson 08 prints no {kind} score on {split}"
            scores[split, kind] = m.group(1)
    m = re.search(r"train \(the tiles it learned from\)\s+mAP@0.5 (\d\.\d{3})", text)
    assert m, "lesson 08 prints no training mAP"
    scores["train", "detector"] = m.group(1)
    return scores


def test_lesson08_detector_beats_the_baseline_on_held_out_photographs_and_readme_agrees():
    """Issue 17's target: the saved lesson's detector scores above the sliding-window baseline
    on the held-out photograph (and the other forests), and the README quotes those numbers."""
    s = _lesson08_scores()
    for split in ("test", "othersites"):
        assert float(s[split, "detector"]) > 2 * float(s[split, "baseline"]), split
    row = next(line for line in (ROOT / "README.md").read_text().splitlines()
               if line.startswith("| lesson 08:"))
    for key in (("train", "detector"), ("test", "detector"), ("test", "baseline")):
        assert s[key] in row, f"README's lesson 08 row lacks {key}: {s[key]}"


def test_lesson08_prints_the_study_it_cites():
    """The lesson's table of held-out mAP along training is the results file's."""
    nb = nbformat.read(ROOT / "notebooks" / "08_your_own_data.ipynb", as_version=4)
    text = _outputs(nb)
    for run in load_results("treecrowns_study")["runs"]:
        line = next(line for line in text.splitlines() if line.startswith(run["name"]))
        assert f"{run['rows'][-1]['test'][0]:.3f}" in line, run["name"]


def test_the_readme_quotes_the_mask_target_runs():
    """Issue 16's target, from `benchmarks/mask_rcnn.py --target` (results/mask_target.json): per
    seed, `train --masks --minutes 10` reaches mask AP@0.5 >= 0.85 and loses at most 2 points of
    box mAP against the same run without masks; the README's row quotes each seed's numbers."""
    target = load_results("mask_target")
    assert len(target["runs"]) >= 2, "two seeds at least"
    row = next(line for line in (ROOT / "README.md").read_text().splitlines()
               if line.startswith("|") and "mask_rcnn.py --target" in line)
    for seed, run in target["runs"].items():
        masks, boxes = run["masks"], run["boxes"]
        assert run["mask_target_met"] == (masks["mask_mAP"] >= target["mask_target"])
        assert run["box_target_met"] == (boxes["mAP"] - masks["mAP"] <= target["box_drop"])
        assert masks["minutes"] == boxes["minutes"] == 10.0 and masks["masks"] and not boxes["masks"]
        for number in (masks["mask_mAP"], masks["mAP"], boxes["mAP"]):
            assert f"{number:.3f}" in row, (seed, number, row)
        assert f"{masks['train_steps']:,}" in row, (seed, masks["train_steps"])
    met = all(r["mask_target_met"] and r["box_target_met"] for r in target["runs"].values())
    assert ("not met" not in row) == met, "the row's verdict is the file's"


def test_the_readme_quotes_the_steps_to_090_runs():
    """Issue 14's steps to 0.90 (benchmarks/steps_study.py, results/steps_study.json): the
    recipe's 1,200 steps of 2 images and `--batch-size 4`'s 800 steps pass 0.90 on both seeds,
    and the README's row quotes each of those runs and the busy 5-minute runs with 4 images."""
    runs = load_results("steps_study")["runs"]
    row = next(line for line in (ROOT / "README.md").read_text().splitlines()
               if line.startswith("| steps to mAP@0.5 0.90"))
    for steps, batch in ((1200, 2), (800, 4)):
        chosen = [r for r in runs.values() if r["steps"] == steps and r["batch_size"] == batch
                  and not r.get("variant") and not r.get("model_kw") and not r.get("minutes")]
        assert sorted(r["seed"] for r in chosen) == [0, 1], (steps, batch)
        for r in chosen:
            assert r["mAP"] >= 0.90 and f"**{r['mAP']:.3f}**" in row, (steps, batch, r["mAP"])
    busy = [r for r in runs.values() if r.get("busy") and r["batch_size"] == 4]
    assert sorted(r["seed"] for r in busy) == [0, 1]
    for r in busy:
        assert f"{r['mAP']:.3f}" in row, r
