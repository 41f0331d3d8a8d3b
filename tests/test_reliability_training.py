"""Issue 18, training side: a resume under other settings is refused before anything is touched,
budgets are positive, throughput counts the seconds of every resumed run, a non-finite loss or
input stops with one line naming the step and the term (or the image), and the command line's
errors are one line with exit status 1 or 2."""
import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch

from frcnn_edu import cli
from frcnn_edu.data import ShapesDataset
from frcnn_edu.models import recipes
from frcnn_edu.training import train, train_fast_rcnn, train_four_step, train_joint
from frcnn_edu.training.checkpoint import write_text_atomic

from test_training import tiny_data, tiny_model


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _interrupted_run(out, **kwargs):
    """A 3-epoch run killed in its second epoch (its checkpoint holds epoch 0)."""
    calls = []

    def forward(model, images, targets):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return model(images, targets)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), tiny_data(4), epochs=3, forward=forward, progress=False, out=out, **kwargs)


# --- resume: the stored settings are compared first -------------------------------------------

@pytest.mark.parametrize("change, named", [
    (dict(optimizer="adam", lr=5e-4), ["optimizer 'sgd' -> 'adam'", "lr 0.01 -> 0.0005",
                                       "momentum 0.9 -> None"]),
    (dict(lr=0.02), ["lr 0.01 -> 0.02"]),
    (dict(batch_size=1), ["batch_size 2 -> 1"]),
    (dict(epochs=None, steps=10), ["budget 'epochs=3' -> 'steps=10'"]),
])
def test_killed_run_resumed_with_other_settings_is_refused_and_unchanged(tmp_path, change, named):
    _interrupted_run(tmp_path)
    before = _snapshot(tmp_path)
    model = tiny_model(seed=3)
    weights = [p.detach().clone() for p in model.parameters()]
    kwargs = dict(dict(epochs=3), **change)
    with pytest.raises(ValueError) as err:
        train(model, tiny_data(4), progress=False, out=tmp_path, **kwargs)
    message = str(err.value)
    assert str(tmp_path) in message and "stopped at step 2" in message
    assert all(n in message for n in named), message
    assert "new out folder" in message and "same settings" in message
    assert _snapshot(tmp_path) == before                          # nothing in the folder changed
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))  # nor the model
    hist = train(tiny_model(), tiny_data(4), epochs=3, progress=False, out=tmp_path)
    assert len(hist) == 6                                         # the same settings resume


def test_a_finished_run_says_it_is_finished_instead_of_extending(tmp_path):
    train(tiny_model(), tiny_data(4), steps=2, progress=False, out=tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"finished run \(2 steps\).*budget 'steps=2' -> 'steps=6'"):
        train(tiny_model(), tiny_data(4), steps=6, progress=False, out=tmp_path)
    assert _snapshot(tmp_path) == before


def test_settings_are_stored_as_plain_values(tmp_path):
    train(tiny_model(), tiny_data(4), steps=2, optimizer="adam", lr=1e-3, progress=False, out=tmp_path)
    payload = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert payload["settings"] == {"budget": "steps=2", "optimizer": "adam", "lr": 0.001,
                                   "batch_size": 2, "seed": 0, "warmup": 50, "lr_drops": [0.75],
                                   "flip": True}


class Small(ShapesDataset):
    def __init__(self, split, num_images=None):
        super().__init__(split, num_images=4, image_size=(64, 64))


@pytest.fixture
def small_cli(monkeypatch):
    monkeypatch.setattr(cli, "ShapesDataset", Small)
    monkeypatch.setattr(recipes, "shapes_faster_rcnn", lambda pretrained=True, **kw: tiny_model())
    return cli


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("flags, named", [
    (["--stride", "16"], ["--stride 8 -> 16"]),
    (["--optimizer", "sgd"], ["--optimizer adam -> sgd", "--lr 0.0005 -> 0.01"]),
    (["--paper"], ["--stride 8 -> 16", "--pooler roi_align -> roi_pool", "--optimizer adam -> sgd",
                   "--image-scale 240 -> None"]),
    (["--minutes", "0.05"], ["finished run", "--minutes 0.01 -> 0.05"]),
    (["--batch-size", "4"], ["--batch-size 2 -> 4"]),
])
def test_cli_resume_with_other_flags_is_refused_before_writing(tmp_path, small_cli, capsys, flags, named):
    out = tmp_path / "run"
    base = ["train", "--out", str(out), "--minutes", "0.01", "--device", "cpu"]
    assert small_cli.main(base) == 0
    capsys.readouterr()
    before = _snapshot(out)
    assert small_cli.main(base + flags) == 2                        # argparse: the last flag wins
    line = _error_line(capsys)
    assert all(n in line for n in named), line
    assert "new --out" in line and "flags" in line
    assert _snapshot(out) == before                                # config.json included


def test_cli_throughput_counts_the_seconds_of_every_resumed_run(tmp_path, small_cli, monkeypatch):
    out = tmp_path / "run"
    slow = []

    def first_run_slow_then_killed(model, data, **kw):
        def forward(m, images, targets):
            slow.append(1)
            if len(slow) == 3:                   # killed in epoch 1: epoch 0 (2 steps) is saved
                raise KeyboardInterrupt
            time.sleep(0.3)                      # 0.3 s per step in the killed run
            return m(images, targets)
        return train(model, data, steps=4, forward=forward, warmup=0, out=out / "joint", progress=False)
    monkeypatch.setattr(small_cli, "train_joint", first_run_slow_then_killed)
    with pytest.raises(KeyboardInterrupt):
        small_cli.main(["train", "--out", str(out), "--device", "cpu"])
    monkeypatch.setattr(small_cli, "train_joint",
                        lambda model, data, **kw: train(model, data, steps=4, warmup=0,
                                                        out=out / "joint", progress=False))
    assert small_cli.main(["train", "--out", str(out), "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 4
    assert metrics["train_seconds"] >= 0.6                        # the killed run's 2 x 0.3 s count
    assert metrics["train_images_per_second"] == pytest.approx(8 / metrics["train_seconds"], rel=0.05)
    assert not list(out.glob("*.tmp"))


def test_cli_batch_size_sets_the_images_of_every_step(tmp_path, small_cli, monkeypatch):
    """`train --batch-size 4`: every step holds 4 images, config.json records it (so a resume
    with another size is refused, above) and the throughput counts 4 images a step."""
    out, seen = tmp_path / "run", []

    def joint(model, data, **kw):
        def forward(m, images, targets):
            seen.append(len(images))
            time.sleep(0.2)                    # seconds well above metrics.json's 0.1 rounding
            return m(images, targets)
        return train(model, data, steps=3, forward=forward, warmup=0, out=out / "joint",
                     progress=False, batch_size=kw["batch_size"])
    monkeypatch.setattr(small_cli, "train_joint", joint)
    assert small_cli.main(["train", "--out", str(out), "--device", "cpu", "--batch-size", "4"]) == 0
    assert seen == [4, 4, 4]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["batch_size"] == 4
    rate, seconds = metrics["train_images_per_second"], metrics["train_seconds"]  # seconds: 0.1
    assert rate * seconds == pytest.approx(12, abs=rate * 0.05 + 0.01)           # 12 images


def test_cli_batch_size_larger_than_the_data_is_refused_naming_the_flag(tmp_path, small_cli, capsys):
    out = tmp_path / "run"
    assert small_cli.main(["train", "--out", str(out), "--device", "cpu", "--batch-size", "5"]) == 2
    line = _error_line(capsys)
    assert "--batch-size 5" in line and "4 training images" in line and "lower --batch-size" in line
    assert not out.exists()


def test_steps_and_seconds_come_from_the_same_runs():
    hist = [{"time": 1.0}, {"time": 2.0}, {"time": 9.0}]          # resumed: the clock carried over
    assert cli.training_steps_and_seconds([hist, [], [{"time": 1.0}]]) == (4, 10.0)


def test_text_is_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_text_atomic("old\n", path)

    def broken(self, text):
        raise OSError("disk full")
    monkeypatch.setattr(type(path), "write_text", broken)
    with pytest.raises(OSError):
        write_text_atomic("new\n", path)
    monkeypatch.undo()
    assert path.read_text() == "old\n"                             # never half a file


# --- budgets ---------------------------------------------------------------------------------

@pytest.mark.parametrize("budget, name", [
    (dict(steps=0), "steps"), (dict(steps=-3), "steps"), (dict(steps=2.5), "steps"),
    (dict(epochs=0), "epochs"), (dict(minutes=0), "minutes"), (dict(minutes=-1), "minutes"),
    (dict(minutes=math.nan), "minutes"), (dict(minutes=math.inf), "minutes"),
])
def test_budgets_must_be_positive(budget, name):
    for fn in (lambda: train(tiny_model(), tiny_data(2), progress=False, **budget),
               lambda: train_joint(tiny_model(), tiny_data(2), progress=False, **budget)):
        with pytest.raises(ValueError, match=rf"^{name} must be"):
            fn()
    proposals = [torch.zeros(0, 4)] * 2
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        train_fast_rcnn(tiny_model(), tiny_data(2), proposals, progress=False, **budget)


@pytest.mark.parametrize("budget, name", [(dict(steps=0), "steps"), (dict(minutes=-1), "minutes")])
def test_four_step_budget_is_checked_before_any_model_is_built(budget, name):
    built = []
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        train_four_step(lambda: built.append(1) or tiny_model(), tiny_data(2), progress=False, **budget)
    assert built == []


# --- non-finite losses and inputs ------------------------------------------------------------

def test_nan_weights_stop_naming_the_step_and_the_loss_term():
    model = tiny_model()
    with torch.no_grad():
        model.rpn.head.conv.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"step 0: loss_objectness: .*diverged"):
        train(model, tiny_data(), steps=2, progress=False)


class NaNImage(torch.utils.data.Dataset):
    num_classes = 6

    def __init__(self, bad=1, value=float("nan")):
        self.data, self.bad, self.value = tiny_data(4), bad, value

    def __len__(self):
        return 4

    def __getitem__(self, i):
        image, target = self.data[i]
        if i == self.bad:
            image = image.clone()
            image[0, 3, 3] = self.value
        return image, target


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_nan_pixel_is_an_input_problem_naming_the_image(value):
    with pytest.raises(ValueError, match=r"dataset item 1: its image holds NaN or inf pixels: an input"):
        train_joint(tiny_model(), NaNImage(1, value), steps=2, progress=False)
    with pytest.raises(ValueError, match=r"step \d+: dataset item 1 holds NaN or inf pixels.*input "
                                         r"problem") as err:
        train(tiny_model(), NaNImage(1, value), epochs=1, progress=False)   # no dataset check
    assert "learning rate" not in str(err.value)


def test_cli_nan_loss_is_one_line_with_exit_status_1(tmp_path, monkeypatch, capsys):
    def nan_model(pretrained=True, **kw):
        model = tiny_model()
        with torch.no_grad():
            model.rpn.head.conv.weight.fill_(float("nan"))
        return model
    monkeypatch.setattr(cli, "ShapesDataset", Small)
    monkeypatch.setattr(recipes, "shapes_faster_rcnn", nan_model)
    assert cli.main(["train", "--out", str(tmp_path / "r"), "--minutes", "0.01", "--device", "cpu"]) == 1
    line = _error_line(capsys)
    assert "step 0" in line and "loss_objectness" in line


# --- the real command: one line, exit 2, nothing written ---------------------------------------

def _run(*argv, cwd):
    return subprocess.run([sys.executable, "-m", "frcnn_edu", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_cli_bad_flags_and_folders_are_one_line_errors(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "empty").mkdir()
    cases = [
        (["train", "--out", "r", "--minutes", "-1"], "--minutes"),
        (["train", "--out", "r", "--minutes", "0"], "--minutes"),
        (["train", "--out", "r", "--train-images", "0"], "--train-images"),
        (["train", "--out", "r", "--batch-size", "0"], "--batch-size"),
        (["train", "--out", "r", "--device", "foo"], "--device foo"),
        (["train", "--out", str(a_file), "--device", "cpu"], "is a file"),
        (["evaluate", "empty", "--device", "cpu"], "config.json not found"),
        (["evaluate", "missing", "--device", "cpu"], "is not a folder"),
        (["detect", "empty", "img.png", "--save", "d.png", "--threshold", "5"], "--threshold"),
    ]
    for argv, named in cases:
        done = _run(*argv, cwd=tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (argv, done.stderr)
        assert "Traceback" not in done.stderr and named in lines[-1], (argv, done.stderr)
        assert not (tmp_path / "r").exists()
    assert a_file.read_text() == "x"
