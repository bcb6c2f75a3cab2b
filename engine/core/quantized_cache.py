"""The quantized cache: quantized weights written once, loaded back without the full-precision model.

The first load in a quantizing mode quantizes as before and writes each quantized component
(transformer, text encoder) under ``<data dir>/models/quantized/<model>/<mode>/<component>/``.

- quanto modes: a safetensors file of the packed weights and scales, quanto's quantization map, and
  a key. Later loads build the component with empty (meta-device) weights, quantize that empty model
  (only module types change), then stream the tensors from disk into place one block at a time.
- torchao modes: the component as diffusers / transformers save a torchao-quantized model
  (`save_pretrained(safe_serialization=True)`: its config with the quantization config, and
  safetensors of torchao's tensors). Later loads are the libraries' own pre-quantized load, which
  builds the model on the meta device and puts the quantized tensors in place.

- fp8-layerwise: the float8 weights (and the layers kept in full precision) as safetensors. Later
  loads build the component empty, turn on layerwise casting (its hooks, and float8 parameters on
  the meta device), then stream the tensors in as for quanto.

Either way the full-precision model is never built on a cache hit.

The key names what the cache was made from: the source files (name, size, mtime), the dtype, and
the torch / diffusers / transformers / quanto / torchao versions. A stale key, a missing or truncated file, a
checksum that differs or a tensor that does not fit is detected and the cache rebuilt, never used.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import InvalidRequest

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
COMPONENTS = ("transformer", "text_encoder")
_WEIGHTS, _QMAP, _KEY = "weights.safetensors", "quantization_map.json", "cache.json"


def cache_root(models_dir: Path, model_id: str, mode: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in model_id)
    return models_dir / "quantized" / safe / mode


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "diffusers", "transformers", "optimum-quanto", "torchao"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def source_key(folder: Path, component: str, mode: str, dtype_name: str) -> str:
    """What a cache entry is made from; any change (new weights, another library version) changes it."""
    files = sorted((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in (folder / component).rglob("*") if p.is_file())
    data = {"format": FORMAT_VERSION, "component": component, "mode": mode, "dtype": dtype_name,
            "files": files, "versions": _versions()}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _checksum(path: Path) -> str:
    import xxhash  # a fast non-cryptographic hash: the cache guards against damage, not attacks

    h = xxhash.xxh3_64()
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def is_valid(entry: Path, key: str) -> bool:
    """The entry exists, was made from these sources, and its weights files are whole."""
    try:
        meta = json.loads((entry / _KEY).read_text(encoding="utf-8"))
        if meta.get("key") != key:
            return False
        if meta.get("format") == "torchao":
            files = meta["files"]
            return bool(files) and all((entry / name).stat().st_size == size and _checksum(entry / name) == digest
                                       for name, (size, digest) in files.items())
        weights = entry / _WEIGHTS
        return (weights.stat().st_size == meta.get("size") and _checksum(weights) == meta.get("checksum")
                and (meta.get("format") == "layerwise" or (entry / _QMAP).is_file()))
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return False


def cached_bytes(root: Path) -> dict[str, int]:
    """Bytes on disk per cached component of one model and mode (what `quantize` reports)."""
    out: dict[str, int] = {}
    for meta_path in sorted(root.glob(f"*/{_KEY}")):
        entry = meta_path.parent
        out[entry.name] = sum(p.stat().st_size for p in entry.iterdir() if p.is_file() and p.name != _KEY)
    return out


def _publish(staging: Path, entry: Path, meta: dict[str, Any]) -> None:
    (staging / _KEY).write_text(json.dumps(meta), encoding="utf-8")  # last: an entry without it is no entry
    if entry.exists():
        shutil.rmtree(entry)
    staging.rename(entry)


def write_torchao(entry: Path, module: Any, key: str) -> None:
    """Write a torchao-quantized component the libraries' own way; atomically, as `write`."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        module.save_pretrained(str(staging), safe_serialization=True)
        files = {p.name: (p.stat().st_size, _checksum(p)) for p in sorted(staging.iterdir()) if p.is_file()}
        _publish(staging, entry, {"key": key, "format": "torchao", "class": type(module).__name__, "files": files})
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_torchao(entry: Path, component: str, family_class: str, dtype: Any) -> Any:
    """The libraries' pre-quantized load: meta-device construction, then torchao's tensors put in place."""
    meta = json.loads((entry / _KEY).read_text(encoding="utf-8"))
    if component == "transformer":
        import diffusers

        cls = getattr(diffusers, family_class)
        if meta.get("class") != family_class:
            raise InvalidRequest("quantization", f"{entry} holds a {meta.get('class')}, not this model's "
                                                 f"{family_class}")
        return cls.from_pretrained(str(entry), torch_dtype=dtype).eval()
    import transformers

    cls = getattr(transformers, str(meta.get("class")), None)
    if cls is None or not str(meta.get("class", "")).endswith("Model"):
        raise InvalidRequest("quantization", f"{entry} holds an unknown text encoder ({meta.get('class')})")
    return cls.from_pretrained(str(entry), dtype=dtype).eval()


def write(entry: Path, module: Any, key: str, *, kind: str = "quanto") -> None:
    """Write a quantized module's weights (and for quanto, frozen, its quantization map) and key;
    atomically, so a crash leaves no entry. `kind` is "quanto" or "layerwise" (fp8 layerwise casting)."""
    from safetensors.torch import save_file

    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        state: dict[str, Any] = {}
        aliases: dict[str, str] = {}  # tied weights (a text encoder's shared embedding) are stored once
        owner: dict[tuple[int, tuple[int, ...]], str] = {}
        for k, v in module.state_dict().items():
            ident = (v.data_ptr(), tuple(v.shape))
            if ident in owner and v.numel():
                aliases[k] = owner[ident]
                continue
            owner[ident] = k
            state[k] = v.contiguous()
        save_file(state, str(staging / _WEIGHTS))
        if kind == "quanto":
            from optimum.quanto import quantization_map

            (staging / _QMAP).write_text(json.dumps(quantization_map(module)), encoding="utf-8")
        meta = {"key": key, "size": (staging / _WEIGHTS).stat().st_size, "checksum": _checksum(staging / _WEIGHTS),
                "class": type(module).__name__, "aliases": aliases, "format": kind}
        _publish(staging, entry, meta)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _empty_component(folder: Path, component: str, family_class: str, dtype: Any) -> Any:
    """The component with its weights on the meta device (buffers real): no memory for weights."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        if component == "transformer":
            import diffusers

            cls = getattr(diffusers, family_class)
            config = cls.load_config(str(folder / component))
            module = cls.from_config(config)
        else:
            import transformers

            config = transformers.AutoConfig.from_pretrained(str(folder / component))
            cls = getattr(transformers, (config.architectures or ["UMT5EncoderModel"])[0])
            module = cls._from_config(config)  # as from_pretrained builds it (attention implementation)
    return module.to(dtype=dtype) if dtype is not None else module


def load(entry: Path, folder: Path, component: str, family_class: str, dtype: Any) -> Any:
    """Build the component empty, quantize it empty, stream the cached tensors in; raises on a misfit."""
    from optimum.quanto import QModuleMixin, QTensor, qfloat8, qint4, qint8, quantize

    qmap = json.loads((entry / _QMAP).read_text(encoding="utf-8"))
    weights_of = {"qint8": qint8, "qint4": qint4, "qfloat8": qfloat8, "qfloat8_e4m3fn": qfloat8}
    kinds = {v.get("weights") for v in qmap.values()}
    if len(kinds) != 1 or next(iter(kinds)) not in weights_of:
        raise InvalidRequest("quantization", f"{entry} holds an unknown quantization map ({sorted(map(str, kinds))})")
    module = _empty_component(folder, component, family_class, dtype)
    quantize(module, weights=weights_of[next(iter(kinds))])  # module types only; the cache brings the values
    quantized = {name: sub for name, sub in module.named_modules() if isinstance(sub, QModuleMixin)}
    return _stream_into(module, entry, skip_expected={f"{name}.weight" for name in quantized},
                        check=lambda: sorted(f"{n}.weight" for n, sub in quantized.items()
                                             if not isinstance(sub.weight, QTensor)))


def load_layerwise(entry: Path, folder: Path, component: str, family_class: str, dtype: Any) -> Any:
    """Build the component empty with fp8 layerwise casting on, stream the cached float8 tensors in."""
    from .memory import fp8_layerwise

    meta = json.loads((entry / _KEY).read_text(encoding="utf-8"))
    if meta.get("format") != "layerwise":
        raise InvalidRequest("quantization", f"{entry} is not an fp8-layerwise cache")
    module = _empty_component(folder, component, family_class, dtype)
    fp8_layerwise(module, component, dtype)  # the hooks, and float8 parameters (still on the meta device)
    return _stream_into(module, entry)


def _stream_into(module: Any, entry: Path, *, skip_expected: set[str] | None = None,
                 check: Any = None) -> Any:
    """Put the entry's tensors into an empty `module` one block at a time; raises on a misfit."""
    import torch
    from safetensors import safe_open

    aliases = json.loads((entry / _KEY).read_text(encoding="utf-8")).get("aliases", {})
    with safe_open(str(entry / _WEIGHTS), framework="pt") as f:
        stored = set(f.keys())
    # Whatever the file brings is assigned as it is read; only what it lacks (a module's constant
    # buffers, say) gets storage here. A quantized weight stays on the meta device until its packed
    # tensors land, so no full-precision weight is ever built.
    stays = stored | set(aliases) | (skip_expected or set())
    for prefix, sub in module.named_modules():
        dot = f"{prefix}." if prefix else ""
        for name, tensor in list(sub.named_parameters(recurse=False)):
            if tensor.device.type == "meta" and dot + name not in stays:
                setattr(sub, name, torch.nn.Parameter(torch.empty_like(tensor, device="cpu"), requires_grad=False))
        for name, tensor in list(sub.named_buffers(recurse=False)):
            if tensor.device.type == "meta" and dot + name not in stays:
                sub.register_buffer(name, torch.empty_like(tensor, device="cpu"))
    expected = set(module.state_dict()) - (skip_expected or set())
    seen: set[str] = set()
    with safe_open(str(entry / _WEIGHTS), framework="pt") as f:
        keys = list(f.keys())
        groups: dict[str, list[str]] = {}
        for k in keys:  # one top-level block at a time: the extra memory is one block's tensors
            parts = k.split(".")
            groups.setdefault(".".join(parts[:2]) if parts[0] in ("blocks", "block", "encoder") else parts[0],
                              []).append(k)
        for names in groups.values():
            chunk = {k: f.get_tensor(k) for k in names}
            result = module.load_state_dict(chunk, strict=False, assign=True)  # take the tensors, no copy
            if result.unexpected_keys:
                raise InvalidRequest("quantization", f"{entry} does not fit this model: unexpected tensor "
                                                     f"'{result.unexpected_keys[0]}'")
            seen.update(chunk)
    for alias, target in aliases.items():  # tied weights: the same parameter again, as when saved
        if target in seen:
            owner_path, _, name = target.rpartition(".")
            alias_path, _, alias_name = alias.rpartition(".")
            setattr(module.get_submodule(alias_path), alias_name, getattr(module.get_submodule(owner_path), name))
            seen.add(alias)
    missing = sorted(expected - seen) + (check() if check is not None else [])
    if missing:
        raise InvalidRequest("quantization", f"{entry} lacks the model's tensor '{missing[0]}'")
    return module.eval()
