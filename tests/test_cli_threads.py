"""`python -m frcnn_edu` makes waiting OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) before
torch loads, unless the variable is set: with spin-waiting, two trainings on a busy 2-core
machine each ran 66x slower than alone (benchmarks/RESULTS.md, "A busy machine")."""
import os
import subprocess
import sys

import pytest

PROBE = """
import os, runpy, sys
import frcnn_edu
assert "torch" not in sys.modules, "importing the package must not load torch (and OpenMP)"
sys.argv = ["frcnn_edu", "--help"]
try:
    runpy.run_module("frcnn_edu", run_name="__main__")
except SystemExit:
    pass
import torch
print(os.environ.get("OMP_WAIT_POLICY"), "torch" in sys.modules)
"""


@pytest.mark.parametrize("preset, want", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_command_line_sets_the_wait_policy_before_torch_loads(preset, want):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    run = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-2:] == [want, "True"]
