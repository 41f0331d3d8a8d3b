"""Checkpoints: everything needed to resume a training run exactly where it stopped.

A checkpoint holds the model and optimizer state, the step and epoch reached, the planned number
of steps, the loss history and the random-number state, so a second call of the same training
function continues from the last finished epoch instead of starting again.

Everything in it is a tensor or a plain Python value (dict, list, str, number, None), so it is
read with `torch.load(..., weights_only=True)`: unpickling an arbitrary object can run arbitrary
code, and a checkpoint file found in an `--out` folder is untrusted input.
"""
import pickle
from pathlib import Path

import torch

CHECKPOINT = "checkpoint.pt"


def save_atomic(obj, path):
    """torch.save to a temporary file, then rename it: a kill mid-write never leaves a broken
    or empty file at `path` (the rename is atomic on one file system)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def write_text_atomic(text, path):
    """Write `text` to `path` through a temporary file and a rename, like `save_atomic`: a
    reader (or a kill mid-write) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def load_weights(path, map_location="cpu"):
    """torch.load with weights_only=True, so a crafted pickle is refused and runs nothing.

    The refusal is an `UnpicklingError` from torch; it is re-raised as a ValueError that names
    the file (a truncated or empty file gets the same treatment)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as e:
        raise ValueError(f"{path} is not a frcnn_edu checkpoint or weights file that can be loaded "
                         f"safely ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'empty'}); "
                         "delete it, or train again into a new --out folder") from None


def save_checkpoint(folder, model, optimizer, state):
    """Write folder/checkpoint.pt atomically (a crash mid-write never leaves a broken file)."""
    payload = {**state, "model": model.state_dict(),
               "optimizer": optimizer.state_dict() if optimizer is not None else None,
               "rng": torch.get_rng_state()}
    save_atomic(payload, Path(folder) / CHECKPOINT)


def read_checkpoint(folder, map_location="cpu"):
    """The whole payload of folder/checkpoint.pt (weights, optimizer, RNG and training state),
    or None when there is none yet. Reads only: a resume compares its settings with the stored
    ones (`training.loop.check_resume`) before anything is loaded or written."""
    path = Path(folder) / CHECKPOINT
    return load_weights(path, map_location) if path.exists() else None


def restore_checkpoint(payload, model=None, optimizer=None):
    """Load a `read_checkpoint` payload into model/optimizer (when given) and restore the RNG;
    returns the training state (step, epoch, history, settings, ...)."""
    if model is not None:
        model.load_state_dict(payload["model"])
    if optimizer is not None and payload.get("optimizer") is not None:
        optimizer.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["rng"].cpu())  # the CPU generator's state, wherever the model is
    return {k: v for k, v in payload.items() if k not in ("model", "optimizer", "rng")}


def load_checkpoint(folder, model=None, optimizer=None, map_location="cpu"):
    """Read folder/checkpoint.pt into model/optimizer (when given) and restore the RNG.

    Returns the training state (step, epoch, history, ...), or None when the folder holds no
    checkpoint yet.
    """
    payload = read_checkpoint(folder, map_location)
    return None if payload is None else restore_checkpoint(payload, model, optimizer)
