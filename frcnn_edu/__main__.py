"""`python -m frcnn_edu ...`: see frcnn_edu/cli.py."""
import os
import sys

# Threads that wait for work sleep instead of spinning (set before torch loads its OpenMP
# runtime, which reads it once). With the default spin-waiting, two 2-thread trainings on a
# 2-core machine each ran 66x slower than alone (6.66 s a step against 0.101), not 2x; sleeping
# threads give each its fair half (0.202 s) for 15 % more time when alone
# (benchmarks/RESULTS.md, "A busy machine"). An OMP_WAIT_POLICY already set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .cli import main  # noqa: E402

sys.exit(main())
