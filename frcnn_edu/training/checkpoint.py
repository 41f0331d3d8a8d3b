"""Checkpoints: everything needed to resume a training run exactly where it stopped.

A checkpoint holds the model and optimizer state, the step and epoch reached, the planned number
of steps, the loss history and the random-number state, so a second call of the same training
function continues from the last finished epoch instead of starting again.
"""
from pathlib import Path

import torch

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(folder, model, optimizer, state):
    """Write folder/checkpoint.pt atomically (a crash mid-write never leaves a broken file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {**state, "model": model.state_dict(),
               "optimizer": optimizer.state_dict() if optimizer is not None else None,
               "rng": torch.get_rng_state()}
    tmp = folder / (CHECKPOINT + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(folder / CHECKPOINT)


def load_checkpoint(folder, model=None, optimizer=None, map_location="cpu"):
    """Read folder/checkpoint.pt into model/optimizer (when given) and restore the RNG.

    Returns the training state (step, epoch, history, ...), or None when the folder holds no
    checkpoint yet.
    """
    path = Path(folder) / CHECKPOINT
    if not path.exists():
        return None
    payload = torch.load(path, map_location=map_location, weights_only=False)
    if model is not None:
        model.load_state_dict(payload["model"])
    if optimizer is not None and payload.get("optimizer") is not None:
        optimizer.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["rng"])
    return {k: v for k, v in payload.items() if k not in ("model", "optimizer", "rng")}
