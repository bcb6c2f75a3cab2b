"""LoRA files made elsewhere, read under diffusers' names and checked against the model's layer shapes.

Three layouts circulate: diffusers/peft (`transformer.blocks.0.attn1.to_q.lora_A.weight`),
ComfyUI/musubi (`diffusion_model.blocks.0.self_attn.q.lora_A.weight` or `lora_down/lora_up`, original
Wan module names) and kohya (`lora_unet_blocks_0_self_attn_q.lora_down.weight` with `.alpha`). The
pipeline's own `lora_state_dict` converts them (diffusers' converters, `alpha/rank` folded into the
weights), so a file is checked and loaded exactly as diffusers reads it. The check needs only layer
shapes, so a LoRA fits whatever model has those shapes, the built-in one included.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InvalidRequest
from .io import load_tensors

DIFFUSERS, COMFYUI, KOHYA, UNKNOWN = "diffusers", "ComfyUI/musubi", "kohya", "unknown"
FIELD = "adapters.path"


def lora_layout(names: Any) -> str:
    """Which community layout a LoRA's tensor names are in."""
    names = list(names)
    if any(n.startswith("transformer.") for n in names):
        return DIFFUSERS
    if any(n.startswith(("diffusion_model.", "model.diffusion_model.")) for n in names):
        return COMFYUI
    if any(n.startswith("lora_unet_") for n in names):
        return KOHYA
    return UNKNOWN


def read_lora(pipeline_class: type, path: Path, where: str) -> dict[str, Any]:
    """The file's LoRA tensors under diffusers' names (`transformer.<layer>.lora_A.weight`), converted
    by `pipeline_class.lora_state_dict` (the family's pipeline: its converters know its original names)."""
    tensors = load_tensors(path)
    # ComfyUI sometimes saves the whole checkpoint prefix; diffusers' converter expects `diffusion_model.`.
    tensors = {(k[len("model."):] if k.startswith("model.diffusion_model.") else k): v for k, v in tensors.items()}
    layout = lora_layout(tensors)
    convert = getattr(pipeline_class, "lora_state_dict", None)
    if convert is None or layout == DIFFUSERS:
        return tensors
    try:
        converted = convert(dict(tensors))
    except KeyError as exc:  # the converter wants every module of a block: name the first one absent
        missing = str(exc.args[0]) if exc.args else "?"
        if layout == KOHYA and not missing.startswith("lora_unet_"):
            missing = "lora_unet_" + missing
        raise InvalidRequest(FIELD, f"{where} is a {layout} LoRA that lacks tensor '{missing}' "
                                    "(cut short, or made for another architecture)") from None
    except (ValueError, RuntimeError, IndexError, AttributeError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InvalidRequest(FIELD, f"{where} could not be read as a {layout} LoRA: {first}") from None
    if isinstance(converted, tuple):  # (state_dict, metadata) in some diffusers versions
        converted = converted[0]
    return dict(converted)


def meta_transformer(family: Any, config: dict[str, Any]) -> Any:
    """The family's transformer built from its config on the meta device: layer shapes, no weights."""
    import diffusers
    import torch

    cls = getattr(diffusers, family.transformer_class)
    with torch.device("meta"):
        return cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})


def check_file_fits(path: Path, family: Any, config: dict[str, Any], where: str) -> None:
    """Before any model loads: the LoRA file read in its layout and checked against the config's shapes."""
    import diffusers

    pipeline_class = getattr(diffusers, family.pipeline_class)
    check_fit(read_lora(pipeline_class, path, where), meta_transformer(family, config), where)


def check_fit(tensors: dict[str, Any], transformer: Any, where: str) -> None:
    """Refuse a LoRA whose layers are not in the model or are another size, naming the first tensor that does not fit."""
    from .inject import _base_linear, _clean_name

    modules = {_clean_name(n): m for n, m in transformer.named_modules()}
    found = 0
    for key, a in tensors.items():
        if not (key.startswith("transformer.") and key.endswith(".lora_A.weight")):
            continue
        found += 1
        layer = key[len("transformer."):-len(".lora_A.weight")]
        b = tensors.get(f"transformer.{layer}.lora_B.weight")
        if b is None:
            raise InvalidRequest(FIELD, f"{where} has '{key}' but no lora_B beside it (cut short?)")
        linear = _base_linear(modules[layer]) if layer in modules else None
        if linear is None:
            raise InvalidRequest(FIELD, f"{where} does not fit this model: tensor '{key}' is for layer '{layer}', "
                                        "which this model does not have (made for another architecture?)")
        a_shape, b_shape = tuple(a.shape), tuple(b.shape)
        if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[0] != b_shape[1]:
            raise InvalidRequest(FIELD, f"{where} is broken: tensor '{key}' is {list(a_shape)} and its lora_B "
                                        f"{list(b_shape)}; their ranks differ")
        if (a_shape[1], b_shape[0]) != (linear.in_features, linear.out_features):
            bad = key if a_shape[1] != linear.in_features else f"transformer.{layer}.lora_B.weight"
            raise InvalidRequest(FIELD, f"{where} does not fit this model: tensor '{bad}' is for a "
                                        f"{a_shape[1]}->{b_shape[0]} layer; '{layer}' is "
                                        f"{linear.in_features}->{linear.out_features} here")
    if not found:
        raise InvalidRequest(FIELD, f"{where} holds no LoRA layers this studio can read (diffusers, ComfyUI/musubi "
                                    "or kohya names)")
