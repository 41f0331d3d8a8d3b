"""`python -m frcnn_edu ...`: see frcnn_edu/cli.py."""
import sys

from .cli import main

sys.exit(main())
