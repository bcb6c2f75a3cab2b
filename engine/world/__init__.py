"""The procedural anime world: clips with ground truth for every tag and deformation (docs/world.md)."""
