"""`python -m engine.training ARGS`: the same as `python -m engine train ARGS` (one parser, one error handling)."""
import sys

from engine.cli import main_for

sys.exit(main_for("train"))
