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
from pathlib import Path

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


def ensure_preview_model(models_dir: Path) -> Path:
    """Return the folder of the preview model, writing it first if it is missing or stale."""
    target = Path(models_dir) / "preview"
    marker = target / _MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()).get("build") == PREVIEW_BUILD:
                return target
        except (OSError, ValueError):
            pass  # unreadable marker: rebuild below
    target.parent.mkdir(parents=True, exist_ok=True)
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
