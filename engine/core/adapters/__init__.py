"""Fine-tuned adapters: HydraLoRA (PTTA) and plain LoRA — layers, injection, files, application.

Public API:

* `HydraLoRA`, `HydraLoRALinear`, `hydralora_parameter_count` — the layer (`hydralora.py`).
* `HydraSpec`, `inject_hydralora`, `HydraInjection`, `default_targets`, `find_targets` — putting
  updates into a diffusers transformer by module-name globs and taking them out (`inject.py`).
* `save_adapter`, `inspect_adapter`, `BaseInfo`, `AdapterConfig` — files (`io.py`).
* `apply_adapters`, `AdapterHandle`, `check_adapters`, `can_merge` — the studio's entry point (`apply.py`).
"""
from __future__ import annotations

from .apply import (
    HYDRA_MERGE_REFUSAL, AdapterHandle, adapter_kind, apply_adapters, can_merge, check_adapters, check_base,
)
from ..families import HUNYUAN_TARGETS, WAN_TARGETS
from .hydralora import HydraLoRA, HydraLoRALinear, hydralora_parameter_count
from .inject import (
    HydraInjection, HydraSpec, default_targets, find_targets, fingerprint,
    inject_hydralora, layer_shapes,
)
from .io import AdapterConfig, AdapterFiles, BaseInfo, inspect_adapter, lora_state_dict_diffusers, save_adapter

__all__ = [
    "AdapterConfig", "AdapterFiles", "AdapterHandle", "BaseInfo", "HUNYUAN_TARGETS", "HYDRA_MERGE_REFUSAL",
    "HydraInjection", "HydraLoRA", "HydraLoRALinear", "HydraSpec", "WAN_TARGETS", "adapter_kind",
    "apply_adapters", "base_info_for", "can_merge", "check_adapters", "check_base", "default_targets", "find_targets", "fingerprint",
    "hydralora_parameter_count", "inject_hydralora", "inspect_adapter", "layer_shapes",
    "lora_state_dict_diffusers", "save_adapter",
]


def base_info_for(transformer: object, injection: HydraInjection, model_id: str) -> BaseInfo:
    """The `BaseInfo` to save with an adapter trained on `transformer` (registry family of `model_id`)."""
    from .apply import _family_of

    from ..families import family_of

    family = _family_of(model_id) or family_of(transformer).name
    return BaseInfo(model_id, family, type(transformer).__name__,
                    {k: (v[0], v[1]) for k, v in injection.shapes.items()})
