"""Training on two processes (torchrun, gloo on the CPU): the processes stay equal to each other
and to one process over the same global batch; an interrupted two-process run resumes; the
command line trains under torchrun."""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from frcnn_edu.data import ShapesDataset
from frcnn_edu.training import loop, train
from frcnn_edu.training.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]


class Toy(torch.nn.Module):
    """A model whose loss is a mean over the batch's images (as the detector's is), with a
    gradient that depends on the pixels and on the flips (the boxes' x positions)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 5, stride=4)
        self.fc = torch.nn.Linear(4, 1)

    def forward(self, images, targets):
        x = torch.stack([self.conv(img[None]).mean((2, 3))[0] for img in images])
        want = torch.stack([t["boxes"][:, 0].mean() / 160 for t in targets])
        return {"loss": ((self.fc(x)[:, 0] - want) ** 2).mean()}


def toy_run(out=None, **kw):
    torch.manual_seed(0)
    model = Toy()
    data = ShapesDataset("train", num_images=8)
    train(model, data, steps=6, lr=0.05, warmup=2, progress=False, out=out, **kw)
    return model


SCRIPT = textwrap.dedent("""
    import os, sys, torch
    sys.path.insert(0, {tests!r})
    from test_distributed import toy_run
    from frcnn_edu.training import distributed
    distributed.init_from_env("cpu")
    rank, world = distributed.world()
    if os.environ.get("FAIL_AT_STEP"):  # an interruption after the first checkpoint
        import frcnn_edu.training.loop as loop
        step = loop._step
        def failing(*a):
            if a[-2] == int(os.environ["FAIL_AT_STEP"]):
                raise SystemExit("interrupted")
            return step(*a)
        loop._step = failing
    model = toy_run(out=sys.argv[2] if len(sys.argv) > 2 else None, batch_size=2)
    torch.save(model.state_dict(), f"{{sys.argv[1]}}/rank{{rank}}.pt")
    distributed.close()
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args, env=None, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={_free_port()}", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "ddp_toy.py"
    path.write_text(SCRIPT.format(tests=str(ROOT / "tests")))
    return path


def test_the_processes_split_each_global_batch_and_its_flips():
    data = ShapesDataset("train", num_images=12)
    one = list(loop._batches(data, 4, 3, 1, True))
    two = [list(loop._batches(data, 2, 3, 1, True, rank, 2)) for rank in (0, 1)]
    assert len(one) == len(two[0]) == len(two[1]) == 3
    for whole, a, b in zip(one, *two):
        assert whole[0] == a[0] + b[0]                      # the same images, rank 0 first
        for x, y in zip(whole[1], a[1] + b[1]):             # with the same flips
            assert torch.equal(x, y)
        for x, y in zip(whole[2], a[2] + b[2]):
            assert torch.equal(x["boxes"], y["boxes"])


def test_one_process_is_the_old_loop():
    """world 1 draws exactly what the loop drew before it knew of processes."""
    data = ShapesDataset("train", num_images=6)
    g = torch.Generator().manual_seed(3 * 7919 + 0)
    order = loop.epoch_order(6, 3, 0).tolist()
    for start, (indices, images, _) in zip((0, 2, 4), loop._batches(data, 2, 3, 0, True)):
        assert indices == order[start:start + 2]
        for i, img in zip(indices, images):
            flip = torch.rand((), generator=g).item() < 0.5
            assert torch.equal(img, data[i][0].flip(-1) if flip else data[i][0])


def test_two_processes_equal_one_process_over_the_same_global_batch(tmp_path, script):
    run = torchrun([str(script), str(tmp_path)])
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    single = toy_run(batch_size=4).state_dict()
    for name, value in single.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name       # the copies agree
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-5, atol=1e-6)
    assert not torch.equal(single["fc.weight"], Toy().fc.weight)     # it did train


def test_an_interrupted_two_process_run_resumes(tmp_path, script):
    out = tmp_path / "run"
    first = torchrun([str(script), str(tmp_path), str(out)], env={"FAIL_AT_STEP": "4"})
    assert first.returncode != 0 and "interrupted" in first.stderr
    assert read_checkpoint(out)["step"] == 4       # process 0 wrote the checkpoint of step 4
    again = torchrun([str(script), str(tmp_path), str(out)])
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = torch.load(tmp_path / "rank0.pt")
    uninterrupted = toy_run(batch_size=4).state_dict()
    for name, value in uninterrupted.items():
        torch.testing.assert_close(resumed[name], value, rtol=1e-5, atol=1e-6)


def test_a_resume_with_another_number_of_processes_is_refused(tmp_path, script):
    out = tmp_path / "run"
    done = torchrun([str(script), str(tmp_path), str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    with pytest.raises(ValueError, match="processes 2 -> None"):
        toy_run(out=out, batch_size=2)


@pytest.mark.skipif(os.environ.get("FRCNN_EDU_SLOW") != "1",
                    reason="evaluates 200 held-out images (a minute): FRCNN_EDU_SLOW=1")
def test_cli_trains_under_torchrun(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)   # python -m frcnn_edu sets it
    out = tmp_path / "ddp"
    run = torchrun(["-m", "frcnn_edu", "train", "--out", str(out), "--steps", "3",
                    "--train-images", "8", "--eval-data", "shapes", "--device", "cpu"],
                   timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 3 and metrics["settings"]["processes"] == 2
    assert metrics["omp_wait_policy"] == "PASSIVE"   # waiting threads sleep: a busy machine's fair share
    assert json.loads((out / "config.json").read_text())["processes"] == 2
