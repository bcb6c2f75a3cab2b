"""The quantized cache: written by the first quanto load, loaded back without reading the full weights."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from engine.core import quantized_cache as qc
from engine.core.generation import Engine
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings

pytest.importorskip("optimum.quanto", reason="optimum-quanto is missing")


def _req(**kw: object) -> GenerationRequest:
    base: dict[str, object] = dict(narrative="a fox runs", model="preview", width=32, height=32, num_frames=5,
                                   fps=8, steps=2, seed=5, quantization="quanto-int8")
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


def _scramble_keeping_identity(path: Path) -> None:
    """Same size and mtime (what the cache key sees), garbage inside: reading it would fail loudly."""
    st = path.stat()
    path.write_bytes(os.urandom(st.st_size))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("mode", ["quanto-int8", "torchao-int8", "fp8-layerwise"])
def test_first_load_writes_the_cache_and_later_loads_never_read_the_full_weights(studio_settings: Settings,
                                                                                 mode: str) -> None:
    first = Engine(studio_settings).generate(_req(quantization=mode))
    root = qc.cache_root(studio_settings.models_dir, "preview", mode)
    assert sorted(p.name for p in root.iterdir()) == ["text_encoder", "transformer"]
    folder = studio_settings.models_dir / "preview"
    for component in ("transformer", "text_encoder"):
        for weights in (folder / component).glob("*.safetensors"):
            _scramble_keeping_identity(weights)
    for component in ("transformer", "text_encoder"):
        key = qc.source_key(folder, component, mode, "float32")
        assert qc.is_valid(root / component, key), component
    engine = Engine(studio_settings)
    again = engine.generate(_req(quantization=mode, narrative="a fox runs far"))  # encodes: the cached encoder
    assert engine.generate(_req(quantization=mode)).frames.tolist() == first.frames.tolist()
    assert again.frames.shape == first.frames.shape
    loaded = engine.models.current()
    assert loaded is not None
    weight = loaded.pipe.transformer.blocks[0].attn1.to_q.weight
    if mode.startswith("quanto"):
        from optimum.quanto import QTensor

        assert isinstance(weight, QTensor)
    elif mode == "fp8-layerwise":
        import torch

        encoder_q = loaded.pipe.text_encoder.encoder.block[0].layer[0].SelfAttention.q.weight
        assert weight.dtype == torch.float8_e4m3fn and encoder_q.dtype == torch.float8_e4m3fn
        assert weight.device.type == "cpu"
    else:
        from torchao.quantization import Int8Tensor

        assert isinstance(weight, Int8Tensor) and isinstance(
            loaded.pipe.text_encoder.encoder.block[0].layer[0].SelfAttention.q.weight, Int8Tensor)


def test_a_damaged_or_stale_cache_is_rebuilt_not_used(studio_settings: Settings) -> None:
    first = Engine(studio_settings).generate(_req(quantization="quanto-int4"))
    entry = qc.cache_root(studio_settings.models_dir, "preview", "quanto-int4") / "transformer"
    weights = entry / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(64)  # damage tensor bytes, keep the size
    weights.write_bytes(bytes(data))
    assert not json.loads((entry / "cache.json").read_text())["checksum"] == qc._checksum(weights)
    again = Engine(studio_settings).generate(_req(quantization="quanto-int4"))
    assert np.array_equal(again.frames, first.frames)  # rebuilt from the model, not read from the damage
    key = qc.source_key(studio_settings.models_dir / "preview", "transformer", "quanto-int4", "float32")
    assert qc.is_valid(entry, key)
    # Another library version (or new source files) is another key: the entry no longer counts.
    assert not qc.is_valid(entry, key[::-1])


def test_a_cache_from_another_model_is_refused(studio_settings: Settings, tmp_path: Path) -> None:
    Engine(studio_settings).generate(_req())
    entry = qc.cache_root(studio_settings.models_dir, "preview", "quanto-int8") / "text_encoder"
    with pytest.raises(Exception, match="does not fit this model|lacks the model's tensor"):
        qc.load(entry, studio_settings.models_dir / "preview", "transformer", "WanTransformer3DModel", None)


def test_a_torchao_cache_from_another_component_or_damaged_is_refused(studio_settings: Settings) -> None:
    first = Engine(studio_settings).generate(_req(quantization="torchao-int8"))
    root = qc.cache_root(studio_settings.models_dir, "preview", "torchao-int8")
    with pytest.raises(Exception, match="holds a|not this model"):
        qc.load_torchao(root / "text_encoder", "transformer", "WanTransformer3DModel", None)
    weights = next((root / "transformer").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(255 - b for b in data[middle:middle + 64])  # damage, keep the size
    weights.write_bytes(bytes(data))
    key = qc.source_key(studio_settings.models_dir / "preview", "transformer", "torchao-int8", "float32")
    assert not qc.is_valid(root / "transformer", key)
    again = Engine(studio_settings).generate(_req(quantization="torchao-int8"))
    assert np.array_equal(again.frames, first.frames) and qc.is_valid(root / "transformer", key)


def test_the_quantize_command_writes_the_cache_once(studio_settings: Settings,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    data = ["--data-dir", str(studio_settings.data_dir), "--device", "cpu"]
    assert main([*data, "quantize", "preview", "--quantization", "quanto-int8"]) == 0
    out = capsys.readouterr().out
    assert "preview quanto-int8: text_encoder" in out and "transformer" in out
    root = qc.cache_root(studio_settings.models_dir, "preview", "quanto-int8")
    stamp = (root / "transformer" / "cache.json").stat().st_mtime_ns
    assert main([*data, "quantize", "preview", "--quantization", "quanto-int8"]) == 0  # a hit: not rewritten
    assert (root / "transformer" / "cache.json").stat().st_mtime_ns == stamp
    with pytest.raises(SystemExit) as exited:
        main([*data, "quantize", "preview", "--quantization", "int3"])
    assert exited.value.code == 2 and "invalid choice" in capsys.readouterr().err


class _LiveWeights:
    """How many float tensors of a linear layer's weight shape hold real storage at once, at most, and
    how many meta weights were given float storage.

    A dispatch mode sees every aten call (torch.empty in nn.Linear's constructor, empty_like in
    to_empty, casts, copies), so a full-precision weight is seen however it is built. Building a
    module "empty" still gives each new Linear a real weight for an instant before it moves to the
    meta device; that is one at a time. A model built for real, or materialised and then
    overwritten, holds them all at once."""

    def __init__(self, shapes: set[tuple[int, ...]]) -> None:
        import weakref

        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        self.peak = 0
        self.seen = 0
        self.materialised = 0
        alive: list[weakref.ref[torch.Tensor]] = []
        spy = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
                out = func(*args, **(kwargs or {}))
                from_meta = any(isinstance(a, torch.Tensor) and a.device.type == "meta"
                                for a in tree_flatten((args, kwargs))[0])
                for t in tree_flatten(out)[0]:
                    if (isinstance(t, torch.Tensor) and type(t) in (torch.Tensor, torch.nn.Parameter)
                            and t.device.type != "meta" and t.is_floating_point() and t.dtype.itemsize >= 2
                            and tuple(t.shape) in shapes):
                        alive.append(weakref.ref(t))
                        spy.seen += 1
                        spy.materialised += from_meta  # a meta weight given float storage (to_empty, .to)
                alive[:] = [r for r in alive if r() is not None]
                spy.peak = max(spy.peak, len({id(r()) for r in alive}))
                return out

        self.mode = Mode()


def _quantized_shapes(module: object) -> set[tuple[int, ...]]:
    """Shapes of the weights the cache holds quantized, less any shape a full-precision weight also has
    (layers the mode leaves unquantized, such as the patch embedding, rightly load in float)."""
    import torch

    quantized, plain = set(), set()
    for m in module.modules():  # type: ignore[attr-defined]
        weight = getattr(m, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            continue
        packed = type(weight) not in (torch.Tensor, torch.nn.Parameter) or weight.dtype.itemsize == 1
        (quantized if packed else plain).add(tuple(weight.shape))
    return quantized - plain


@pytest.mark.parametrize("mode", ["quanto-int8", "fp8-layerwise"])
def test_a_cache_hit_never_builds_a_full_precision_weight(studio_settings: Settings, mode: str) -> None:
    """Loading from the cache, no tensor the size of a linear layer's weight is ever given storage in
    a float dtype: every weight goes from the meta device straight to its stored, quantized form."""
    import torch

    Engine(studio_settings).generate(_req(quantization=mode))  # writes the cache
    folder = studio_settings.models_dir / "preview"
    load = qc.load if mode.startswith("quanto") else qc.load_layerwise
    for component in ("transformer", "text_encoder"):
        entry = qc.cache_root(studio_settings.models_dir, "preview", mode) / component
        shapes = _quantized_shapes(load(entry, folder, component, "WanTransformer3DModel", torch.float32))
        assert shapes, component
        spy = _LiveWeights(shapes)
        with spy.mode:
            module = load(entry, folder, component, "WanTransformer3DModel", torch.float32)
        assert spy.seen > 0, "the spy saw no Linear being constructed: it is not watching"
        assert spy.peak <= 1, (component, f"{spy.peak} full-precision linear weights were alive at once")
        assert spy.materialised == 0, (component, f"{spy.materialised} meta weights were given float storage")
        assert not any(p.device.type == "meta" for p in module.parameters())  # everything landed
