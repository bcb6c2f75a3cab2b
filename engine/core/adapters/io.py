"""Adapter files: HydraLoRA as safetensors + JSON config, plain LoRA in the diffusers format.

A saved adapter is a folder::

    adapter/
      animatrix_adapter.json          kind, shape (rank, alpha, N...), targets, base model
      hydralora.safetensors           HydraLoRA: <layer>.lora_A, <layer>.lora_B, <layer>.router.weight
      pytorch_lora_weights.safetensors  plain LoRA: diffusers/peft keys (transformer.<layer>.lora_A.weight)

The JSON is also stored in the HydraLoRA file's safetensors metadata (key ``animatrix_adapter``)
so a lone ``.safetensors`` file still loads. ``base`` records the model id, its family, the
transformer class and the target layers' shapes with their fingerprint; loading checks them.
Plain LoRA is written with ``alpha`` folded into ``B`` (so ``alpha = r`` in the file), which any
diffusers/peft loader reads the same way without extra metadata.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import InvalidRequest
from ..toolkit.files import atomic_path
from .inject import HydraInjection, HydraSpec, fingerprint

FORMAT = "animatrix-adapter"
FORMAT_VERSION = 1
CONFIG_NAME = "animatrix_adapter.json"
HYDRA_WEIGHTS = "hydralora.safetensors"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # the name diffusers' load_lora_weights looks for
METADATA_KEY = "animatrix_adapter"
KINDS: tuple[str, ...] = ("hydralora", "lora")


@dataclass(frozen=True)
class BaseInfo:
    """The base model an adapter was trained on."""

    model_id: str
    family: str
    transformer_class: str
    layers: Mapping[str, tuple[int, int]]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "family": self.family, "transformer_class": self.transformer_class,
                "fingerprint": self.fingerprint, "layers": {k: list(v) for k, v in sorted(self.layers.items())}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BaseInfo":
        return cls(str(data["model_id"]), str(data["family"]), str(data.get("transformer_class", "")),
                   {k: (int(v[0]), int(v[1])) for k, v in dict(data["layers"]).items()})


@dataclass(frozen=True)
class AdapterConfig:
    kind: str
    spec: HydraSpec
    base: BaseInfo
    extra: Mapping[str, Any]  # training provenance (step, run name...): informative only

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": FORMAT_VERSION, "kind": self.kind, **self.spec.to_dict(),
                "base": self.base.to_dict(), "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> "AdapterConfig":
        if data.get("format") != FORMAT:
            raise InvalidRequest("adapters.path", f"{where} is not an AniMatrix adapter config")
        if int(data.get("version", 0)) > FORMAT_VERSION:
            raise InvalidRequest("adapters.path", f"{where} was written by a newer studio (format {data.get('version')})")
        try:
            kind = str(data["kind"])
            if kind not in KINDS:
                raise ValueError(f"unknown kind {kind!r}")
            return cls(kind, HydraSpec.from_dict(data), BaseInfo.from_dict(data["base"]), dict(data.get("extra", {})))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InvalidRequest("adapters.path", f"{where} has a broken adapter config ({exc})") from None


def _atomic_write_bytes(path: Path, write: Any) -> None:
    """Write through a temp file in the same folder and rename it into place."""
    with atomic_path(path) as tmp:
        write(tmp)


def _save_tensors(tensors: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    _atomic_write_bytes(path, lambda tmp: save_file(clean, str(tmp), metadata=dict(metadata or {})))


def save_adapter(injection: HydraInjection, folder: Path | str, *, kind: str, base: BaseInfo,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Write the injection's weights and config into `folder` (files replaced atomically).

    ``kind="lora"`` needs ``num_heads == 1`` and is written in the diffusers LoRA format.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = AdapterConfig(kind, injection.spec, base, dict(extra or {}))
    text = json.dumps(config.to_dict(), indent=2, sort_keys=True)
    if kind == "hydralora":
        _save_tensors(injection.state_dict(), folder / HYDRA_WEIGHTS, {METADATA_KEY: text, "format": "pt"})
    elif kind == "lora":
        _save_tensors(lora_state_dict_diffusers(injection), folder / LORA_WEIGHTS, {"format": "pt"})
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    _atomic_write_bytes(folder / CONFIG_NAME, lambda tmp: tmp.write_text(text + "\n"))
    return folder


def lora_state_dict_diffusers(injection: HydraInjection) -> dict[str, torch.Tensor]:
    """Plain LoRA (one head) as diffusers/peft keys, with ``alpha/r`` and the head weight folded into B."""
    if injection.spec.num_heads != 1:
        raise ValueError("only a one-head adapter is plain LoRA; HydraLoRA has its own format")
    out: dict[str, torch.Tensor] = {}
    for name, module in sorted(injection.modules.items()):
        gate = float(module.head_weights[0]) if module.head_weights is not None else 1.0
        a = module.lora_A.detach().float().cpu()
        b = module.lora_B[0].detach().float().cpu() * (module.scaling * gate)
        out[f"transformer.{name}.lora_A.weight"] = a.contiguous()
        out[f"transformer.{name}.lora_B.weight"] = b.contiguous()
    return out


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a safetensors file"
        raise InvalidRequest("adapters.path", f"{path} is not a readable safetensors file ({exc})") from None


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001
        raise InvalidRequest("adapters.path", f"{path} could not be read ({exc})") from None


@dataclass(frozen=True)
class AdapterFiles:
    """What a path given by a user holds: its kind, weights file and (when ours) its config."""

    kind: str
    weights: Path
    config: AdapterConfig | None


def inspect_adapter(path: Path | str, kind: str = "auto") -> AdapterFiles:
    """Work out what an adapter path is; `kind` ("auto", "lora", "hydralora") must agree with it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InvalidRequest("adapters.path", f"{p} does not exist")
    config: AdapterConfig | None = None
    weights: Path | None = None
    if p.is_dir():
        cfg_path = p / CONFIG_NAME
        if cfg_path.is_file():
            try:
                data = json.loads(cfg_path.read_text())
            except (OSError, ValueError) as exc:
                raise InvalidRequest("adapters.path", f"{cfg_path} is not readable JSON ({exc})") from None
            config = AdapterConfig.from_dict(data, str(cfg_path))
            weights = p / (HYDRA_WEIGHTS if config.kind == "hydralora" else LORA_WEIGHTS)
            if not weights.is_file():
                raise InvalidRequest("adapters.path", f"{p} has a config but no {weights.name}")
        else:
            candidates = sorted(p.glob("*.safetensors"))
            if (p / HYDRA_WEIGHTS).is_file():
                weights = p / HYDRA_WEIGHTS
            elif (p / LORA_WEIGHTS).is_file():
                weights = p / LORA_WEIGHTS
            elif len(candidates) == 1:
                weights = candidates[0]
            elif not candidates:
                raise InvalidRequest("adapters.path", f"{p} holds no .safetensors adapter file")
            else:
                names = ", ".join(c.name for c in candidates[:4])
                raise InvalidRequest("adapters.path", f"{p} holds several .safetensors files ({names}); name the file")
    elif p.suffix.lower() == ".safetensors":
        weights = p
        sidecar = p.parent / CONFIG_NAME
        if sidecar.is_file() and p.name in (HYDRA_WEIGHTS, LORA_WEIGHTS):
            config = AdapterConfig.from_dict(json.loads(sidecar.read_text()), str(sidecar))
    else:
        raise InvalidRequest("adapters.path", f"{p} is neither a folder nor a .safetensors file")
    assert weights is not None
    if config is None:
        meta = read_safetensors_metadata(weights).get(METADATA_KEY)
        if meta:
            try:
                config = AdapterConfig.from_dict(json.loads(meta), f"{weights} (metadata)")
            except ValueError as exc:
                raise InvalidRequest("adapters.path", f"{weights} has broken adapter metadata ({exc})") from None
    found = config.kind if config is not None else "lora"
    if kind not in ("auto", found):
        raise InvalidRequest("adapters.kind", f"{p} holds a {found} adapter, not {kind}")
    return AdapterFiles(found, weights, config)


def load_hydralora_weights(files: AdapterFiles) -> tuple[AdapterConfig, dict[str, torch.Tensor]]:
    if files.kind != "hydralora" or files.config is None:
        raise InvalidRequest("adapters.path", f"{files.weights} is not a HydraLoRA adapter")
    return files.config, load_tensors(files.weights)
