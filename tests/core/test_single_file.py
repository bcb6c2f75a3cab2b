"""A transformer from one GGUF / .safetensors file, loaded as quantized, checked before anything loads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.core.errors import InvalidRequest
from engine.core.generation import Engine
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings

gguf = pytest.importorskip("gguf", reason="the gguf package is missing (pip install gguf)")


def write_gguf(state: dict, path: Path, quantized: bool = True) -> Path:
    """A GGUF file as community tools write them: 2-D weights in Q8_0 where rows allow, the rest F32."""
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    writer = GGUFWriter(str(path), arch="wan")
    for name, tensor in state.items():
        array = tensor.float().numpy()
        if quantized and array.ndim == 2 and array.shape[1] % 32 == 0:
            q = quantize(array, GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, array.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _req(**kw: object) -> GenerationRequest:
    base: dict[str, object] = dict(narrative="a fox runs", model="preview", width=32, height=32, num_frames=5,
                                   fps=8, steps=2, seed=5)
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def preview_state():
    from engine.core.preview import build_preview_pipeline

    return build_preview_pipeline().transformer.state_dict()


def test_a_gguf_transformer_generates_the_same_frames_within_quantization_tolerance(
        studio_settings: Settings, preview_state, tmp_path: Path) -> None:
    engine = Engine(studio_settings)
    plain = engine.generate(_req())
    exact = write_gguf(preview_state, tmp_path / "preview-f32.gguf", quantized=False)
    same = engine.generate(_req(transformer_file=str(exact))).frames  # F32 in GGUF: the same weights
    assert np.abs(same.astype(int) - plain.frames.astype(int)).max() <= 1
    q8 = write_gguf(preview_state, tmp_path / "preview-q8.gguf")
    frames = engine.generate(_req(transformer_file=str(q8))).frames
    assert frames.shape == plain.frames.shape
    diff = np.abs(frames.astype(int) - plain.frames.astype(int))
    assert diff.mean() < 2.0  # within Q8_0's tolerance
    loaded = engine.models.current()
    assert loaded is not None
    weight = loaded.pipe.transformer.blocks[0].ffn.net[2].weight
    assert type(weight).__name__ == "GGUFParameter" and weight.dtype == torch.uint8  # kept quantized in memory
    assert weight.numel() < 24 * 32 * 4 / 3  # Q8_0: 34 bytes per 32 weights


def test_a_file_in_the_gguf_folder_is_found_by_name_and_recorded(studio_settings: Settings, preview_state) -> None:
    folder = studio_settings.models_dir / "gguf"
    folder.mkdir(parents=True, exist_ok=True)
    write_gguf(preview_state, folder / "preview-q8.gguf")
    prepared = Engine(studio_settings).prepare(_req(transformer_file="preview-q8.gguf"))
    assert prepared.transformer_file == str((folder / "preview-q8.gguf").resolve())
    assert prepared.request.to_dict()["transformer_file"] == "preview-q8.gguf"  # what history and the mp4 keep


def test_files_that_do_not_fit_are_refused_naming_the_file(studio_settings: Settings, preview_state,
                                                          tmp_path: Path) -> None:
    engine = Engine(studio_settings)
    wrong = dict(preview_state)
    wrong["blocks.0.attn1.to_q.weight"] = wrong["blocks.0.attn1.to_q.weight"][:, :12]
    cases = {
        "does not fit this model: tensor 'blocks.0.attn1.to_q.weight' has shape [24, 12], the model's is [24, 24]":
            write_gguf(wrong, tmp_path / "wrong.gguf", quantized=False),
        "not a readable GGUF file": tmp_path / "junk.gguf",
        "does not exist": tmp_path / "missing.gguf",
        "neither a .gguf nor a .safetensors": tmp_path / "model.bin",
    }
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf at all" * 10)
    (tmp_path / "model.bin").write_bytes(b"x")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(write_gguf(preview_state, tmp_path / "whole.gguf").read_bytes()[:4000])
    cases["not a readable GGUF file"] = truncated
    for message, path in cases.items():
        with pytest.raises(InvalidRequest) as info:
            engine.prepare(_req(transformer_file=str(path)))
        assert info.value.field == "transformer_file" and message in str(info.value), str(info.value)


def test_a_gguf_transformer_with_a_quantized_text_encoder(studio_settings: Settings, preview_state,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A creator's usual set-up: a GGUF transformer and the text encoder in int8. The mode applies to
    the text encoder only (cached once, for loads with or without the file); the file stays as it is."""
    from engine.core import quantized_cache as qc

    q8 = write_gguf(preview_state, tmp_path / "preview-q8.gguf")
    root = qc.cache_root(studio_settings.models_dir, "preview", "quanto-int8")
    read: list[str] = []
    real_load = qc.load
    monkeypatch.setattr(qc, "load", lambda entry, folder, name, *a: read.append(name) or real_load(entry, folder, name, *a))
    for narrative in ("a heron lands in the reeds", "a heron takes off"):  # new prompts: the encoder runs
        engine = Engine(studio_settings)
        frames = engine.generate(_req(narrative=narrative, transformer_file=str(q8), quantization="quanto-int8"))
        assert frames.frames.shape == (5, 32, 32, 3)
        pipe = engine.models.current().pipe  # type: ignore[union-attr]
        weight = pipe.transformer.blocks[0].ffn.net[2].weight
        assert type(weight).__name__ == "GGUFParameter"  # the file's weights, not re-quantized
        assert "QLinear" in {type(m).__name__ for m in pipe.text_encoder.modules()}  # the encoder in int8
        # The first load wrote the text encoder's cache (the second read it); never the file's transformer.
        assert (root / "text_encoder").is_dir() and not (root / "transformer").exists()
    assert read == ["text_encoder"]  # the second load took the text encoder from the cache


def test_cli_generate_with_a_transformer_file(studio_settings: Settings, preview_state, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write_gguf(preview_state, tmp_path / "p.gguf")
    # The folder's own transformer weights are never read when a file replaces them: garbage there is fine.
    import os

    for weights in (studio_settings.models_dir / "preview" / "transformer").glob("*.safetensors"):
        st = weights.stat()
        weights.write_bytes(os.urandom(st.st_size))
    base = ["--data-dir", str(studio_settings.data_dir), "generate", "--model", "preview", "--narrative", "x",
            "--width", "32", "--height", "32", "--frames", "5", "--steps", "2"]
    assert main([*base, "--transformer", str(path)]) == 0
    assert main([*base, "--transformer", str(tmp_path / "nope.gguf")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "transformer_file" in err[0] and "nope.gguf does not exist" in err[0]
    # A file of another architecture, or cut short, is one line and exit 2 too, and leaves no history row.
    wrong = dict(preview_state)
    wrong["blocks.0.attn1.to_q.weight"] = wrong["blocks.0.attn1.to_q.weight"][:, :12]
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(path.read_bytes()[:4000])
    for bad, said in ((write_gguf(wrong, tmp_path / "wrong.gguf", quantized=False),
                       "tensor 'blocks.0.attn1.to_q.weight' has shape [24, 12], the model's is [24, 24]"),
                      (truncated, "not a readable GGUF file")):
        assert main([*base, "--transformer", str(bad)]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("error: transformer_file") and said in err[0], err
    assert main(["--data-dir", str(studio_settings.data_dir), "history", "list", "--json"]) == 0
    assert len(__import__("json").loads(capsys.readouterr().out)) == 1  # only the clip that was made
