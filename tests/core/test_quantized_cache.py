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


@pytest.mark.parametrize("mode", ["quanto-int8", "fp8-layerwise"])
def test_a_cache_hit_never_builds_a_full_precision_weight(studio_settings: Settings, mode: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading from the cache, no tensor the size of a linear layer's weight is ever given storage in
    a float dtype: every weight goes from the meta device straight to its stored, quantized form."""
    import torch

    Engine(studio_settings).generate(_req(quantization=mode))  # writes the cache
    folder = studio_settings.models_dir / "preview"
    built: list[tuple[tuple[int, ...], torch.dtype]] = []
    real = torch.empty_like

    def recording(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        out = real(tensor, *args, **kwargs)
        if out.device.type != "meta" and out.is_floating_point() and out.dtype.itemsize >= 2:  # real storage
            built.append((tuple(out.shape), out.dtype))
        return out

    monkeypatch.setattr(torch, "empty_like", recording)
    load = qc.load if mode.startswith("quanto") else qc.load_layerwise
    for component in ("transformer", "text_encoder"):
        entry = qc.cache_root(studio_settings.models_dir, "preview", mode) / component
        module = load(entry, folder, component, "WanTransformer3DModel", torch.float32)
        linear = {tuple(m.weight.shape) for m in module.modules()
                  if isinstance(m, torch.nn.Linear) or type(m).__name__ == "QLinear"}
        assert linear, component
        assert not [b for b in built if b[0] in linear], (component, built)
        assert not any(p.device.type == "meta" for p in module.parameters())  # everything landed
        built.clear()
