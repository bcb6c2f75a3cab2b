"""`python -m engine.curation ARGS`: the same as `python -m engine curate ARGS` (one parser, one error handling)."""
import sys

from engine.cli import main_for

sys.exit(main_for("curate"))
