"""`python -m engine.reward ...` (the same commands as `python -m engine reward ...`)."""
import sys

from .cli import main

sys.exit(main())
