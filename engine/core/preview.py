"""The built-in `preview` model: a tiny Wan-architecture pipeline with random weights.

It exists so the whole studio (loading, quantization, generation, export, history, UI) runs on
any machine, offline, in seconds. It is built deterministically, written with `save_pretrained`
and then loaded back through the same loader as every real checkpoint, so that path is always
exercised. Its output is noise: every place that shows it says so.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# Bump when the architecture below changes, so stale copies on disk are rebuilt.
PREVIEW_BUILD = 1
_MARKER = "animatrix_preview.json"
TEXT_DIM = 32


def _byte_level_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """A byte-level tokenizer with no merges: covers any text, needs no training or download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<pad>", "</s>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


def build_preview_pipeline():  # -> diffusers.WanPipeline
    """Build the tiny pipeline in memory with fixed seeds (same weights on every machine)."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = _byte_level_tokenizer()
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer), d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    torch.manual_seed(1)
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    torch.manual_seed(2)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                       transformer=transformer)


def build_tiny_two_expert_pipeline(boundary_ratio: float = 0.5):  # -> diffusers.WanPipeline
    """The preview with a second expert (`transformer_2`, its own weights) taking the low-noise steps,
    as Wan2.2 A14B / AnimeGen do: the two-expert path of the Wan family, tiny."""
    import torch
    from diffusers import WanPipeline

    base = build_preview_pipeline()
    torch.manual_seed(4)
    second = type(base.transformer).from_config(base.transformer.config)
    return WanPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                       scheduler=base.scheduler, transformer=base.transformer, transformer_2=second,
                       boundary_ratio=boundary_ratio)


def build_tiny_hunyuan_pipeline():  # -> diffusers.HunyuanVideoPipeline
    """A tiny HunyuanVideo pipeline (Llama + CLIP text, dual- and single-stream blocks), fixed seeds.

    The HunyuanVideo family's counterpart of the preview: tests write it with `save_pretrained` and
    use the folder as a model, so generation, the tag channel and adapters run end to end for it too.
    """
    import torch
    from diffusers import (AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline,
                           HunyuanVideoTransformer3DModel)
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    tokenizer, tokenizer_2 = _byte_level_tokenizer(), _byte_level_tokenizer()
    tokenizer_2.model_max_length = 77
    torch.manual_seed(0)  # three layers: the pipeline reads the hidden states two layers before the last
    llama = LlamaModel(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id, bos_token_id=1,
        eos_token_id=tokenizer.eos_token_id)).eval()
    torch.manual_seed(1)
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer_2), hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=77, projection_dim=8, pad_token_id=tokenizer_2.pad_token_id, bos_token_id=1,
        eos_token_id=tokenizer_2.eos_token_id)).eval()
    torch.manual_seed(2)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        norm_num_groups=4, scaling_factor=0.476986, spatial_compression_ratio=8, temporal_compression_ratio=4)
    torch.manual_seed(3)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1, guidance_embeds=True,
        text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4))
    return HunyuanVideoPipeline(transformer=transformer, vae=vae, text_encoder=llama, tokenizer=tokenizer,
                                text_encoder_2=clip, tokenizer_2=tokenizer_2,
                                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))


def _is_current(target: Path) -> bool:
    try:
        return json.loads((target / _MARKER).read_text()).get("build") == PREVIEW_BUILD
    except (OSError, ValueError):
        return False  # missing or unreadable marker: (re)build


def ensure_preview_model(models_dir: Path) -> Path:
    """Return the folder of the preview model, writing it first if it is missing or stale."""
    target = Path(models_dir) / "preview"
    if _is_current(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if _is_torchrun_helper():
        return _wait_for(target)
    with _build_lock(target.parent / ".preview.lock"):  # torchrun ranks or workers starting at once build it once
        return _build(target)


def _is_torchrun_helper() -> bool:
    """A rank other than 0: transformers writes model files on rank 0 only, so rank 0 builds the folder."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_rank() != 0


def _wait_for(target: Path, timeout_s: float = 900.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while not _is_current(target):
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank 0 did not finish writing the preview model into {target}")
        time.sleep(0.2)
    return target


@contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one process at a time is then the user's to keep
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(target: Path) -> Path:
    if _is_current(target):
        return target
    # Write into a sibling temp folder and swap it in, so a crash never leaves half a model.
    staging = Path(tempfile.mkdtemp(prefix=".preview-", dir=target.parent))
    try:
        build_preview_pipeline().save_pretrained(staging, safe_serialization=True)
        (staging / _MARKER).write_text(json.dumps({"build": PREVIEW_BUILD, "note": "random weights: output is noise"}))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
