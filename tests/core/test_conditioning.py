"""Dual-channel conditioning: the PKS tag encoder, its hooks on Wan / HunyuanVideo, guidance, checkpoints.

Tiny real diffusers transformers on CPU, one thread (faster than two for models this small).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
import torch.nn.functional as F

from engine.core.conditioning import (
    TagChannelError,
    TagEncoder,
    TagEncoderMismatch,
    attach_tag_encoder,
    encode_tags,
    generate_with_tags,
    pipeline_text_guidance,
    load_tag_encoder,
    save_tag_encoder,
    tag_dropout,
    tags_for_call,
)
from engine.core.errors import EngineError, InvalidRequest
from engine.core.pks import Taxonomy, load_taxonomy

from support.conditioning import (STYLE_A, STYLE_B, edited_taxonomy, hunyuan_inputs, randomize, tiny_hunyuan,
                                 tiny_wan, wan_inputs)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tax() -> Taxonomy:
    return load_taxonomy()


# ----------------------------------------------------------------------------------- inputs
def test_encode_tags_keeps_field_value_structure(tax: Taxonomy) -> None:
    idx = encode_tags(tax, [STYLE_A, {}, None])
    f = {fid: i for i, fid in enumerate(tax.field_ids)}
    assert idx.values.shape[:2] == (3, len(tax.fields)) and idx.values.shape[2] == 2  # vfx.effects holds 2
    school = tax.field("style.school").value_ids
    assert idx.values[0, f["style.school"], 0] == school.index("cel_90s") + 1
    assert idx.mask[0, f["vfx.effects"]].tolist() == [True, True]
    assert idx.values[1].eq(0).all() and idx.mask[1, :, 0].all() and not idx.mask[1, :, 1].any()  # all unset
    enc = TagEncoder(tax, text_dim=8, temb_dim=8, num_sites=1, num_heads=1, family="wan", hidden_dim=8)
    # Local id 1 of two fields lands on two different rows of the value table.
    rows = {int(enc.offsets[j]) + 1 for j in range(len(tax.fields))}
    assert len(rows) == len(tax.fields)
    with pytest.raises(InvalidRequest) as err:
        encode_tags(tax, [{}, {"camera.movement": "whippan"}])
    assert err.value.field == "tags[1].camera.movement" and "whip_pan" in str(err.value)
    other = edited_taxonomy(lambda fs: fs["style.era"]["values"].append(
        {"id": "twenty_twenties", "label": "2020s", "description": "d", "phrase": "p"}), "1.1.0")
    with pytest.raises(InvalidRequest, match="another taxonomy"):
        enc.encode(encode_tags(other, [{}]))


def test_tag_dropout_is_per_field_deterministic_and_configurable(tax: Taxonomy) -> None:
    idx = encode_tags(tax, [STYLE_A] * 64)
    a = tag_dropout(idx, 0.5, torch.Generator().manual_seed(1))
    b = tag_dropout(idx, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(a.values, b.values) and torch.equal(a.mask, b.mask)
    dropped = (a.values[:, :, 0] == 0) & (idx.values[:, :, 0] != 0)
    assert 0 < dropped.float().mean() < 1  # per (sample, field), not all-or-nothing
    only = tag_dropout(idx, {"style.school": 1.0}, torch.Generator().manual_seed(1))
    j = tax.field_ids.index("style.school")
    assert only.values[:, j].eq(0).all()
    keep = [i for i in range(len(tax.fields)) if i != j]
    assert torch.equal(only.values[:, keep], idx.values[:, keep])
    everything = tag_dropout(idx, 0.0, torch.Generator().manual_seed(1), drop_all_rate=1.0)
    assert everything.values.eq(0).all()
    with pytest.raises(InvalidRequest):
        tag_dropout(idx, {"style.nope": 0.5})


# ------------------------------------------------------------------------- identity at init
def test_identity_at_init_wan_preview(tax: Taxonomy) -> None:
    from engine.core.preview import build_preview_pipeline

    transformer = build_preview_pipeline().transformer.eval()
    inputs = wan_inputs()
    with torch.no_grad():
        before = transformer(**inputs).sample
        channel = attach_tag_encoder(transformer, TagEncoder.for_transformer(transformer, tax, hidden_dim=16))
        channel.set_tags([STYLE_A, STYLE_B])
        wrapped = transformer(**inputs).sample
        assert channel.context is not None and channel.context.shape[1] == len(tax.fields)  # tags were attended
        channel.detach()
        after = transformer(**inputs).sample
    assert torch.equal(wrapped, before)  # exact, not approximate
    assert torch.equal(after, before)


def test_identity_at_init_hunyuan(tax: Taxonomy) -> None:
    transformer = tiny_hunyuan()
    inputs = hunyuan_inputs()
    with torch.no_grad():
        before = transformer(**inputs).sample
        channel = attach_tag_encoder(transformer, TagEncoder.for_transformer(transformer, tax, hidden_dim=16))
        channel.set_tags([STYLE_A, STYLE_B])
        assert torch.equal(transformer(**inputs).sample, before)
        randomize(channel.encoder)
        assert not torch.allclose(transformer(**inputs).sample, before)  # the hooks are live
        channel.clear()
        assert torch.equal(transformer(**inputs).sample, before)


def test_wan22_per_token_timesteps(tax: Taxonomy) -> None:
    """Wan2.2 TI2V passes one timestep per video token: temb is (B, seq, D) and pooled broadcasts."""
    transformer = tiny_wan()
    inputs = {**wan_inputs(), "timestep": torch.tensor([[700.0] * 4, [250.0] * 2 + [0.0] * 2])}  # 4 tokens
    with torch.no_grad():
        before = transformer(**inputs).sample
        channel = attach_tag_encoder(transformer, TagEncoder.for_transformer(transformer, tax, hidden_dim=16))
        channel.set_tags(STYLE_A)
        assert torch.equal(transformer(**inputs).sample, before)
        randomize(channel.encoder)
        assert not torch.allclose(transformer(**inputs).sample, before)


# ------------------------------------------------------------------------------ both paths
def _block_inputs(transformer: torch.nn.Module, blocks: list[torch.nn.Module], attns: list[torch.nn.Module],
                  inputs: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Every block's modulation input (temb / timestep_proj) and every attention's output."""
    temb: list[torch.Tensor] = []
    attn: list[torch.Tensor] = []
    handles = [b.register_forward_pre_hook(lambda m, a: temb.append(a[2].clone())) for b in blocks]
    handles += [a.register_forward_hook(lambda m, i, o: attn.append((o[0] if isinstance(o, tuple) else o).clone()))
                for a in attns]
    with torch.no_grad():
        out = transformer(**inputs).sample
    for h in handles:
        h.remove()
    return temb, attn, out


@pytest.mark.parametrize("family", ["wan", "hunyuanvideo"])
def test_style_value_reaches_every_block_and_the_context(tax: Taxonomy, family: str) -> None:
    if family == "wan":
        transformer, inputs = tiny_wan(), wan_inputs(1)
        blocks = list(transformer.blocks)
        attns = [b.attn2 for b in blocks]
    else:
        transformer, inputs = tiny_hunyuan(), hunyuan_inputs(1)
        blocks = [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
        attns = [b.attn for b in blocks]
    channel = attach_tag_encoder(transformer, randomize(TagEncoder.for_transformer(transformer, tax, hidden_dim=16)))
    runs = {}
    for name, tags in (("a", STYLE_A), ("b", STYLE_B)):
        channel.set_tags(tags)
        runs[name] = (*_block_inputs(transformer, blocks, attns, inputs), channel.context.clone())
    (temb_a, attn_a, out_a, ctx_a), (temb_b, attn_b, out_b, ctx_b) = runs["a"], runs["b"]
    assert len(temb_a) == len(blocks) and len(attn_a) == len(attns)
    for ta, tb in zip(temb_a, temb_b):
        assert not torch.allclose(ta, tb)  # AdaLN input of every block
    for aa, ab in zip(attn_a, attn_b):
        assert not torch.allclose(aa, ab)  # every attention sees a different tag segment
    j = tax.field_ids.index("style.school")
    others = [i for i in range(len(tax.fields)) if i != j]
    assert not torch.allclose(ctx_a[:, j], ctx_b[:, j])
    assert torch.equal(ctx_a[:, others], ctx_b[:, others])  # one token per field: only Style's moved
    assert not torch.allclose(out_a, out_b)

    # Style dropped at rate 1.0: whatever the Style value was, nothing differs any more.
    drop = [tag_dropout(encode_tags(tax, t), {"style.school": 1.0}, torch.Generator().manual_seed(0))
            for t in (STYLE_A, STYLE_B)]
    dropped = []
    for idx in drop:
        channel.set_tags(idx)
        dropped.append(_block_inputs(transformer, blocks, attns, inputs))
    for xa, xb in zip(dropped[0][0] + dropped[0][1], dropped[1][0] + dropped[1][1]):
        assert torch.equal(xa, xb)
    assert torch.equal(dropped[0][2], dropped[1][2])


# -------------------------------------------------------------------------------- training
def test_gradients_reach_the_encoder_not_the_frozen_base(tax: Taxonomy) -> None:
    transformer = tiny_wan()
    encoder = randomize(TagEncoder.for_transformer(transformer, tax, hidden_dim=16))
    channel = attach_tag_encoder(transformer, encoder)
    channel.set_tags([STYLE_A, STYLE_B])
    out = transformer(**wan_inputs()).sample
    out.square().mean().backward()
    assert all(p.grad is None for p in transformer.parameters())
    for name in ("gates", "pool_out.weight", "token_proj.weight", "value_table.weight", "field_table.weight"):
        grad = dict(encoder.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    # Both paths carry gradient to the chosen value's row.
    row = int(encoder.offsets[tax.field_ids.index("style.school")]) + 1 + \
        tax.field("style.school").value_ids.index("cel_90s")
    assert encoder.value_table.weight.grad[row].abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_gradients(tax: Taxonomy) -> None:
    grads = []
    for checkpointing in (False, True):
        transformer = tiny_wan()
        if checkpointing:
            transformer.enable_gradient_checkpointing()
        torch.manual_seed(0)
        encoder = randomize(TagEncoder.for_transformer(transformer, tax, hidden_dim=16))
        attach_tag_encoder(transformer, encoder).set_tags([STYLE_A, STYLE_B])
        transformer(**wan_inputs()).sample.square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in encoder.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and grads[0].abs().sum() > 0


def test_folded_output_projection_matches_the_module_path() -> None:
    from engine.core.conditioning import _fold_out

    torch.manual_seed(0)
    linear = torch.nn.Linear(12, 7)
    v = torch.randn(2, 5, 3, 4)  # (B, F, H, d): 3 heads of 4
    wrapped = torch.nn.Sequential(linear)  # no .weight: the path taken for quantised / offloaded layers
    direct, through = _fold_out(linear, v), _fold_out(wrapped, v)
    assert direct.shape == (2, 15, 7)
    assert torch.allclose(direct, through, atol=1e-6)
    # Row h*F+f is head h's share of W_o applied to value f.
    assert torch.allclose(direct[1, 2 * 5 + 3], linear.weight[:, 8:12] @ v[1, 3, 2], atol=1e-6)


def _train(tax: Taxonomy, use_tags: bool, steps: int = 80, freeze: str | None = None) -> tuple[float, float]:
    """Regress a frozen tiny Wan's output to a colour decided by style.school: +c or -c."""
    transformer = tiny_wan(patch=(1, 1, 1), head_dim=16)
    torch.manual_seed(0)
    encoder = TagEncoder.for_transformer(transformer, tax, hidden_dim=32)
    channel = attach_tag_encoder(transformer, encoder)
    g = torch.Generator().manual_seed(0)
    batch = 4
    x = torch.randn(batch, 16, 1, 4, 4, generator=g)
    t = torch.rand(batch, generator=g) * 1000
    text = torch.zeros(batch, 8, 32)
    which = torch.arange(batch) % 2
    colour = torch.randn(16, generator=g)
    target = (torch.stack([colour, -colour])[which])[:, :, None, None, None].expand_as(x)
    tags = encode_tags(tax, [{"style.school": ("cel_90s", "ink_wash")[i]} for i in which.tolist()])
    channel.set_tags(tags if use_tags else tags.unset())  # baseline: same model, tags always unset
    params = [p for n, p in encoder.named_parameters() if not (freeze and n.startswith(freeze))]
    opt = torch.optim.Adam(params, lr=3e-2)
    losses = []
    for _ in range(steps):
        loss = F.mse_loss(transformer(x, t, text).sample, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], sum(losses[-5:]) / 5


def test_short_training_run_shows_the_channel_carries_the_tag(tax: Taxonomy) -> None:
    start, with_tags = _train(tax, use_tags=True)
    start_b, without = _train(tax, use_tags=False)
    assert start == start_b  # identical at init: the tags changed nothing yet
    assert with_tags < 0.1 * start  # it learns the tag-dependent target...
    assert with_tags < 0.2 * without  # ...which a tag-blind (bias-only) channel cannot
    # Each path alone carries the tag too: cross-attention only (pooled frozen at 0), AdaLN only (gates
    # at 0). Alone each is limited by what this 2-block model can express (about 0.5 and 0.7 of the
    # tag-blind loss here); together they fit the target (about 0.01 of it).
    _, attention_only = _train(tax, use_tags=True, freeze="pool_out")
    _, adaln_only = _train(tax, use_tags=True, freeze="gates")
    assert attention_only < 0.85 * without and adaln_only < 0.85 * without


# ----------------------------------------------------------------------------- checkpoints
def test_save_load_round_trip(tax: Taxonomy, tmp_path: Path) -> None:
    transformer = tiny_wan()
    encoder = randomize(TagEncoder.for_transformer(transformer, tax, hidden_dim=16))
    folder = save_tag_encoder(encoder, tmp_path / "enc")
    config = json.loads((folder / "tag_encoder.json").read_text())
    assert config["taxonomy_version"] == tax.version and config["family"] == "wan"
    assert config["dims"]["text_dim"] == 32 and config["fields"][0]["values"] == list(tax.fields[0].value_ids)
    loaded = load_tag_encoder(folder, tax, "wan")
    inputs = wan_inputs()
    outs = []
    for enc in (encoder, loaded):
        channel = attach_tag_encoder(transformer, enc)
        channel.set_tags([STYLE_A, STYLE_B])
        with torch.no_grad():
            outs.append(transformer(**inputs).sample)
        channel.detach()
    assert torch.equal(outs[0], outs[1])


def test_refused_loads_say_why(tax: Taxonomy, tmp_path: Path) -> None:
    from engine.core.registry import HUNYUAN, WAN

    encoder = TagEncoder(tax, text_dim=8, temb_dim=8, num_sites=2, num_heads=2, family=WAN, hidden_dim=8)
    folder = save_tag_encoder(encoder, tmp_path / "enc")
    with pytest.raises(TagEncoderMismatch, match="'wan' family; the model is 'hunyuanvideo'"):
        load_tag_encoder(folder, tax, HUNYUAN)
    removed = edited_taxonomy(lambda fs: fs["camera.movement"].update(
        values=[v for v in fs["camera.movement"]["values"] if v["id"] != "whip_pan"]), "2.0.0")
    with pytest.raises(TagEncoderMismatch, match="camera.movement=whip_pan") as err:
        load_tag_encoder(folder, removed, "wan")
    assert isinstance(err.value, InvalidRequest) and err.value.field == "tag_encoder"
    assert "2.0.0" in str(err.value) and tax.version in str(err.value)
    renamed = edited_taxonomy(lambda fs: fs["style.era"]["values"][3].update(id="the_two_thousands"), tax.version)
    with pytest.raises(TagEncoderMismatch, match="style.era=two_thousands"):  # decided on ids, not versions
        load_tag_encoder(folder, renamed, "wan")
    regrouped = edited_taxonomy(lambda fs: fs["camera.lens"].update(select="multi"), "1.1.0")
    with pytest.raises(TagEncoderMismatch, match="single/multi select changed for camera.lens"):
        load_tag_encoder(folder, regrouped, "wan")
    with pytest.raises(EngineError, match="no tag encoder"):
        load_tag_encoder(tmp_path / "missing", tax, "wan")


def test_taxonomy_that_only_added_values_loads_with_unset_rows(tax: Taxonomy, tmp_path: Path) -> None:
    encoder = TagEncoder(tax, text_dim=8, temb_dim=8, num_sites=2, num_heads=2, family="wan", hidden_dim=8)
    randomize(encoder)
    folder = save_tag_encoder(encoder, tmp_path / "enc")
    new = {"id": "twenty_twenties", "label": "2020s", "description": "d", "phrase": "p"}
    grown = edited_taxonomy(lambda fs: fs["style.era"]["values"].insert(0, new), "1.1.0")
    loaded = load_tag_encoder(folder, grown, "wan")
    j = grown.field_ids.index("style.era")
    unset_row = int(loaded.offsets[j])
    new_row = unset_row + 1 + grown.field("style.era").value_ids.index("twenty_twenties")
    assert torch.equal(loaded.value_table.weight[new_row], loaded.value_table.weight[unset_row])
    assert torch.equal(loaded.value_table.weight[unset_row], encoder.value_table.weight[int(encoder.offsets[j])])
    # Old values keep their trained rows, so old tags encode exactly as before.
    tags = [STYLE_A, {"style.era": "nineties", "motion.deformation": ["smear_frames"]}]
    before, after = encoder(tags), loaded(tags)
    assert torch.allclose(before.tokens, after.tokens) and torch.allclose(before.pooled, after.pooled)
    assert torch.equal(loaded({"style.era": "twenty_twenties"}).tokens, loaded({}).tokens)


# ------------------------------------------------------------------------- module layout
def test_moved_module_gives_a_clear_error(tax: Taxonomy) -> None:
    import diffusers

    transformer = tiny_wan()
    encoder = TagEncoder.for_transformer(transformer, tax, hidden_dim=8)
    del transformer.condition_embedder  # what a diffusers refactor moving the embedder would look like
    with pytest.raises(TagChannelError) as err:
        attach_tag_encoder(transformer, encoder)
    assert "condition_embedder" in str(err.value) and diffusers.__version__ in str(err.value)
    assert isinstance(err.value, EngineError)

    class Lookalike(torch.nn.Module):  # a transformer-like module with blocks but no embedder
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    with pytest.raises(TagChannelError, match="no module 'condition_embedder"):
        attach_tag_encoder(Lookalike(), encoder)


def test_encoder_must_fit_the_model(tax: Taxonomy) -> None:
    wan = tiny_wan()
    with pytest.raises(TagChannelError, match="cannot drive a WanTransformer3DModel"):
        attach_tag_encoder(wan, TagEncoder.for_transformer(tiny_hunyuan(), tax, hidden_dim=8))
    wrong = TagEncoder(tax, text_dim=32, temb_dim=24, num_sites=30, num_heads=2, family="wan", hidden_dim=8)
    with pytest.raises(TagChannelError, match="num_sites 30 \\(model: 2\\)"):
        attach_tag_encoder(wan, wrong)
    channel = attach_tag_encoder(wan, TagEncoder.for_transformer(wan, tax, hidden_dim=8))
    with pytest.raises(TagChannelError, match="already has a tag channel"):
        attach_tag_encoder(wan, TagEncoder.for_transformer(wan, tax, hidden_dim=8))
    channel.set_tags([STYLE_A, STYLE_B, STYLE_A])
    with pytest.raises(InvalidRequest, match="3 tag sets were given for a batch of 2"):
        wan(**wan_inputs())


# ------------------------------------------------------------------------------- guidance
@pytest.mark.parametrize("family", ["wan", "hunyuanvideo"])
def test_tag_guidance_branches_follow_the_formula(tax: Taxonomy, family: str) -> None:
    transformer, inputs = (tiny_wan(), wan_inputs()) if family == "wan" else (tiny_hunyuan(), hunyuan_inputs())
    channel = attach_tag_encoder(transformer, randomize(TagEncoder.for_transformer(transformer, tax, hidden_dim=16)))
    with torch.no_grad():
        channel.set_tags([STYLE_A, STYLE_B])
        v_full = transformer(**inputs).sample
        channel.set_tags(encode_tags(tax, [STYLE_A, STYLE_B]).unset())
        v_text = transformer(**inputs).sample
        channel.clear()
        g_text, g_tag = 5.0, 3.0
        with tags_for_call(channel, [STYLE_A, STYLE_B], tag_guidance_scale=g_tag, text_guidance_scale=g_text):
            with transformer.cache_context("cond"):
                cond = transformer(**inputs, return_dict=False)[0]  # tuple output
                cond_dict = transformer(**inputs).sample  # Transformer2DModelOutput
            with transformer.cache_context("uncond"):
                uncond = transformer(**inputs).sample
        # The pipeline then forms v_u + g_text (cond - v_u) = v_u + g_text (v_text - v_u) + g_tag (v_full - v_text).
        assert torch.allclose(cond, v_text + (g_tag / g_text) * (v_full - v_text), atol=1e-5)
        assert torch.equal(cond, cond_dict) and cond.shape == v_full.shape
        assert torch.allclose(uncond, v_text, atol=1e-6)  # same inputs here: the uncond call has tags unset
        assert channel._tags is None and "cache_context" not in transformer.__dict__  # restored
        with tags_for_call(channel, [STYLE_A, STYLE_B], tag_guidance_scale=None, text_guidance_scale=g_text):
            with transformer.cache_context("cond"):  # no third branch: cond has the tags, uncond has none
                assert torch.equal(transformer(**inputs).sample, v_full)
    with pytest.raises(InvalidRequest):
        with tags_for_call(channel, STYLE_A, tag_guidance_scale=-1.0):
            pass


def test_text_guidance_scale_is_read_like_the_pipeline_reads_it() -> None:
    class WanLike:
        def __call__(self, prompt: str = "", guidance_scale: float = 5.0,
                     guidance_scale_2: float | None = None) -> None:
            pass

    class HunyuanLike:
        def __call__(self, prompt: str = "", negative_prompt: str | None = None, true_cfg_scale: float = 1.0,
                     guidance_scale: float = 6.0) -> None:
            pass

    assert pipeline_text_guidance(WanLike(), {}) == 5.0
    assert pipeline_text_guidance(WanLike(), {"guidance_scale": 0.5}) == 1.0  # no CFG below 1
    assert pipeline_text_guidance(WanLike(), {"guidance_scale_2": 3.0}, second_stage=True) == 3.0
    assert pipeline_text_guidance(HunyuanLike(), {"true_cfg_scale": 4.0}) == 1.0  # no negative prompt: no CFG
    assert pipeline_text_guidance(HunyuanLike(), {"true_cfg_scale": 4.0, "negative_prompt": "blurry"}) == 4.0


def test_generate_with_tags_on_the_preview_pipeline(tax: Taxonomy) -> None:
    from engine.core.preview import build_preview_pipeline

    pipe = build_preview_pipeline()
    encoder = randomize(TagEncoder.for_transformer(pipe.transformer, tax, hidden_dim=16))
    channel = attach_tag_encoder(pipe.transformer, encoder)
    calls: list[tuple[str | None, int]] = []

    def spy(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        calls.append((channel._guidance.branch if channel._guidance else None, kwargs["hidden_states"].shape[0]))

    spy_handle = pipe.transformer.register_forward_pre_hook(spy, with_kwargs=True)
    common = dict(prompt="a girl runs across a rooftop", height=32, width=32, num_frames=5, num_inference_steps=2,
                  output_type="latent", generator=torch.Generator().manual_seed(0))
    out = generate_with_tags(pipe, channel, STYLE_A, tag_guidance_scale=3.0, guidance_scale=5.0, **common)
    assert out.frames.shape[0] == 1
    assert calls == [("cond", 2), ("uncond", 1)] * 2  # cond runs [full; text] as one batch
    assert channel._tags is None and channel._guidance is None  # nothing left behind for the next call
    spy_handle.remove()
    # The same generation without tags differs; with a fresh (identity) encoder it does not.
    plain = pipe(guidance_scale=5.0, **{**common, "generator": torch.Generator().manual_seed(0)}).frames
    assert not torch.allclose(out.frames, plain)
    channel.detach()
    fresh = attach_tag_encoder(pipe.transformer, TagEncoder.for_transformer(pipe.transformer, tax, hidden_dim=16))
    same = generate_with_tags(pipe, fresh, STYLE_A, guidance_scale=5.0,
                              **{**common, "generator": torch.Generator().manual_seed(0)}).frames
    assert torch.equal(same, plain)
    with pytest.raises(TagChannelError, match="does not use"):
        other = tiny_wan()
        generate_with_tags(pipe, attach_tag_encoder(other, TagEncoder.for_transformer(other, tax, hidden_dim=8)),
                           STYLE_A, **common)
