"""Shared fixtures: every test that takes `device` runs on the CPU and, when present, on CUDA."""
import os
import sys

import pytest
import torch

# The reference machine has 2 cores; keep each test process from oversubscribing them.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


class FakeClock:
    """A stand-in for ``time`` whose perf_counter moves only when a test says so.

    Budget and timing logic is then tested exactly, whatever the machine's load.
    """

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def fake_clock():
    return FakeClock()


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)


@pytest.fixture
def ax():
    """A fresh matplotlib Axes for a drawing test, closed afterwards."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


@pytest.fixture(autouse=True)
def close_figures():
    """Close whatever figures a test (or the widget it drives) left open."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
