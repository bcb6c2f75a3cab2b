"""Model families, one module each; `family_of` is the one place that tells them apart."""
from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest
from .base import ModelFamily, Site, SpeedSupport, TagChannelError, TagSites, module_at
from .hunyuan import HUNYUAN, HUNYUAN_TARGETS
from .wan import WAN, WAN22_5B, WAN22_A14B, WAN_TARGETS

__all__ = ["FAMILIES", "HUNYUAN", "HUNYUAN_TARGETS", "WAN", "WAN22_5B", "WAN22_A14B", "WAN_TARGETS", "ModelFamily",
           "Site", "SpeedSupport", "TagChannelError", "TagSites", "family_named", "family_of", "module_at"]

FAMILIES: dict[str, ModelFamily] = {f.key: f for f in (WAN, HUNYUAN)}


def family_named(key: str) -> ModelFamily:
    """The family stored under `key` in a file ('wan', 'hunyuanvideo'; display names are accepted too)."""
    for family in FAMILIES.values():
        if key in (family.key, family.name):
            return family
    raise InvalidRequest("family", f"unknown model family {key!r}; known: {', '.join(FAMILIES)}")


def family_of(thing: Any) -> ModelFamily:
    """The family of a pipeline, a transformer, or a diffusers class name (pipeline or transformer)."""
    if isinstance(thing, ModelFamily):
        return thing
    if isinstance(thing, str):
        names = [thing]
    else:
        inner = getattr(thing, "transformer", None)
        # The class and its bases: a subclass (or a wrapper class deriving from it) keeps its family.
        names = [c.__name__ for c in type(inner if inner is not None else thing).__mro__]
    for name in names:
        for family in FAMILIES.values():
            if name in (family.pipeline_class, family.transformer_class, family.key, family.name):
                return family
    name = names[0]
    raise InvalidRequest("model", f"{name} is not a supported model class (supported: "
                                  + ", ".join(f"{f.pipeline_class} / {f.transformer_class}" for f in FAMILIES.values())
                                  + ")")
