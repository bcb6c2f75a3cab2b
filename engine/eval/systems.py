"""A *system* under evaluation: model x adapters x tag encoder x tag guidance x tags-in-prompt x
quantization x speed profile (plus optional steps/guidance and the speed parts: cache, compile,
attention), and the request it makes of a prompt and a seed.

`tags_in_prompt` left out follows the request's default: off with a tag encoder, on without.

`use_tags: false` is the baseline that never sees the tags (the request carries none; the
prompt's tags stay the truth it is scored against): what "ignoring the tags" measures as.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..core.errors import InvalidRequest
from ..core.request_schema import suite_settings
from ..core.requests import AdapterRef, GenerationRequest

# What a suite may set, as each request setting declares it (`suite=` in engine/core/requests.py).
GENERATION_KEYS = suite_settings(GenerationRequest, "generation")
_OWN = ("model", "adapters", "tag_encoder", "quantization")  # a system's fields of its own
# Settings a system copies into the request as they are, when it sets them.
_PASSED = tuple(k for k in suite_settings(GenerationRequest, "system") if k not in _OWN)
SYSTEM_KEYS = ("id", *_OWN, "use_tags", *_PASSED)


@dataclass(frozen=True)
class System:
    id: str
    model: str
    adapters: tuple[AdapterRef, ...] = ()
    tag_encoder: str | None = None
    quantization: str = "none"
    use_tags: bool = True
    settings: Mapping[str, Any] = field(default_factory=dict)  # of _PASSED, the ones it sets

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "System":
        unknown = sorted(set(data) - set(SYSTEM_KEYS))
        if unknown:
            raise InvalidRequest(unknown[0], f"is not a system key; allowed: {', '.join(SYSTEM_KEYS)}")
        if not isinstance(data.get("model"), str) or not data["model"].strip():
            raise InvalidRequest("model", "every system names a model (a registry id or a diffusers folder)")
        raw = data.get("adapters") or []
        if not isinstance(raw, list):
            raise InvalidRequest("adapters", "must be a list of {path, strength} or paths")
        adapters = []
        for a in raw:
            if isinstance(a, str):
                adapters.append(AdapterRef(a))
            elif isinstance(a, Mapping):
                adapters.append(AdapterRef(**{k: a[k] for k in a if k in ("path", "strength", "kind")}))
            else:
                raise InvalidRequest("adapters", f"an adapter is a path or {{path, strength}}, got {a!r}")
        tip, use = data.get("tags_in_prompt"), data.get("use_tags", True)
        for key, value in (("tags_in_prompt", tip), ("use_tags", use)):
            if value is not None and not isinstance(value, bool):
                raise InvalidRequest(key, f"must be true or false, got {value!r}")
        return cls(str(data["id"]), data["model"].strip(), tuple(adapters), data.get("tag_encoder"),
                   data.get("quantization", "none"), use, {k: data[k] for k in _PASSED if data.get(k) is not None})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "model": self.model, "quantization": self.quantization,
                               "use_tags": self.use_tags}
        if self.adapters:
            out["adapters"] = [{"path": a.path, "strength": a.strength, "kind": a.kind} for a in self.adapters]
        if self.tag_encoder is not None:
            out["tag_encoder"] = self.tag_encoder
        out.update(self.settings)
        return out

    def request(self, narrative: str, tags: Mapping[str, Any], seed: int,
                generation: Mapping[str, Any]) -> GenerationRequest:
        """The generation request of this system for one prompt and seed (checked when built)."""
        data: dict[str, Any] = {k: v for k, v in generation.items() if v is not None}
        data.update(narrative=narrative, tags=dict(tags) if self.use_tags else {}, seed=seed, model=self.model,
                    quantization=self.quantization,
                    adapters=[{"path": a.path, "strength": a.strength, "kind": a.kind} for a in self.adapters])
        if self.tag_encoder is not None:
            data["tag_encoder"] = self.tag_encoder
        data.update(self.settings)
        return GenerationRequest.from_dict(data)


__all__ = ["GENERATION_KEYS", "SYSTEM_KEYS", "System"]
