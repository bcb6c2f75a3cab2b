"""A transformer from one file: a community GGUF (Q8_0 … Q4_K) or a single `.safetensors`.

Creators download Wan transformers as single files (the GGUF quantizations published for ComfyUI).
The rest of the pipeline (VAE, text encoder, scheduler, tokenizer) still comes from the model's
folder or hub repo. GGUF weights stay quantized in memory: diffusers' own GGUF support
(`from_single_file` with `GGUFQuantizationConfig`) dequantizes each layer on the fly.

Files in the original/ComfyUI layout (and ComfyUI's fp8 files, scaled or not) are renamed and
unscaled by `file_layouts`, told by names only their layout has. A plain fp8 e4m3fn file's linear
weights stay float8 in memory, cast up one layer at a time; a scaled one is unscaled to the compute dtype.

Before anything loads, the file's tensor names and shapes are read (memory-mapped, no weights)
and compared with the model's architecture from its config.json, so a file of another model or
size is refused naming the first tensor that does not fit and both shapes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import InvalidRequest
from .families import ModelFamily
from .file_layouts import fold_fp8_scales, scale_names, shapes_in_diffusers_names, to_diffusers_names

SUFFIXES = (".gguf", ".safetensors")
FIELD = "transformer_file"


def find_transformer_file(name: str, gguf_dir: Path) -> Path:
    """A path given by the user, or a file name under `<data dir>/models/gguf/`."""
    path = Path(name).expanduser()
    if not path.is_absolute() and not path.exists():
        path = gguf_dir / name
    if path.suffix.lower() not in SUFFIXES:
        raise InvalidRequest(FIELD, f"{path.name} is neither a .gguf nor a .safetensors file")
    if not path.is_file():
        raise InvalidRequest(FIELD, f"{name} does not exist (give a path, or a file name in {gguf_dir})")
    return path


def listed_files(gguf_dir: Path) -> list[Path]:
    """The transformer files a creator put under `<data dir>/models/gguf/`, by name."""
    if not gguf_dir.is_dir():
        return []
    return sorted(p for p in gguf_dir.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and logical shape (torch order), read without loading weights."""
    try:
        if path.suffix.lower() == ".gguf":
            from gguf import GGUFReader

            reader = GGUFReader(str(path), "r")
            # GGUF lists dimensions innermost first; torch lists them outermost first.
            return {t.name: tuple(int(d) for d in reversed(list(t.shape))) for t in reader.tensors}
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (OSError, ValueError, KeyError, IndexError, RuntimeError) as exc:
        kind = "GGUF" if path.suffix.lower() == ".gguf" else "safetensors"
        raise InvalidRequest(FIELD, f"{path.name} is not a readable {kind} file "
                                    f"({type(exc).__name__}: {str(exc)[:120]})") from None
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for a truncated header
        raise InvalidRequest(FIELD, f"{path.name} is not a readable file ({type(exc).__name__}: "
                                    f"{str(exc)[:120]})") from None


def _model_shapes(family: ModelFamily, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The architecture's parameter shapes, built on the meta device (no memory for weights)."""
    import diffusers
    import torch

    cls = getattr(diffusers, family.transformer_class)
    clean = {k: v for k, v in config.items() if not k.startswith("_")}
    with torch.device("meta"):
        model = cls.from_config(clean)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_transformer_file(path: Path, family: ModelFamily, config: dict[str, Any] | None) -> None:
    """Refuse a file whose tensors do not fit the model's transformer, naming the first that does not."""
    shapes = tensor_shapes(path)
    if not shapes:
        raise InvalidRequest(FIELD, f"{path.name} holds no tensors")
    if config is None:
        return  # the model's files are not here yet: diffusers checks when it loads
    want = _model_shapes(family, config)
    # Renamed by what the file is (its layout's own names), not by how many names it shares with the model.
    shapes = shapes_in_diffusers_names(family, shapes)
    common = [k for k in want if k in shapes]
    if not common:
        raise InvalidRequest(FIELD, f"{path.name} does not hold a {family.name} transformer: none of its "
                                    f"{len(shapes)} tensors has a name the model uses (e.g. '{next(iter(want))}')")
    for name in want:
        if name in shapes and shapes[name] != want[name]:
            raise InvalidRequest(FIELD, f"{path.name} does not fit this model: tensor '{name}' has shape "
                                        f"{list(shapes[name])}, the model's is {list(want[name])}")
    missing = [k for k in want if k not in shapes]
    if missing:
        raise InvalidRequest(FIELD, f"{path.name} lacks {len(missing)} of the model's tensors, first "
                                    f"'{missing[0]}' (shape {list(want[missing[0]])})")


def load_transformer_file(path: Path, family: ModelFamily, folder: Path, dtype_name: str) -> Any:
    """The transformer from `path`, its config from the model's folder; GGUF weights stay quantized."""
    import diffusers
    import torch

    cls = getattr(diffusers, family.transformer_class)
    dtype = getattr(torch, dtype_name)
    kwargs: dict[str, Any] = {"config": str(folder / "transformer"), "torch_dtype": dtype}
    fp8_names: dict[str, Any] = {}
    if path.suffix.lower() == ".gguf":
        kwargs["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
        tensors = _mapped_gguf(path)
    else:
        tensors, fp8_names = _read_safetensors(path, dtype)
    # Handed over under diffusers' exact names and only the model's own tensors, so `from_single_file`
    # converts nothing a second time (its converter run on diffusers names would swap norm2 and norm3).
    source = to_diffusers_names(family, tensors)
    config = transformer_config_of(folder)
    if config is not None:
        want = _model_shapes(family, config)
        source = {k: v for k, v in source.items() if k in want}
    try:
        model = cls.from_single_file(source, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InvalidRequest(FIELD, f"{path.name} could not be loaded ({type(exc).__name__}: "
                                    f"{str(exc)[:200]})") from None
    if fp8_names:
        _store_weights_as_fp8(model, set(to_diffusers_names(family, fp8_names)))
    return model


def _read_safetensors(path: Path, dtype: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A .safetensors file's tensors, a scaled fp8 file's (ComfyUI) unscaled to `dtype`; and, when the file
    is plain float8 e4m3fn (no scales), the names of its float8 tensors (which can be stored as float8
    again exactly). Measured on the 1.3B architecture, keeping them float8 here cut the peak while
    loading from 6.25 to 4.44 GiB (benchmarks/bench_community.py files-1.3b)."""
    import torch
    from safetensors.torch import load_file

    try:
        raw = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for a damaged file
        raise InvalidRequest(FIELD, f"{path.name} could not be read ({type(exc).__name__}: "
                                    f"{str(exc)[:160]})") from None
    fp8 = {} if scale_names(raw) else {k: None for k, t in raw.items() if t.dtype == torch.float8_e4m3fn}
    if fp8:  # kept float8 here: diffusers casts each one as it goes in, so no full-width copy of the file is made
        return raw, fp8
    return fold_fp8_scales(raw, dtype), fp8


def _store_weights_as_fp8(model: Any, names: set[str]) -> None:
    """Linear weights that were float8 in the file go back to float8 (exactly: they were float8) and are
    cast up for their layer's forward only, so an fp8 file takes about its own size in memory, not twice
    it. Only those weights: biases and norms the file kept wider stay as they were.

    Registered under diffusers' "layerwise_casting" hook name, so the model still reports its compute
    dtype (the pipeline casts its inputs to it) and LoRA layers on top do not cast inputs to float8.
    """
    import torch
    from diffusers.hooks import HookRegistry, ModelHook

    class Fp8Weight(ModelHook):
        _is_stateful = False

        def __init__(self, compute_dtype: torch.dtype) -> None:
            super().__init__()
            self.compute_dtype = compute_dtype

        def initialize_hook(self, module: torch.nn.Module) -> torch.nn.Module:
            module.weight.data = module.weight.data.to(torch.float8_e4m3fn)
            return module

        def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            module.weight.data = module.weight.data.to(self.compute_dtype)
            return args, kwargs

        def post_forward(self, module: torch.nn.Module, output: Any) -> Any:
            module.weight.data = module.weight.data.to(torch.float8_e4m3fn)
            return output

    # The layers diffusers itself never stores low (embedders that read their weights' dtype, norms, fp32 ones).
    import re

    skip = (*(getattr(model, "_skip_layerwise_casting_patterns", None) or ()),
            *(getattr(model, "_keep_in_fp32_modules", None) or ()))
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and f"{name}.weight" in names and \
                not any(re.search(p, name) for p in skip):
            registry = HookRegistry.check_if_exists_or_initialize(module)
            registry.register_hook(Fp8Weight(module.weight.dtype), "layerwise_casting")


def _mapped_gguf(path: Path) -> dict[str, Any]:
    """The file's tensors as diffusers' GGUF loader makes them, but backed by the memory-mapped file.

    diffusers' own reader copies every tensor out of the mapping; while the mapping is alive both count
    in memory, so a 7.5 GiB file peaked at 15 GiB. Handing `from_single_file` this mapping instead keeps
    the packed weights where the file is (read on first use, dropped by the OS under pressure).
    """
    import warnings

    import torch
    from diffusers.quantizers.gguf.utils import GGUFParameter
    from gguf import GGMLQuantizationType, GGUFReader

    plain = (GGMLQuantizationType.F32, GGMLQuantizationType.F16)
    reader = GGUFReader(str(path), "r")
    out: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only mapping: torch warns once, nothing writes to it
        for tensor in reader.tensors:
            data = torch.from_numpy(tensor.data)
            out[tensor.name] = data if tensor.tensor_type in plain else GGUFParameter(data, quant_type=tensor.tensor_type)
    return out


def transformer_config_of(folder: Path) -> dict[str, Any] | None:
    path = folder / "transformer" / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
