"""Which layout a community transformer file is in, and its tensors under diffusers' names.

Community files come in two layouts: diffusers' own names (`blocks.0.attn1.to_q.weight`) and the
original repositories' names that ComfyUI, Wan2GP and the GGUF repos publish
(`blocks.0.self_attn.q.weight`, often under `model.diffusion_model.`). A few names (the patch
embedding) are the same in both, so the layout is told by names only one layout has, never by
overlap (each family declares those names and its converter: `ModelFamily.file_layouts`). Original
names are renamed with diffusers' own converters (the ones `from_single_file` uses), so a file loads
exactly as diffusers would load it.

ComfyUI's "scaled" fp8 files store `W / s` in float8 beside a per-layer `scale_weight`; those are
folded back (`W = w8 * s`) and the markers (`scaled_fp8`, `scale_input`) dropped.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, TypeVar

from .families import ModelFamily

T = TypeVar("T")

DIFFUSERS, ORIGINAL, UNKNOWN = "diffusers", "original", "unknown"
PREFIXES = ("model.diffusion_model.", "diffusion_model.")  # ComfyUI checkpoints nest the model under these

# Scaled fp8: the per-layer scale's name beside `<layer>.weight`, and tensors that only mark the format.
_SCALE_SUFFIXES = (".scale_weight", ".weight_scale")
_MARKER_NAMES = re.compile(r"(^|\.)(scaled_fp8|scale_input|input_scale)$")


def strip_prefix(names: Mapping[str, T]) -> dict[str, T]:
    """The mapping with a ComfyUI checkpoint prefix removed (only when every name carries it)."""
    for prefix in PREFIXES:
        if names and all(k.startswith(prefix) for k in names if not _MARKER_NAMES.search(k)):
            return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in names.items()}
    return dict(names)


def layout_of(names: Any, family: ModelFamily) -> str:
    """DIFFUSERS, ORIGINAL or UNKNOWN, by the names only one layout has (prefix already stripped)."""
    if family.file_layouts is None:
        return UNKNOWN
    markers = {ORIGINAL: family.file_layouts.original, DIFFUSERS: family.file_layouts.diffusers}
    hits = {layout: sum(1 for n in names if any(re.match(p, n) for p in patterns))
            for layout, patterns in markers.items()}
    if hits[ORIGINAL] == hits[DIFFUSERS] == 0:
        return UNKNOWN
    return ORIGINAL if hits[ORIGINAL] > hits[DIFFUSERS] else DIFFUSERS


def _converter(family: ModelFamily) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    from diffusers.loaders import single_file_utils as sfu

    name = family.file_layouts.converter if family.file_layouts is not None else None
    return getattr(sfu, name, None) if name else None


def scale_names(names: Any) -> set[str]:
    """The scale and marker tensors of a scaled-fp8 file (not weights the model has)."""
    return {n for n in names if n.endswith(_SCALE_SUFFIXES) or _MARKER_NAMES.search(n)}


def shapes_in_diffusers_names(family: ModelFamily, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Tensor shapes under diffusers' names, whatever the file's layout (no weights touched)."""
    import torch

    meta = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    return {k: tuple(v.shape) for k, v in to_diffusers_names(family, meta).items()}


def to_diffusers_names(family: ModelFamily, tensors: Mapping[str, Any]) -> dict[str, Any]:
    """The file's tensors renamed to diffusers' names; scale and marker tensors dropped.

    Values pass through untouched (a GGUF tensor stays quantized), so this works on meta tensors
    for checking and on the real ones for loading.
    """
    skip = scale_names(tensors)
    plain = strip_prefix({k: v for k, v in tensors.items() if k not in skip})
    if layout_of(plain, family) != ORIGINAL:
        return plain
    convert = _converter(family)
    if convert is None:
        return plain
    try:
        return dict(convert(dict(plain)))
    except Exception:  # noqa: BLE001 - a file the converter does not know is compared as it is, and refused there
        return plain


def fold_fp8_scales(tensors: dict[str, Any], dtype: Any) -> dict[str, Any]:
    """Float8 weights as `dtype`, multiplied by their `scale_weight` when the file has one."""
    import torch

    fp8 = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))
    skip = scale_names(tensors)
    out: dict[str, Any] = {}
    for name, value in tensors.items():
        if name in skip:
            continue
        if isinstance(value, torch.Tensor) and value.dtype in fp8:
            stem = name[:-len(".weight")] if name.endswith(".weight") else name
            scale = next((tensors[stem + s] for s in _SCALE_SUFFIXES if stem + s in tensors), None)
            value = value.to(torch.float32)
            if scale is not None:
                scale = scale.to(torch.float32)
                if scale.numel() > 1:  # one scale per output row
                    scale = scale.reshape(-1, *([1] * (value.ndim - 1)))
                value = value * scale
            value = value.to(dtype)
        out[name] = value
    return out
