"""HydraLoRA: the layer, injection into the preview transformer, files, and `apply_adapters`."""
from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.core.adapters import (
    HYDRA_MERGE_REFUSAL, HydraLoRA, HydraLoRALinear, HydraSpec, apply_adapters, base_info_for, check_adapters,
    find_targets, hydralora_parameter_count, inject_hydralora, inspect_adapter, save_adapter,
)
from engine.core.errors import InvalidRequest
from engine.core.requests import AdapterRef


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def pipe():
    from engine.core.preview import build_preview_pipeline

    p = build_preview_pipeline()
    p.set_progress_bar_config(disable=True)
    return p


def _frames(pipe) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    out = pipe(prompt="a red square slides right", num_frames=5, height=32, width=32, num_inference_steps=2,
               guidance_scale=1.0, generator=g, output_type="pt")
    return out.frames[0].float()


def _randomize(injection, scale: float = 0.3, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in injection.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


# ----------------------------------------------------------------------------- the layer
def test_layer_has_no_effect_at_init_and_counts_its_parameters() -> None:
    torch.manual_seed(0)
    base = nn.Linear(16, 24)
    layer = HydraLoRALinear(base, HydraLoRA(16, 24, rank=4, alpha=4, num_heads=4))
    x = torch.randn(3, 7, 16)
    assert torch.equal(layer(x), base(x))  # exactly: every B starts at zero
    trainable = sum(p.numel() for p in layer.adapter.parameters())
    r, n, fan_in, fan_out = 4, 4, 16, 24
    assert trainable == r * fan_in + n * r * fan_out + n * fan_in == hydralora_parameter_count(16, 24, 4, 4)
    assert layer.adapter.router is not None and layer.adapter.router.bias is None
    assert not any(p.requires_grad for p in base.parameters())
    # Plain LoRA (one head) and fixed weights carry no router.
    assert sum(p.numel() for p in HydraLoRA(16, 24, 4, 4, num_heads=1).parameters()) == 4 * 16 + 4 * 24
    fixed = HydraLoRA(16, 24, 4, 4, num_heads=3, router="fixed", fixed_weights=[0.5, 0.3, 0.2])
    assert sum(p.numel() for p in fixed.parameters()) == hydralora_parameter_count(16, 24, 4, 3, "fixed")


def test_router_weights_sum_to_one_per_token_in_float32() -> None:
    torch.manual_seed(1)
    adapter = HydraLoRA(16, 24, rank=4, alpha=8, num_heads=4)
    x = torch.randn(2, 9, 16, dtype=torch.bfloat16)
    g = adapter.route(x)
    assert g.shape == (2, 9, 4) and g.dtype == torch.float32
    assert torch.allclose(g.sum(-1), torch.ones(2, 9), atol=1e-6)
    assert (g > 0).all() and not torch.allclose(g[0, 0], g[0, 1])  # per token, not one mixture
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert adapter.route(x).dtype == torch.float32  # autocast does not lower the router


def test_update_matches_the_formula_for_router_and_fixed_weights() -> None:
    torch.manual_seed(2)
    a = HydraLoRA(8, 6, rank=3, alpha=6, num_heads=4)
    with torch.no_grad():
        a.lora_B.normal_()
    x = torch.randn(5, 8)
    g = a.route(x)
    expected = sum(g[:, i:i + 1] * (x @ a.lora_A.T @ a.lora_B[i].T) for i in range(4)) * (6 / 3)
    assert torch.allclose(a(x), expected, atol=1e-5)
    a.strength = 0.5
    assert torch.allclose(a(x), expected * 0.5, atol=1e-5)
    f = HydraLoRA(8, 6, rank=3, alpha=3, num_heads=2, router="fixed", fixed_weights=[0.25, 0.75])
    with torch.no_grad():
        f.lora_B.normal_()
    assert torch.allclose(f(x), x @ f.delta_weight([0.25, 0.75]).T, atol=1e-5)


def test_injection_trains_only_the_adapter_and_removal_restores_the_model(pipe) -> None:
    transformer = pipe.transformer
    before = {k: v.clone() for k, v in transformer.state_dict().items()}
    transformer.requires_grad_(False)
    injection = inject_hydralora(transformer, HydraSpec(rank=4, alpha=4, num_heads=4))
    try:
        # Default targets: attention q/k/v/out and FFN of every DiT block (PTTA), nothing else.
        assert sorted(injection.modules) == sorted(find_targets(transformer, [
            "blocks.*.attn[12].to_[qkv]", "blocks.*.attn[12].to_out.0", "blocks.*.ffn.net.0.proj", "blocks.*.ffn.net.2"]))
        assert len(injection.modules) == 2 * 10
        expected = sum(hydralora_parameter_count(i, o, 4, 4) for i, o in injection.shapes.values())
        assert injection.num_parameters() == expected
        trainable = {id(p) for p in transformer.parameters() if p.requires_grad}
        assert trainable == {id(p) for p in injection.parameters()}
        opt = torch.optim.AdamW(injection.parameters(), lr=1e-2)
        x = torch.randn(1, 16, 2, 4, 4)
        text = torch.randn(1, 8, 32)
        for _ in range(3):
            out = transformer(hidden_states=x, timestep=torch.tensor([500.0]), encoder_hidden_states=text,
                              return_dict=False)[0]
            loss = (out - 1.0).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
        assert injection.modules["blocks.0.attn1.to_q"].lora_B.abs().sum() > 0
        base_now = {k: v for k, v in transformer.state_dict().items() if "animatrix_hydra_" not in k}
        assert base_now.keys() == before.keys()
        assert all(torch.equal(base_now[k], before[k]) for k in before)  # base weights untouched
    finally:
        injection.remove()
    assert transformer.state_dict().keys() == before.keys()


# ------------------------------------------------------------------------ apply_adapters
@pytest.fixture(scope="module")
def saved(pipe, tmp_path_factory) -> dict[str, Path]:
    """A 'trained' HydraLoRA and a plain LoRA (random weights) saved for the preview model."""
    root = tmp_path_factory.mktemp("adapters")
    out = {}
    for kind, heads in (("hydralora", 4), ("lora", 1)):
        injection = inject_hydralora(pipe.transformer, HydraSpec(rank=4, alpha=4, num_heads=heads))
        _randomize(injection, seed=heads)
        save_adapter(injection, root / kind, kind=kind, base=base_info_for(pipe.transformer, injection, "preview"))
        out[kind] = root / kind
        out[f"{kind}_frames"] = _frames(pipe)
        injection.remove()
    return out


def test_adapters_change_the_frames_and_come_off_exactly(pipe, saved) -> None:
    base = _frames(pipe)
    for kind in ("hydralora", "lora"):
        handle = apply_adapters(pipe, [AdapterRef(str(saved[kind]))], "preview")
        assert handle.kinds == (kind,)
        frames = _frames(pipe)
        assert (frames - base).abs().max() > 1e-3
        # The file gives the very model that was saved (LoRA through diffusers' loader).
        assert torch.allclose(frames, saved[f"{kind}_frames"], atol=1e-5)
        # Strength scales the contribution: 0 is the base model; changing it reuses the handle.
        same = apply_adapters(pipe, [AdapterRef(str(saved[kind]), strength=0.0)], "preview", previous=handle)
        assert same is handle
        assert torch.allclose(_frames(pipe), base, atol=1e-6)
        handle.remove()
        assert torch.equal(_frames(pipe), base)


def test_both_kinds_together_and_lora_merge(pipe, saved) -> None:
    base = _frames(pipe)
    refs = [AdapterRef(str(saved["hydralora"]), 0.7), AdapterRef(str(saved["lora"]), 1.0)]
    handle = apply_adapters(pipe, refs, "preview")
    mixed = _frames(pipe)
    assert handle.matches(refs, "preview") and apply_adapters(pipe, refs, "preview", previous=handle) is handle
    handle.remove()
    assert torch.equal(_frames(pipe), base)
    lora = AdapterRef(str(saved["lora"]))
    fused = apply_adapters(pipe, [lora], "preview", fuse=True)
    assert fused.fused and torch.allclose(_frames(pipe), saved["lora_frames"], atol=1e-4)
    fused.remove()
    assert torch.allclose(_frames(pipe), base, atol=1e-5)
    assert (mixed - base).abs().max() > 1e-3


def test_refusals_name_the_reason_and_leave_the_pipeline_alone(pipe, saved, tmp_path) -> None:
    from diffusers import WanTransformer3DModel

    base = _frames(pipe)
    with pytest.raises(InvalidRequest, match="cannot be merged") as exc:
        apply_adapters(pipe, [AdapterRef(str(saved["hydralora"]))], "preview", fuse=True)
    assert exc.value.field == "adapters.fuse" and HYDRA_MERGE_REFUSAL in str(exc.value)
    with pytest.raises(InvalidRequest, match="holds a hydralora adapter, not lora"):
        apply_adapters(pipe, [AdapterRef(str(saved["hydralora"]), kind="lora")], "preview")
    with pytest.raises(InvalidRequest, match="does not exist"):
        apply_adapters(pipe, [AdapterRef(str(tmp_path / "nope"))], "preview")
    # The same file checks without a pipeline, for refusing a request before it is queued.
    assert check_adapters([AdapterRef(str(saved["hydralora"])), AdapterRef(str(saved["lora"]))]) == ("hydralora", "lora")
    with pytest.raises(InvalidRequest, match="does not exist"):
        check_adapters([AdapterRef(str(tmp_path / "nope"))])
    # Another family in the registry: refused before any shape is looked at.
    with pytest.raises(InvalidRequest, match="trained on a Wan model .* is a HunyuanVideo model"):
        apply_adapters(pipe, [AdapterRef(str(saved["hydralora"]))], "hunyuanvideo")
    # Same family, other sizes: refused with the first layer that does not fit.
    other = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=16,
                                  out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2,
                                  cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    wrong = types.SimpleNamespace(transformer=other)
    for kind in ("hydralora", "lora"):
        with pytest.raises(InvalidRequest, match=r"does not fit .*blocks\.0\..* is 32->32 in this model but 24->24"):
            apply_adapters(wrong, [AdapterRef(str(saved[kind]))], "wan2.1-t2v-1.3b")
    assert not any("animatrix_hydra_" in k for k in other.state_dict())
    assert torch.equal(_frames(pipe), base)


def test_lone_safetensors_and_community_lora_layout(pipe, saved, tmp_path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    # A HydraLoRA file alone still knows what it is (config in its metadata).
    lone = tmp_path / "my_style.safetensors"
    shutil.copy(saved["hydralora"] / "hydralora.safetensors", lone)
    files = inspect_adapter(lone)
    assert files.kind == "hydralora" and files.config is not None and files.config.spec.num_heads == 4
    # A community LoRA: only diffusers keys, no config of ours; a wrong shape is refused up front.
    tensors = load_file(str(saved["lora"] / "pytorch_lora_weights.safetensors"))
    community = tmp_path / "community"
    community.mkdir()
    save_file(tensors, str(community / "anime_lora.safetensors"))
    assert inspect_adapter(community).kind == "lora"
    handle = apply_adapters(pipe, [AdapterRef(str(community / "anime_lora.safetensors"))], "preview")
    assert torch.allclose(_frames(pipe), saved["lora_frames"], atol=1e-5)
    handle.remove()
    key = "transformer.blocks.0.attn1.to_q.lora_A.weight"
    tensors[key] = torch.zeros(4, 40)
    save_file(tensors, str(community / "anime_lora.safetensors"))
    with pytest.raises(InvalidRequest, match=re.escape("tensor 'transformer.blocks.0.attn1.to_q.lora_A.weight' is "
                                                       "for a 40->24 layer; 'blocks.0.attn1.to_q' is 24->24 here")):
        apply_adapters(pipe, [AdapterRef(str(community))], "preview")


def test_hunyuanvideo_targets_and_flow_matching_call_train_the_adapter() -> None:
    from diffusers import HunyuanVideoTransformer3DModel

    from engine.training.objective import HunyuanOps, flow_matching_loss, noisy_latents, sample_sigmas

    torch.manual_seed(0)
    t = HunyuanVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10,
                                       num_layers=1, num_single_layers=1, num_refiner_layers=1, patch_size=1,
                                       patch_size_t=1, guidance_embeds=True, text_embed_dim=16,
                                       pooled_projection_dim=8, rope_axes_dim=(2, 4, 4))
    t.requires_grad_(False)
    injection = inject_hydralora(t, HydraSpec(rank=4, alpha=4, num_heads=4))
    names = set(injection.modules)
    assert {"transformer_blocks.0.attn.add_q_proj", "transformer_blocks.0.ff_context.net.2",
            "single_transformer_blocks.0.proj_mlp", "single_transformer_blocks.0.attn.to_q"} <= names
    assert not any("norm" in n or "refiner" in n for n in names)
    ops = HunyuanOps()
    text = ops.collate_text([{"prompt_embeds": torch.randn(5, 16), "pooled_prompt_embeds": torch.randn(8)},
                             {"prompt_embeds": torch.randn(3, 16), "pooled_prompt_embeds": torch.randn(8)}], 256)
    assert text["prompt_attention_mask"].tolist()[1] == [True, True, True, False, False]
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 3, 4, 4)
    sigmas = sample_sigmas(2, g, shift=7.0)
    x_t, target = noisy_latents(x0, torch.randn(x0.shape, generator=g), sigmas)
    assert torch.allclose(x_t, (1 - sigmas.view(-1, 1, 1, 1, 1)) * x0 + sigmas.view(-1, 1, 1, 1, 1) * (target + x0))
    loss = flow_matching_loss(ops.call(t, x_t, sigmas * 1000, text, 1.0), target)
    loss.backward()
    assert all(p.grad is not None for p in injection.parameters())
    assert any(p.grad.abs().sum() > 0 for p in injection.parameters())


def test_shifted_sigmas_follow_the_scheduler_formula() -> None:
    from engine.training.objective import sample_sigmas

    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    u = torch.rand(1000, generator=g1).clamp(1e-4, 1 - 1e-4)
    s = sample_sigmas(1000, g2, shift=3.0)
    assert torch.allclose(s, 3 * u / (1 + 2 * u)) and s.dtype == torch.float32
    assert s.mean() > 0.6  # shift 3 pushes training towards high noise, like sampling does
