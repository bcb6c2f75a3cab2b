"""AniMatrix Studio engine: anime video generation without any UI.

Importing this package is cheap: torch, diffusers and the database load only when first used.
"""
__version__ = "0.1.0"
