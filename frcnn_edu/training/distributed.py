"""Training on more than one process: PyTorch's DistributedDataParallel under `train`.

    torchrun --nproc_per_node=2 -m frcnn_edu train --out runs/ddp --steps 800

`torchrun` starts N processes and gives each its RANK, LOCAL_RANK and WORLD_SIZE;
`init_from_env` joins them into one process group (gloo on the CPU, NCCL on GPUs). Each process
holds a full copy of the model; `train` wraps it in `DistributedDataParallel`, which averages the
gradients of every step over the processes (an all-reduce during the backward pass), so every
copy takes the same SGD step and stays equal to the others.

The data are split as a distributed sampler splits them, in the loop's own order: each epoch's
shuffled order (`loop.epoch_order`, the same in every process) is cut into global batches of
N x batch_size images, and process r takes the r-th slice of each. The random flips are drawn
for the whole global batch in every process, so a run on N processes with batch_size B trains
on the images, and the flips, of a one-process run with batch_size N x B. Its gradient is the
average of the N processes' losses: the same as the one-process run's where the loss is a mean
over images with the same number of sampled anchors and RoIs in each (the Faster R-CNN losses
on same-size images). The random choices inside the model (which 256 anchors and 64 RoIs are
sampled) are each process's own, so a Faster R-CNN run matches a one-process run in
distribution, not draw for draw.

The learning rate is the one of the global batch (N x batch_size images a step, as
the papers' lr 0.001-0.01 is for their 1-2 images a step): with more processes, either keep the
global batch (smaller batch_size per process) or scale lr with it (Goyal et al. 2017, "Accurate,
Large Minibatch SGD: Training ImageNet in 1 Hour": the linear scaling rule, with a warm-up).

Process 0 writes the checkpoints, shows the progress bar and records the history (the losses
averaged over the processes); the others follow. A minutes budget is decided by process 0's
clock, sent to the others every step, so all stop after the same step. A resumed run must use
the same number of processes (the checkpoint stores it and `train` refuses another).
"""
import os

import torch
import torch.distributed as dist

__all__ = ["world", "is_main", "init_from_env", "close", "wrap", "agree", "mean_over_processes"]


def world():
    """(rank, world_size) of this process: (0, 1) when no process group is running."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main():
    return world()[0] == 0


def init_from_env(device="cpu"):
    """Join the process group that `torchrun` describes in the environment; returns the device
    this process trains on (cuda:LOCAL_RANK on GPUs). Without torchrun (no WORLD_SIZE, or 1):
    nothing to join, `device` is returned as it is."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or dist.is_initialized():
        return device
    cuda = str(device).startswith("cuda")
    if cuda:  # one GPU per process
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return device


def close():
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(model, device):
    """`model` in DistributedDataParallel; it starts every copy from process 0's weights.
    find_unused_parameters: the 4-step schemes train one part at a time (an RPN-only step
    leaves the detector head out of the graph)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def _tensor(values):
    """float64 values where the backend can send them (NCCL sends only CUDA tensors)."""
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    return torch.tensor(values, dtype=torch.float64, device=device)


def agree(value):
    """Process 0's `value` (a float) in every process: one decision (e.g. 'the minutes are
    spent') for all."""
    if world()[1] == 1:
        return value
    t = _tensor([float(value)])
    dist.broadcast(t, src=0)
    return float(t.item())


def mean_over_processes(record):
    """{name: float} averaged over the processes (what the history records)."""
    if world()[1] == 1:
        return record
    names = sorted(record)
    t = _tensor([record[n] for n in names])
    dist.all_reduce(t)
    return {n: float(v) / world()[1] for n, v in zip(names, t.tolist())}
