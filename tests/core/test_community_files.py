"""Transformer files in the layouts creators download: original/ComfyUI Wan names, K-quants, fp8 single files.

Each file is written from the built-in model's own weights, so its frames can be compared with the
diffusers-layout file's.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.core.errors import InvalidRequest
from engine.core.families import WAN
from engine.core.file_layouts import DIFFUSERS, ORIGINAL, UNKNOWN, layout_of, strip_prefix, to_diffusers_names
from engine.core.generation import Engine
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from support.community import quantize_q6_k, wan_original, write_fp8, write_gguf, write_lora

gguf = pytest.importorskip("gguf", reason="the gguf package is missing (pip install gguf)")


def _req(**kw: object) -> GenerationRequest:
    base: dict[str, object] = dict(narrative="a fox runs", model="preview", width=32, height=32, num_frames=5,
                                   fps=8, steps=2, seed=5)
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def preview_state() -> dict[str, torch.Tensor]:
    from engine.core.preview import build_preview_pipeline

    return build_preview_pipeline().transformer.state_dict()


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int))


def test_the_original_layout_is_told_by_its_own_names_and_renamed_by_diffusers(preview_state) -> None:
    original = wan_original(preview_state, prefix="model.diffusion_model.")
    assert set(original) & {"model.diffusion_model.patch_embedding.weight"}  # names both layouts share
    assert layout_of(strip_prefix(original), WAN) == ORIGINAL
    assert layout_of(preview_state, WAN) == DIFFUSERS
    assert layout_of({"patch_embedding.weight": 0, "patch_embedding.bias": 0}, WAN) == UNKNOWN
    renamed = to_diffusers_names(WAN, original)
    assert set(renamed) == set(preview_state)
    assert all(renamed[k] is original["model.diffusion_model." + k.replace("attn1.to_q", "self_attn.q")]
               for k in ("blocks.0.attn1.to_q.weight",))  # values pass through: a GGUF tensor stays quantized


def test_an_original_layout_q8_gguf_generates_within_q8_tolerance_of_the_diffusers_layout_one(
        studio_settings: Settings, preview_state, tmp_path: Path) -> None:
    engine = Engine(studio_settings)
    ours = write_gguf(preview_state, tmp_path / "diffusers-q8.gguf")
    theirs = write_gguf(wan_original(preview_state, prefix="model.diffusion_model."), tmp_path / "comfy-q8.gguf")
    plain = engine.generate(_req()).frames
    a = engine.generate(_req(transformer_file=str(ours))).frames
    b = engine.generate(_req(transformer_file=str(theirs))).frames
    assert _diff(a, b).max() == 0  # the same quantized weights under other names: the same frames
    assert _diff(b, plain).mean() < 2.0  # and within Q8_0's tolerance of the full-precision model
    weight = engine.models.current().pipe.transformer.blocks[0].ffn.net[2].weight  # type: ignore[union-attr]
    assert type(weight).__name__ == "GGUFParameter" and weight.dtype == torch.uint8  # kept quantized


def test_a_k_quant_gguf_loads_and_generates(studio_settings: Settings, preview_state, tmp_path: Path) -> None:
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    sample = preview_state["condition_embedder.time_embedder.linear_1.weight"].numpy()  # [24, 256]: one Q6_K row each
    back = dequantize(quantize_q6_k(sample), GGMLQuantizationType.Q6_K)
    assert np.abs(back - sample).max() <= np.abs(sample).max() / 31  # the writer is a real Q6_K
    path = write_gguf(wan_original(preview_state), tmp_path / "preview-Q6_K.gguf", quant="Q6_K")
    engine = Engine(studio_settings)
    plain = engine.generate(_req()).frames
    frames = engine.generate(_req(transformer_file=str(path))).frames
    assert frames.shape == plain.shape and _diff(frames, plain).mean() < 3.0
    # Wan keeps its time embedder (the one 256-wide layer, so the Q6_K one) in float32: diffusers decodes
    # it at load. Decoded right, it equals the same weights given as F32, the other layers as before.
    decoded = dict(preview_state)
    decoded["condition_embedder.time_embedder.linear_1.weight"] = torch.from_numpy(back.copy())
    same = write_gguf({k: v for k, v in decoded.items()}, tmp_path / "decoded.gguf")
    assert _diff(engine.generate(_req(transformer_file=str(same))).frames, frames).max() <= 1
    assert type(engine.models.current().pipe.transformer.blocks[0].ffn.net[2].weight).__name__ == "GGUFParameter"  # type: ignore[union-attr]


@pytest.mark.parametrize("scaled", [False, True], ids=["fp8", "fp8-scaled"])
def test_an_fp8_single_file_in_the_original_layout_generates(studio_settings: Settings, preview_state,
                                                            tmp_path: Path, scaled: bool) -> None:
    engine = Engine(studio_settings)
    plain = engine.generate(_req()).frames
    path = write_fp8(wan_original(preview_state), tmp_path / "wan_preview_fp8_e4m3fn.safetensors", scaled=scaled)
    frames = engine.generate(_req(transformer_file=str(path))).frames
    assert frames.shape == plain.shape and _diff(frames, plain).mean() < 3.0
    weight = engine.models.current().pipe.transformer.blocks[0].attn1.to_q.weight  # type: ignore[union-attr]
    # Plain fp8 stays float8 in memory (cast up per layer); scaled fp8 is W/s, unscaled at load.
    assert weight.dtype == (torch.float32 if scaled else torch.float8_e4m3fn)
    exact = write_fp8(preview_state, tmp_path / "diffusers_fp8_e4m3fn.safetensors", scaled=scaled)
    assert _diff(engine.generate(_req(transformer_file=str(exact))).frames, frames).max() == 0  # layout-blind
    # The same values given as float32 make the same frames: nothing is lost by keeping them in float8.
    from safetensors.torch import load_file, save_file

    from engine.core.file_layouts import fold_fp8_scales

    upcast = fold_fp8_scales(load_file(str(exact)), torch.float32)
    save_file(upcast, str(tmp_path / "upcast.safetensors"))
    # (within one grey level: the two load paths may sum in another order, depending on what ran before)
    assert _diff(engine.generate(_req(transformer_file=str(tmp_path / "upcast.safetensors"))).frames, frames).max() <= 1
    # A LoRA on top works the same on the float8-stored weights as on the upcast ones.
    from engine.core.requests import AdapterRef
    from support.community import random_lora

    lora = str(write_lora(random_lora(preview_state, seed=1), tmp_path / "lora.safetensors", "kohya", alpha=2.0))
    on_upcast = engine.generate(_req(transformer_file=str(tmp_path / "upcast.safetensors"), adapters=(AdapterRef(lora),)))
    on_fp8 = engine.generate(_req(transformer_file=str(path), adapters=(AdapterRef(lora),)))
    assert _diff(on_fp8.frames, on_upcast.frames).max() <= 1 and _diff(on_fp8.frames, frames).mean() > 1.0


def _cases(state: dict[str, torch.Tensor], tmp_path: Path) -> dict[str, tuple[Path, str]]:
    original = wan_original(state)
    narrow = dict(original)
    narrow["blocks.0.self_attn.q.weight"] = narrow["blocks.0.self_attn.q.weight"][:, :12]
    cut = write_gguf(original, tmp_path / "whole.gguf")
    (tmp_path / "cut.gguf").write_bytes(cut.read_bytes()[:5000])
    short = {k: v for k, v in original.items() if not k.startswith("blocks.1.")}
    other = {"double_blocks.0.img_attn.qkv.weight": torch.zeros(30, 10), "img_in.proj.weight": torch.zeros(10, 4, 1, 1, 1)}
    return {
        "another width": (write_gguf(narrow, tmp_path / "narrow.gguf", quant="F32"),
                          "tensor 'blocks.0.attn1.to_q.weight' has shape [24, 12], the model's is [24, 24]"),
        "cut short": (tmp_path / "cut.gguf", "not a readable GGUF file"),
        "layers missing": (write_gguf(short, tmp_path / "short.gguf"), "lacks 27 of the model's tensors, first "
                                                                        "'blocks.1.scale_shift_table'"),
        "another architecture": (write_gguf(other, tmp_path / "hunyuan.gguf", quant="F32"),
                                 "does not hold a Wan transformer"),
    }


def test_original_layout_files_that_do_not_fit_are_refused_naming_the_first_misfit(
        studio_settings: Settings, preview_state, tmp_path: Path) -> None:
    engine = Engine(studio_settings)
    for case, (path, said) in _cases(preview_state, tmp_path).items():
        with pytest.raises(InvalidRequest) as info:
            engine.prepare(_req(transformer_file=str(path)))
        assert info.value.field == "transformer_file" and said in str(info.value), (case, str(info.value))


def test_cli_refuses_a_misfit_original_layout_file_in_one_line_and_records_nothing(
        studio_settings: Settings, preview_state, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data-dir", str(studio_settings.data_dir), "generate", "--model", "preview", "--narrative", "x",
            "--width", "32", "--height", "32", "--frames", "5", "--steps", "2"]
    for case, (path, said) in _cases(preview_state, tmp_path).items():
        assert main([*base, "--transformer", str(path)]) == 2, case
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("error: transformer_file") and said in err[0], (case, err)
    assert main(["--data-dir", str(studio_settings.data_dir), "history", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # nothing half-made in history
