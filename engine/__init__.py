"""AniMatrix Studio engine: anime video generation without any UI.

Importing this package is cheap: torch, diffusers and the database load only when first used.
"""
# The one version source: pyproject.toml reads it (setuptools `attr:`), clips and history rows record it.
__version__ = "0.3.0"
