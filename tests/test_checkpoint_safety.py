"""Checkpoints and weights load with weights_only=True: a crafted pickle is refused and runs
nothing (issue: code execution from a checkpoint). Also: atomic writes, and the RNG state kept
on the CPU so a run resumes on any device."""
import os
import pickle

import pytest
import torch

from frcnn_edu.models.recipes import load_trained
from frcnn_edu.training import load_checkpoint, load_weights, save_atomic, train

from test_training import tiny_data, tiny_model

MARKER = "frcnn_edu_pwned"


class RunsCode:
    """Unpickling this calls os.system: what an attacker would put in checkpoint.pt."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _craft(path, marker):
    # torch.save pickles the whole dict, so the payload sits beside real-looking entries
    torch.save({"step": 1, "model": {}, "rng": torch.get_rng_state(), "evil": RunsCode(marker)}, path)


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / MARKER
    _craft(tmp_path / "checkpoint.pt", marker)
    with pytest.raises(ValueError, match="checkpoint.pt"):
        load_checkpoint(tmp_path, tiny_model())
    assert not marker.exists()
    # and through the training loop's resume
    with pytest.raises(ValueError, match="checkpoint.pt"):
        train(tiny_model(), tiny_data(4), steps=2, progress=False, out=tmp_path)
    assert not marker.exists()


def test_a_crafted_model_pt_is_refused_by_evaluate_and_detect(tmp_path):
    marker = tmp_path / MARKER
    (tmp_path / "config.json").write_text('{"model": {"num_classes": 6}}')
    _craft(tmp_path / "model.pt", marker)
    with pytest.raises(ValueError, match="model.pt"):
        load_trained(tmp_path)
    assert not marker.exists()


def test_the_plain_pickle_would_have_run_the_code(tmp_path):
    # the control: the same file read the unsafe way does execute the payload, so the tests
    # above can fail
    marker = tmp_path / MARKER
    _craft(tmp_path / "x.pt", marker)
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.exists()


def test_empty_or_truncated_files_get_an_error_naming_them(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="model.pt"):
        load_weights(tmp_path / "model.pt")
    save_atomic({"w": torch.ones(3)}, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pt"):
        load_weights(tmp_path / "cut.pt")


def test_save_atomic_leaves_no_partial_file_when_the_write_fails(tmp_path, monkeypatch):
    save_atomic({"w": torch.zeros(2)}, tmp_path / "model.pt")

    def dies(obj, f, *a, **k):
        open(f, "wb").write(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"w": torch.ones(2)}, tmp_path / "model.pt")
    monkeypatch.undo()
    assert torch.equal(load_weights(tmp_path / "model.pt")["w"], torch.zeros(2))  # old file intact


def test_real_checkpoints_load_with_weights_only(tmp_path):
    model = tiny_model()
    train(model, tiny_data(4), steps=2, progress=False, out=tmp_path)
    state = load_checkpoint(tmp_path, tiny_model(seed=3))
    assert state["step"] == 2 and len(state["history"]) == 2
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 2
    _craft(tmp_path / "crafted.pt", tmp_path / MARKER)
    with pytest.raises(pickle.UnpicklingError):  # torch itself refuses the crafted one
        torch.load(tmp_path / "crafted.pt", weights_only=True)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_resume_maps_the_rng_state_to_the_cpu_on_any_device(tmp_path, device):
    data = tiny_data(4)
    train(tiny_model(), data, steps=2, progress=False, out=tmp_path, device=device)
    # loading with map_location=device moves every tensor there, the RNG state included;
    # torch.set_rng_state needs a CPU ByteTensor
    state = load_checkpoint(tmp_path, tiny_model(), map_location=device)
    assert state["step"] == 2
    hist = train(tiny_model(), data, steps=2, progress=False, out=tmp_path, device=device)
    assert len(hist) == 2  # finished: the resume restores the RNG on `device` and returns
    with pytest.raises(ValueError, match=r"finished run .*budget 'steps=2' -> 'steps=4'"):
        train(tiny_model(), data, steps=4, progress=False, out=tmp_path, device=device)
