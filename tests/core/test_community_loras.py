"""LoRAs made elsewhere (diffusers, ComfyUI/musubi, kohya layouts), judged by layer shapes on any model.

Each file is the same LoRA, written from the built-in model's own layer shapes, so its frames must
equal the diffusers-layout file's.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.core.adapters.community import COMFYUI, DIFFUSERS, KOHYA, lora_layout
from engine.core.errors import InvalidRequest
from engine.core.generation import Engine
from engine.core.requests import AdapterRef, GenerationRequest
from engine.core.settings import Settings
from support.community import random_lora, write_lora

RANK, ALPHA = 4, 2.0  # alpha/rank = 0.5: a file that ignored alpha would be twice as strong


def _req(*adapters: AdapterRef, **kw: object) -> GenerationRequest:
    base: dict[str, object] = dict(narrative="a fox runs", model="preview", width=32, height=32, num_frames=5,
                                   fps=8, steps=2, seed=5, adapters=adapters)
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def lora():
    from engine.core.preview import build_preview_pipeline

    return random_lora(build_preview_pipeline().transformer.state_dict(), rank=RANK, seed=3)


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int))


def test_layouts_are_told_apart(lora, tmp_path: Path) -> None:
    from safetensors import safe_open

    for layout, want in (("diffusers", DIFFUSERS), ("comfyui", COMFYUI), ("musubi", COMFYUI), ("kohya", KOHYA)):
        path = write_lora(lora, tmp_path / f"{layout}.safetensors", layout, alpha=ALPHA)
        with safe_open(str(path), framework="pt") as fh:
            assert lora_layout(fh.keys()) == want


def test_comfyui_musubi_and_kohya_loras_equal_the_diffusers_one_on_the_built_in_model(
        studio_settings: Settings, lora, tmp_path: Path) -> None:
    engine = Engine(studio_settings)
    plain = engine.generate(_req()).frames
    files = {layout: write_lora(lora, tmp_path / f"{layout}.safetensors", layout, alpha=ALPHA)
             for layout in ("diffusers", "comfyui", "musubi", "kohya")}
    frames = {layout: engine.generate(_req(AdapterRef(str(path)))).frames for layout, path in files.items()}
    assert _diff(frames["diffusers"], plain).mean() > 2.0  # the LoRA changes the output
    for layout in ("comfyui", "musubi", "kohya"):
        assert _diff(frames[layout], plain).mean() > 2.0, layout
        assert _diff(frames[layout], frames["diffusers"]).max() <= 1, layout  # the same LoRA, within float tolerance
    # alpha is honoured: the kohya file read without its alpha (alpha = rank) is another, stronger LoRA
    stronger = engine.generate(_req(AdapterRef(str(write_lora(lora, tmp_path / "k2.safetensors", "kohya"))))).frames
    assert _diff(stronger, frames["kohya"]).mean() > 1.0
    # and so is the strength, the same way in every layout
    half = {layout: engine.generate(_req(AdapterRef(str(files[layout]), strength=0.5))).frames
            for layout in ("diffusers", "kohya")}
    assert _diff(half["kohya"], half["diffusers"]).max() <= 1 and _diff(half["kohya"], frames["kohya"]).mean() > 1.0
    assert engine.generate(_req()).frames.tobytes() == plain.tobytes()  # removed again afterwards


def _misfits(lora, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    narrow = dict(lora)
    a, b = narrow["blocks.0.attn1.to_q"]
    narrow["blocks.0.attn1.to_q"] = (a[:, :12], b)
    short = {k: v for k, v in lora.items() if k != "blocks.1.attn2.to_k"}
    other = {"blocks.0.attn1.to_q": lora["blocks.0.attn1.to_q"]}
    other_path = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 24),
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(24, 4)}, str(other_path))
    del other
    return {
        "another width": (write_lora(narrow, tmp_path / "narrow.safetensors", "comfyui", alpha=ALPHA),
                          "tensor 'transformer.blocks.0.attn1.to_q.lora_A.weight' is for a 12->24 layer; "
                          "'blocks.0.attn1.to_q' is 24->24 here"),
        "cut short": (write_lora(short, tmp_path / "short.safetensors", "kohya", alpha=ALPHA),
                      "kohya LoRA that lacks tensor 'lora_unet_blocks_1_cross_attn_k.lora_down.weight'"),
        "another architecture": (other_path, "tensor 'transformer.transformer_blocks.0.attn.to_q.lora_A.weight' "
                                             "is for layer 'transformer_blocks.0.attn.to_q', which this model does not have"),
    }


def test_a_misfit_lora_is_refused_naming_the_first_tensor_and_leaves_the_model_as_it_was(
        studio_settings: Settings, lora, tmp_path: Path) -> None:
    engine = Engine(studio_settings)
    plain = engine.generate(_req()).frames
    for case, (path, said) in _misfits(lora, tmp_path).items():
        with pytest.raises(InvalidRequest) as info:
            engine.generate(_req(AdapterRef(str(path))))
        assert info.value.field == "adapters.path" and said in str(info.value), (case, str(info.value))
    assert engine.generate(_req()).frames.tobytes() == plain.tobytes()


def test_cli_refuses_a_misfit_lora_in_one_line_and_records_nothing(
        studio_settings: Settings, lora, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data-dir", str(studio_settings.data_dir), "generate", "--model", "preview", "--narrative", "x",
            "--width", "32", "--height", "32", "--frames", "5", "--steps", "2"]
    for case, (path, said) in _misfits(lora, tmp_path).items():
        assert main([*base, "--adapter", str(path)]) == 2, case
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("error: adapters.path") and said in err[0], (case, err)
    kohya = write_lora(lora, tmp_path / "kohya.safetensors", "kohya", alpha=ALPHA)
    assert main([*base, "--adapter", str(kohya)]) == 0  # a fitting one goes through the same door
    capsys.readouterr()
    assert main(["--data-dir", str(studio_settings.data_dir), "history", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1  # only the clip that was made


def test_a_community_lora_in_the_adapters_folder_is_offered_for_the_built_in_model(settings: Settings, lora) -> None:
    from engine.core.catalog import AdapterCatalog
    from engine.core.registry import REGISTRY

    settings.adapters_dir.mkdir(parents=True, exist_ok=True)
    write_lora(lora, settings.adapters_dir / "ink-wash.safetensors", "kohya", alpha=ALPHA)
    entries = AdapterCatalog(settings).for_model("preview")
    assert [e.kind for e in entries] == ["lora"] and "ink-wash" in entries[0].name
    assert entries[0].misfit(REGISTRY["preview"]) is None  # judged by its layer shapes when it loads


def test_the_loras_folder_is_listed_with_what_each_header_says(settings: Settings, lora, tmp_path: Path) -> None:
    from engine.core.catalog import AdapterCatalog
    from engine.core.lora_metadata import LoraInfo, lora_info

    folder = settings.loras_dir
    (folder / "ink-wash").mkdir(parents=True)  # a downloaded LoRA's own folder: listed by the folder's name
    write_lora(lora, folder / "sakuga-smears.safetensors", "kohya", alpha=ALPHA, metadata={
        "ss_network_dim": "4", "ss_network_alpha": "2.0", "ss_base_model_version": "wan21_t2v_14b",
        "ss_tag_frequency": json.dumps({"10_smears": {"smear frame": 40, "impact frame": 12, "1girl": 3}})})
    write_lora(lora, folder / "ink-wash" / "ink_wash_v1.safetensors", "comfyui", alpha=ALPHA, metadata={
        "modelspec.trigger_phrase": "ink wash, sumi-e", "modelspec.architecture": "wan2.1-t2v-1.3b/lora"})
    write_lora(lora, folder / "plain.safetensors", "diffusers")  # no metadata at all: rank from its shapes
    entries = {e.name: e for e in AdapterCatalog(settings).for_model("preview")}
    assert sorted(entries) == ["ink-wash", "plain", "sakuga-smears"]
    assert entries["sakuga-smears"].info == LoraInfo(("smear frame", "impact frame", "1girl"), "wan21_t2v_14b", 4, 2.0)
    assert entries["sakuga-smears"].label("preview") == ("sakuga-smears · LoRA · rank 4, alpha 2 · triggers: smear frame, "
                                                         "impact frame, 1girl · made for wan21_t2v_14b")
    assert entries["ink-wash"].info is not None
    assert entries["ink-wash"].info.trigger_words == ("ink wash", "sumi-e")
    assert entries["plain"].label("preview") == "plain · LoRA · base model not recorded · rank 4"
    broken = tmp_path / "cut.safetensors"
    broken.write_bytes((folder / "plain.safetensors").read_bytes()[:20])
    with pytest.raises(ValueError, match="cut short"):
        lora_info(broken)


def test_a_community_lora_on_weights_stored_in_fp8(studio_settings: Settings, lora, tmp_path: Path) -> None:
    """peft makes a LoRA's weights in its base layer's dtype: on fp8-stored layers they would be float8."""
    engine = Engine(studio_settings)
    path = AdapterRef(str(write_lora(lora, tmp_path / "kohya.safetensors", "kohya", alpha=ALPHA)))
    full = engine.generate(_req(path)).frames
    fp8 = engine.generate(_req(quantization="fp8-layerwise")).frames
    both = engine.generate(_req(path, quantization="fp8-layerwise")).frames
    assert _diff(both, fp8).mean() > 2.0 and _diff(both, full).mean() < 3.0  # the LoRA, within fp8's tolerance
    weights = [p for n, p in engine.models.current().pipe.transformer.named_parameters() if "lora_" in n]  # type: ignore[union-attr]
    assert weights and all(p.dtype == torch.float32 for p in weights)
