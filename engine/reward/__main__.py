"""`python -m engine.reward ARGS`: the same as `python -m engine reward ARGS` (one parser, one error handling)."""
import sys

from engine.cli import main_for

sys.exit(main_for("reward"))
