"""Putting HydraLoRA updates into a diffusers transformer, and taking them out again.

Why our own injector and not peft's custom-module hook: peft dispatches custom layers by the
*type* of the target module (``nn.Linear`` → our class), through a private registration API,
and expects peft's per-adapter dict layout and merge/unmerge contract, which HydraLoRA cannot
honour (its router makes the update input-dependent). Our injector instead:

* finds target ``nn.Linear`` layers by module-name globs (``fnmatch``; ``*`` also spans dots),
* adds the `HydraLoRA` module as a child of that linear layer (so ``.to()``, model offload,
  DDP/FSDP and ``parameters()`` all see it), and
* registers a forward hook that adds the update to the layer's output.

The module tree keeps its names, so a plain LoRA loaded by diffusers/peft can sit on the same
layers: peft wraps the linear layer in ``base_layer`` and our hook still fires inside it.
Removing an injection deletes the hooks and the child modules; the base is left bit-identical.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from ..families import family_of
from .hydralora import HydraLoRA


_CHILD_PREFIX = "animatrix_hydra_"


def default_targets(transformer: nn.Module) -> tuple[str, ...]:
    """The DiT-block linear layers of the transformer's family."""
    return family_of(transformer).adapter_targets


def _base_linear(module: nn.Module) -> nn.Linear | None:
    """The plain linear layer of a module: itself, or peft's ``base_layer`` when peft wrapped it."""
    seen = 0
    while not isinstance(module, nn.Linear) and hasattr(module, "base_layer") and seen < 4:
        module = module.base_layer  # type: ignore[assignment]
        seen += 1
    return module if isinstance(module, nn.Linear) else None


def _clean_name(name: str) -> str:
    # peft renames "x.to_q" to "x.to_q.base_layer" inside its wrapper; the logical layer is "x.to_q".
    return name.replace(".base_layer", "")


def find_targets(model: nn.Module, patterns: Sequence[str], exclude: Sequence[str] = ()) -> dict[str, nn.Linear]:
    """Linear layers whose (peft-independent) module name matches a pattern and no exclusion."""
    found: dict[str, nn.Linear] = {}
    for raw_name, module in model.named_modules():
        name = _clean_name(raw_name)
        if name in found or not name:
            continue
        if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        linear = _base_linear(module)
        if linear is not None:
            found[name] = linear
    return found


def layer_shapes(targets: Mapping[str, nn.Linear]) -> dict[str, list[int]]:
    return {name: [lin.in_features, lin.out_features] for name, lin in sorted(targets.items())}


def fingerprint(shapes: Mapping[str, Sequence[int]]) -> str:
    """A short hash of the target layers' names and shapes: equal iff the adapter fits."""
    text = json.dumps({k: list(v) for k, v in sorted(shapes.items())}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shape_mismatch(expected: Mapping[str, Sequence[int]], model: nn.Module) -> str | None:
    """Why an adapter made for `expected` layers does not fit `model`; None when it fits."""
    modules = {_clean_name(n): m for n, m in model.named_modules()}
    missing = [n for n in expected if n not in modules or _base_linear(modules[n]) is None]
    if missing:
        return (f"{len(missing)} of its {len(expected)} layers do not exist in this model "
                f"(first: {missing[0]})")
    for name, (fan_in, fan_out) in expected.items():
        lin = _base_linear(modules[name])
        assert lin is not None
        if (lin.in_features, lin.out_features) != (fan_in, fan_out):
            return (f"layer {name} is {lin.in_features}->{lin.out_features} in this model but "
                    f"{fan_in}->{fan_out} in the adapter")
    return None


@dataclass(frozen=True)
class HydraSpec:
    """The shape of one HydraLoRA adapter (what is saved in its JSON config)."""

    rank: int = 32
    alpha: float = 32.0
    num_heads: int = 4
    router: str = "learned"
    fixed_weights: tuple[float, ...] | None = None
    dropout: float = 0.0
    targets: tuple[str, ...] = ()  # empty: the family's default targets
    exclude: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "alpha": self.alpha, "num_heads": self.num_heads, "router": self.router,
                "fixed_weights": None if self.fixed_weights is None else list(self.fixed_weights),
                "dropout": self.dropout, "targets": list(self.targets), "exclude": list(self.exclude)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HydraSpec":
        fw = data.get("fixed_weights")
        return cls(rank=int(data["rank"]), alpha=float(data["alpha"]), num_heads=int(data["num_heads"]),
                   router=str(data.get("router", "learned")),
                   fixed_weights=None if fw is None else tuple(float(w) for w in fw),
                   dropout=float(data.get("dropout", 0.0)), targets=tuple(data.get("targets", ())),
                   exclude=tuple(data.get("exclude", ())))


@dataclass
class HydraInjection:
    """HydraLoRA modules living in a model; `remove` restores the model exactly."""

    spec: HydraSpec
    slot: str
    modules: dict[str, HydraLoRA]
    shapes: dict[str, list[int]]
    _owners: dict[str, nn.Linear] = field(repr=False, default_factory=dict)
    _hooks: list[Any] = field(repr=False, default_factory=list)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.shapes)

    @property
    def active(self) -> bool:
        return bool(self._hooks)

    def parameters(self) -> Iterator[nn.Parameter]:
        for name in sorted(self.modules):
            yield from self.modules[name].parameters()

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        for name in sorted(self.modules):
            for pname, p in self.modules[name].named_parameters():
                yield f"{name}.{pname}", p

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_strength(self, strength: float) -> None:
        for m in self.modules.values():
            m.strength = float(strength)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Trainable tensors keyed ``<layer>.lora_A`` / ``.lora_B`` / ``.router.weight`` (float32, CPU)."""
        return {k: p.detach().to("cpu", torch.float32).contiguous() for k, p in self.named_parameters()}

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        if missing or unexpected:
            raise KeyError(f"adapter tensors do not match the layers: missing {missing[:3]}, unexpected {unexpected[:3]}")
        with torch.no_grad():
            for key, p in own.items():
                src = tensors[key]
                if tuple(src.shape) != tuple(p.shape):
                    raise KeyError(f"{key} is {tuple(src.shape)} in the file but {tuple(p.shape)} here")
                p.copy_(src.to(p.device, p.dtype))

    def remove(self) -> None:
        """Take the hooks and modules out; the model is as it was before `inject_hydralora`."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        for linear in self._owners.values():
            if hasattr(linear, self.slot):
                delattr(linear, self.slot)
        self._owners.clear()


def _make_hook(adapter: HydraLoRA):
    def hook(_module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        if adapter.lora_A.device != x.device:
            # Offload hooks (sequential / group) move the layer's own weights, not ours: follow the input.
            adapter.to(x.device)
        return output + adapter(x).to(output.dtype)

    return hook


_slot_counter = 0


def inject_hydralora(
    model: nn.Module,
    spec: HydraSpec,
    *,
    dtype: torch.dtype = torch.float32,
) -> HydraInjection:
    """Add HydraLoRA updates to the model's target layers (base weights untouched, not frozen here).

    Adapter weights are created in `dtype` (float32 by default: the update is small and bf16
    rounding would swallow it) on each layer's device.
    """
    global _slot_counter
    patterns = spec.targets or default_targets(model)
    targets = find_targets(model, patterns, spec.exclude)
    if not targets:
        raise ValueError(f"no linear layer of {type(model).__name__} matches the target patterns {list(patterns)}")
    _slot_counter += 1
    slot = f"{_CHILD_PREFIX}{_slot_counter}"
    injection = HydraInjection(spec=spec, slot=slot, modules={}, shapes=layer_shapes(targets))
    for name, linear in sorted(targets.items()):
        adapter = HydraLoRA(linear.in_features, linear.out_features, spec.rank, spec.alpha, spec.num_heads,
                            router=spec.router, fixed_weights=spec.fixed_weights, dropout=spec.dropout,
                            device=linear.weight.device, dtype=dtype)
        linear.add_module(slot, adapter)
        injection.modules[name] = adapter
        injection._owners[name] = linear
        injection._hooks.append(linear.register_forward_hook(_make_hook(adapter)))
    return injection
