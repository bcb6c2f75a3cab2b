"""Dual-channel conditioning: PKS tags injected into a diffusers video transformer.

Narrative text goes through the base model's frozen text encoder into cross-attention, as
without tags. PKS tags go through the trainable `TagEncoder` (engine/core/tag_encoder.py) and reach
the transformer twice, through forward hooks on diffusers' own module boundaries (no model code
is copied or replaced):

Path 2 -- AdaLN modulation (global enforcement)
    The encoder's pooled vector is added to the timestep embedding *before* the projection that
    makes every block's shift/scale/gate: Wan -- a forward hook on
    ``condition_embedder.time_embedder`` (its output is ``temb``; ``time_proj(silu(temb))`` then
    feeds every block's ``scale_shift_table`` and ``temb`` the output head's); HunyuanVideo -- a
    forward hook on ``time_text_embed`` (its output ``temb`` drives every block's
    AdaLayerNormZero and ``norm_out``). So a directive reaches every layer, whatever the text says.

Path 1 -- cross-attention (fine-grained control)
    The encoder's per-field tokens (text-encoder width) enter the base model's own text input
    projection (Wan: ``condition_embedder.text_embedder``; HunyuanVideo: ``context_embedder.proj_in``)
    and are appended to the context every block attends to, as a separate *tag segment*:

        attn_out' = attn_out + W_o · concat_h( tanh(g_{l,h}) · softmax(q_h K_h^T / sqrt(d)) V_h )

    ``q`` is the block's own (normalised) query, captured by a hook on the attention's ``norm_q``
    (not recomputed); ``K, V`` are the tag tokens through that attention's own key/value
    projections and key norm (Wan ``attn2.to_k/to_v/norm_k``; Hunyuan dual-stream
    ``add_k_proj/add_v_proj/norm_added_k``, single-stream ``to_k/to_v/norm_k``); ``W_o`` is the
    output projection without its bias (Hunyuan's single-stream blocks have none: the term is
    added per head before the block's ``proj_out``); ``g`` is `TagEncoder.gates`, one per site and
    head. Only video tokens query the tags; queries carry no RoPE (Wan's cross-attention has none).

How tag tokens stay distinct from padding
    They are never mixed into the text sequence. The text segment -- Wan's zero-padded 512 tokens
    with no mask, Hunyuan's ``encoder_attention_mask`` -- is attended exactly as the base model
    does, and the tag segment has its own softmax, so padding can never take a tag's place or
    vice versa: the segment boundary *is* the mask. (Appending tags to ``encoder_hidden_states``
    and extending ``encoder_attention_mask`` would, in HunyuanVideo, feed them through the token
    refiner's self-attention and masked mean pool -- changing the text tokens and the refiner's
    temb -- and into a mask the model builds from a *count* of valid tokens; and no joint-softmax
    design is both exactly identity at init and trainable: a key bias that makes the tags'
    weight exactly 0 also makes its gradient exactly 0.)

Identity at init (exact, not approximate)
    ``pool_out`` and ``gates`` start at zero. Path 2 then adds +0.0 to temb; path 1 adds
    ``P @ (0 · U) = 0`` to the attention output. Adding IEEE zeros leaves every value unchanged,
    so a wrapped model returns bit-identical outputs until trained. The gate, not the token
    projection, is zero: its gradient is ``<tag attention, dL/d out>`` (non-zero), so training
    starts at once, and the tokens learn as soon as the gates move (no double-zero saddle).

Tag guidance (at inference, `tags_for_call` / `generate_with_tags`)
    Three branches: uncond = negative prompt + tags unset, text = prompt + tags unset,
    full = prompt + tags:

        v = v_uncond + g_text · (v_text − v_uncond) + g_tag · (v_full − v_text)

    The pipeline's own CFG computes ``v_uncond + g_text (v_cond − v_uncond)``; the channel sees
    which call is which through the pipeline's ``transformer.cache_context("cond"/"uncond")``,
    gives the uncond call unset tags, and answers the cond call with
    ``v_cond = v_text + (g_tag / g_text)(v_full − v_text)``, running text and full as one batch
    of twice the size. With ``tag_guidance_scale=None`` g_tag = g_text: no third branch, plain
    CFG over text and tags together (``v_uncond + g (v_full − v_uncond)``). Without pipeline CFG
    (g_text = 1) the formula is ``v_text + g_tag (v_full − v_text)``. Training should use
    `tag_dropout` (with a ``drop_all_rate``) so the unset branch is learned.

Cost per denoising step
    Without autograd the encoder runs once per branch while tags and its weights stay. Inside
    `tags_for_call` (one pipeline call, base weights fixed) each attention's tag K and W_o-folded
    V are also computed at the first step and reused; a step then adds per attention
    ``N·F·D`` (scores) + ``N·H·F·D`` (folded output) multiply-adds for N video tokens, F fields,
    H heads, width D -- about 0.7% of the FLOPs of a Wan2.1-1.3B forward at 480x832x5 frames
    (benchmarks/bench_conditioning.py). Bare `set_tags` (training) recomputes everything.

Usage::

    encoder = TagEncoder.for_transformer(pipe.transformer, load_taxonomy())
    channel = attach_tag_encoder(pipe.transformer, encoder)
    out = generate_with_tags(pipe, channel, {"style.school": "cel_90s"}, tag_guidance_scale=3.0,
                             prompt="...", num_inference_steps=30)
    channel.detach()

Two-expert models (Wan2.2 A14B, ``animegen-t2v``): attach an encoder to ``pipe.transformer`` and
one to ``pipe.transformer_2`` and pass both channels; each gets its stage's CFG scale.

Training: ``channel.set_tags(tag_dropout(encode_tags(tax, batch), 0.1, gen, drop_all_rate=0.1))``
then call the transformer as usual; gradients reach the encoder (base frozen by the caller).
The encoder is not a submodule of the transformer: move it to the device yourself; its outputs
are moved and cast to wherever the hooks use them.
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from .errors import EngineError, InvalidRequest
from .tag_encoder import (  # noqa: F401 - re-exported: the public API of dual-channel conditioning
    FAMILIES,
    TagEncoder,
    TagEncoderMismatch,
    TagEncoderOutput,
    TagIndices,
    encode_tags,
    family_name,
    layout_fingerprint,
    load_tag_encoder,
    save_tag_encoder,
    tag_dropout,
)

TagsArg = TagIndices | Sequence[Mapping[str, Any] | None] | Mapping[str, Any]
_MARK = "_animatrix_tag_channel"


class TagChannelError(EngineError):
    """The transformer lacks a module the tag channel hooks into, or does not fit the encoder."""


def _diffusers_version() -> str:
    try:
        import diffusers

        return diffusers.__version__
    except ImportError:  # pragma: no cover - diffusers is a hard dependency
        return "not installed"


def _module(root: nn.Module, path: str) -> nn.Module:
    """`root.<path>`, or a TagChannelError naming the first missing part and the diffusers version."""
    found: Any = root
    parts = path.split(".")
    for i, part in enumerate(parts):
        found = found._modules.get(part) if isinstance(found, nn.Module) else None
        if not isinstance(found, nn.Module):
            missing = ".".join(parts[: i + 1])
            needed = f" (needed: '{path}')" if missing != path else ""
            raise TagChannelError(
                f"cannot attach the tag encoder: {type(root).__name__} has no module '{missing}'{needed}. The tag "
                f"channel hooks the module layout of diffusers 0.42 (installed: diffusers {_diffusers_version()}); "
                f"a diffusers update may have moved it -- pin diffusers or update engine/core/conditioning.py")
    return found


# --------------------------------------------------------------------------- family adapters
@dataclass
class _Site:
    """One attention whose output receives the tag segment's contribution."""

    path: str
    attn: nn.Module
    query_module: nn.Module  # its output is the query the base uses (captured, never recomputed)
    keys: Callable[[torch.Tensor], torch.Tensor]  # context (B, F, W) -> (B, F, H, d), normalised
    values: Callable[[torch.Tensor], torch.Tensor]  # context -> (B, F, H, d)
    out_linear: nn.Module | None  # W_o, or None where heads go on unprojected (pre_only)
    heads: int


def _head_norm(norm: nn.Module | None, heads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Apply a norm per head (Hunyuan's rms_norm over head_dim)."""
    def apply(x: torch.Tensor) -> torch.Tensor:
        x = x.unflatten(-1, (heads, -1))
        return norm(x) if norm is not None else x
    return apply


def _split(fn: Callable[[torch.Tensor], torch.Tensor], heads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: fn(x).unflatten(-1, (heads, -1))


class _WanAdapter:
    family = "wan"
    temb_path = "condition_embedder.time_embedder"
    context_path = "condition_embedder"

    @staticmethod
    def dims(t: nn.Module) -> dict[str, int]:
        proj = _module(t, "condition_embedder.text_embedder.linear_1")
        blocks = _module(t, "blocks")
        attn = _module(t, "blocks.0.attn2")
        return {"text_dim": proj.in_features, "temb_dim": _module(t, "condition_embedder.time_proj").in_features,
                "num_sites": len(blocks), "num_heads": attn.heads}

    @staticmethod
    def project_context(t: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        return t.condition_embedder.text_embedder(tokens)

    @staticmethod
    def sites(t: nn.Module) -> list[_Site]:
        out = []
        for i in range(len(_module(t, "blocks"))):
            path = f"blocks.{i}.attn2"
            a = _module(t, path)
            for sub in ("to_q", "to_k", "to_v", "norm_q", "norm_k", "to_out.0"):
                _module(t, f"{path}.{sub}")
            out.append(_Site(path, a, a.norm_q, _flat_norm_keys(a), _split(a.to_v, a.heads), a.to_out[0], a.heads))
        return out


def _flat_norm_keys(a: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: a.norm_k(a.to_k(x)).unflatten(-1, (a.heads, -1))


class _HunyuanAdapter:
    family = "hunyuanvideo"
    temb_path = "time_text_embed"
    context_path = "context_embedder"

    @staticmethod
    def dims(t: nn.Module) -> dict[str, int]:
        proj = _module(t, "context_embedder.proj_in")
        emb = _module(t, "time_text_embed.timestep_embedder.linear_2")
        sites = len(_module(t, "transformer_blocks")) + len(_module(t, "single_transformer_blocks"))
        return {"text_dim": proj.in_features, "temb_dim": emb.out_features, "num_sites": sites,
                "num_heads": _module(t, "transformer_blocks.0.attn").heads}

    @staticmethod
    def project_context(t: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        return t.context_embedder.proj_in(tokens)

    @staticmethod
    def sites(t: nn.Module) -> list[_Site]:
        out = []
        for i in range(len(_module(t, "transformer_blocks"))):
            path = f"transformer_blocks.{i}.attn"
            a = _module(t, path)
            for sub in ("to_q", "add_k_proj", "add_v_proj", "to_out.0"):
                _module(t, f"{path}.{sub}")
            keys = (lambda a: lambda x: _head_norm(a.norm_added_k, a.heads)(a.add_k_proj(x)))(a)
            out.append(_Site(path, a, a.norm_q if a.norm_q is not None else a.to_q, keys,
                             _split(a.add_v_proj, a.heads), a.to_out[0], a.heads))
        for i in range(len(_module(t, "single_transformer_blocks"))):
            path = f"single_transformer_blocks.{i}.attn"
            a = _module(t, path)
            for sub in ("to_q", "to_k", "to_v"):
                _module(t, f"{path}.{sub}")
            keys = (lambda a: lambda x: _head_norm(a.norm_k, a.heads)(a.to_k(x)))(a)
            out.append(_Site(path, a, a.norm_q if a.norm_q is not None else a.to_q, keys,
                             _split(a.to_v, a.heads), None, a.heads))
        return out


_ADAPTERS = {"wan": _WanAdapter, "hunyuanvideo": _HunyuanAdapter}


def _adapter_for(transformer: nn.Module, family: str | None = None) -> type:
    cls_name = type(transformer).__name__
    detected = "hunyuanvideo" if "Hunyuan" in cls_name else "wan" if "Wan" in cls_name else None
    if family is not None and detected is not None and detected != family:
        raise TagChannelError(f"a tag encoder for the {family!r} family cannot drive a {cls_name}")
    family = family or detected
    if family is None:
        raise TagChannelError(f"{cls_name} is not a supported transformer (supported: WanTransformer3DModel, "
                              "HunyuanVideoTransformer3DModel)")
    return _ADAPTERS[family]


def transformer_dims(transformer: nn.Module) -> tuple[str, dict[str, int]]:
    """(family, dims) a TagEncoder needs to drive `transformer`."""
    adapter = _adapter_for(transformer)
    return adapter.family, adapter.dims(transformer)


# ------------------------------------------------------------------------------------ channel
@dataclass
class _Guidance:
    text_scale: float
    tag_scale: float | None
    branch: str | None = None  # name of the pipeline's current cache_context ("cond" / "uncond")


@dataclass
class _Forward:
    """State of one transformer call: what the hooks add."""

    tokens: torch.Tensor
    pooled: torch.Tensor
    doubled: float | None = None  # ratio g_tag/g_text when this call runs [full; text] as one batch
    context: torch.Tensor | None = None  # tokens after the base's text projection
    key: tuple | None = None  # set inside tags_for_call without autograd: per-site K/V are reused


def _batch_tensor_args(args: tuple, kwargs: dict, batch: int) -> tuple[tuple, dict]:
    """Repeat every batch-first tensor argument twice along the batch ([a; a])."""
    def twice(x: Any) -> Any:
        return torch.cat([x, x]) if isinstance(x, torch.Tensor) and x.ndim and x.shape[0] == batch else x
    return tuple(twice(a) for a in args), {k: twice(v) for k, v in kwargs.items()}


class TagChannel:
    """Hooks of one tag encoder on one transformer; `set_tags` / `clear` / `detach`."""

    def __init__(self, transformer: nn.Module, encoder: TagEncoder) -> None:
        self.transformer = transformer
        self.encoder = encoder
        self.adapter = _adapter_for(transformer, encoder.family)
        dims = self.adapter.dims(transformer)
        wrong = {k: (encoder.dims[k], v) for k, v in dims.items() if encoder.dims[k] != v}
        if wrong:
            shown = ", ".join(f"{k} {a} (model: {b})" for k, (a, b) in wrong.items())
            raise TagChannelError(f"this tag encoder was built for another {encoder.family} model size: {shown}")
        temb_module = _module(transformer, self.adapter.temb_path)
        context_module = _module(transformer, self.adapter.context_path)
        self.sites = self.adapter.sites(transformer)
        if getattr(transformer, _MARK, None) is not None:
            raise TagChannelError("this transformer already has a tag channel; detach it first")
        self._tags: TagIndices | None = None
        self._guidance: _Guidance | None = None
        self._fwd: _Forward | None = None
        self._queries: dict[int, torch.Tensor] = {}
        self._cache: dict[tuple, tuple] = {}  # encoder outputs for the current tags (no-grad calls)
        self._segments: dict[tuple, Any] = {}  # tag context and per-site K / folded V, one pipeline call
        self.context: torch.Tensor | None = None  # tag segment of the last call (inspection, tests)
        hooks = [
            transformer.register_forward_pre_hook(self._pre_forward, with_kwargs=True),
            transformer.register_forward_hook(self._post_forward, with_kwargs=True),
            temb_module.register_forward_hook(self._add_pooled),
            context_module.register_forward_hook(self._project_context),
        ]
        for i, site in enumerate(self.sites):
            hooks.append(site.query_module.register_forward_hook(self._capture_query(i)))
            hooks.append(site.attn.register_forward_hook(self._add_tag_attention(i)))
        self._handles = hooks
        setattr(transformer, _MARK, self)

    # ----------------------------------------------------------------------- public
    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def set_tags(self, tags: TagsArg) -> None:
        """Tags for the following calls: one set (broadcast) or one per sample of the batch."""
        self._check_attached()
        self._tags = self.encoder.encode(tags)
        self._cache.clear()
        self._segments.clear()

    def clear(self) -> None:
        """No tags: the transformer computes exactly what it computes without the channel."""
        self._tags = None
        self._fwd = None
        self._queries.clear()
        self._cache.clear()
        self._segments.clear()

    def detach(self) -> None:
        """Remove every hook; the transformer is as before `attach_tag_encoder`."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()
        if getattr(self.transformer, _MARK, None) is self:
            delattr(self.transformer, _MARK)

    def _check_attached(self) -> None:
        if not self._handles:
            raise TagChannelError("this tag channel was detached; attach the encoder again")

    # ------------------------------------------------------------------------ hooks
    def _pre_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        self._fwd = None
        self._queries.clear()
        if self._tags is None:
            return None
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if not isinstance(hidden, torch.Tensor):
            raise TagChannelError("the tag channel needs the transformer's hidden_states as a tensor")
        batch = hidden.shape[0]
        tags = self._tags.expand_to(batch)
        ratio = None
        g = self._guidance
        if g is not None and g.branch == "uncond":
            tags = tags.unset()
        elif g is not None and g.tag_scale is not None and g.tag_scale != g.text_scale:
            ratio = g.tag_scale / g.text_scale
            tags = tags.cat(tags.unset())  # [full; text] in one batch
            args, kwargs = _batch_tensor_args(args, kwargs, batch)
        branch = "uncond" if g is not None and g.branch == "uncond" else "cond"
        key = (branch, ratio, batch)
        tokens, pooled, stamp = self._encode(tags, key)
        # Within one pipeline call (tags_for_call) the base's weights cannot change, so what the
        # tag segment becomes in each attention (K, W_o-folded V) is computed at the first step only.
        reuse = g is not None and stamp is not None
        self._fwd = _Forward(tokens, pooled, ratio, key=(*key, stamp) if reuse else None)
        return (args, kwargs) if ratio is not None else None

    def _encode(self, tags: TagIndices, key: tuple) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
        """Encoder outputs; without autograd, reused across denoising steps while tags and weights stay."""
        if torch.is_grad_enabled():
            out = self.encoder(tags)
            return out.tokens, out.pooled, None
        # data_ptr + _version change with any in-place update, load_state_dict or .to() of the encoder.
        stamp = tuple((p.data_ptr(), p._version) for p in self.encoder.parameters())
        hit = self._cache.get(key)
        if hit is None or hit[0] != stamp:
            out = self.encoder(tags)
            hit = self._cache[key] = (stamp, out.tokens, out.pooled)
        return hit[1], hit[2], stamp

    def _post_forward(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        fwd = self._fwd
        if fwd is None or fwd.doubled is None:
            return None
        sample = output[0] if isinstance(output, tuple) else output.sample
        full, text = sample.chunk(2)
        combined = text + fwd.doubled * (full - text)
        if isinstance(output, tuple):
            return (combined, *output[1:])
        output.sample = combined
        return output

    def _add_pooled(self, module: nn.Module, args: tuple, output: Any) -> Any:
        if self._fwd is None:
            return None
        def add(x: torch.Tensor) -> torch.Tensor:
            p = self._fwd.pooled.to(x.device, x.dtype)
            return x + (p.unsqueeze(1) if x.ndim == 3 else p)  # Wan2.2 TI2V: temb is (B, seq, D)
        if isinstance(output, torch.Tensor):
            return add(output)
        return tuple(add(x) if isinstance(x, torch.Tensor) else x for x in output)  # (temb, token_replace_emb)

    def _project_context(self, module: nn.Module, args: tuple, output: Any) -> None:
        fwd = self._fwd
        if fwd is None:
            return None
        # Wan passes (timestep, encoder_hidden_states, ...), Hunyuan (encoder_hidden_states, ...):
        # the text tensor gives the device and dtype the base's text projection expects.
        text = next((a for a in args if isinstance(a, torch.Tensor) and a.ndim == 3), fwd.tokens)
        context = self._segments.get((fwd.key, "context")) if fwd.key else None
        if context is None:
            context = self.adapter.project_context(self.transformer, fwd.tokens.to(text.device, text.dtype))
            if fwd.key:
                self._segments[(fwd.key, "context")] = context
        fwd.context = self.context = context
        return None

    def _capture_query(self, i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if self._fwd is not None:
                self._queries[i] = output
        return hook

    def _add_tag_attention(self, i: int) -> Callable[..., Any]:
        site = self.sites[i]

        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            fwd = self._fwd
            q = self._queries.pop(i, None)
            if fwd is None or q is None or fwd.context is None:
                return None
            hidden = output[0] if isinstance(output, tuple) else output
            b, n = hidden.shape[:2]
            q = q.reshape(b, q.shape[1], site.heads, -1)[:, :n]  # single-stream: queries are [video; text]
            k, u = self._segments.get((fwd.key, i), (None, None)) if fwd.key else (None, None)
            if k is None:
                ctx = fwd.context.to(q.dtype)
                k, v = site.keys(ctx), site.values(ctx)  # (B, F, H, d)
                gate = torch.tanh(self.encoder.gates[i]).to(q.device, q.dtype)
                v = v * gate.view(1, 1, -1, 1)
                # Fold W_o into the values, (B, H*F, out): no extra N x D x D projection per step.
                u = v if site.out_linear is None else _fold_out(site.out_linear, v)
                if fwd.key:
                    self._segments[(fwd.key, i)] = (k, u)
            scores = torch.einsum("bnhd,bfhd->bnhf", q, k) * k.shape[-1] ** -0.5
            p = scores.float().softmax(-1).to(q.dtype)
            if site.out_linear is None:  # heads go on unprojected: the block's proj_out follows
                extra = torch.einsum("bnhf,bfhd->bnhd", p, u).flatten(2)
            else:
                extra = p.flatten(2) @ u
            hidden = hidden + extra.to(hidden.dtype)
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden
        return hook


def _fold_out(linear: nn.Module, v: torch.Tensor) -> torch.Tensor:
    """U[b, h*F+f] = W_o[:, head h] @ v[b, f, h]: the output projection (no bias) of each head's value."""
    b, f, h, d = v.shape
    weight = getattr(linear, "weight", None)
    plain = type(weight) in (torch.Tensor, nn.Parameter) and weight.device == v.device
    if isinstance(linear, nn.Linear) and plain:
        w = weight.to(v.dtype).view(weight.shape[0], h, d)
        return torch.einsum("bfhd,ohd->bhfo", v, w).reshape(b, h * f, -1)
    # Quantised or offloaded weights: go through the module on per-head inputs, minus its bias.
    x = torch.zeros(b, h, f, h, d, dtype=v.dtype, device=v.device)
    idx = torch.arange(h, device=v.device)
    x[:, idx, :, idx, :] = v.permute(2, 0, 1, 3)
    x = x.reshape(b, h * f, h * d)
    return linear(x) - linear(torch.zeros_like(x[:, :1]))


def attach_tag_encoder(transformer: nn.Module, encoder: TagEncoder) -> TagChannel:
    """Hook `encoder` into `transformer` (a diffusers Wan or HunyuanVideo transformer).

    Raises TagChannelError naming the missing module path and the diffusers version when the
    transformer's layout is not the one hooked here, or when the encoder's dims do not fit.
    """
    return TagChannel(transformer, encoder)


# ------------------------------------------------------------------------------- inference
@contextmanager
def _track_branch(channel: TagChannel, guidance: _Guidance) -> Iterator[None]:
    """Wrap the transformer's `cache_context` so the channel knows the cond/uncond call."""
    t = channel.transformer
    original = getattr(t, "cache_context", None)
    if original is None:
        raise TagChannelError(f"{type(t).__name__} has no cache_context(); tag guidance needs the pipeline to "
                              f"name its cond/uncond calls (diffusers {_diffusers_version()})")
    had_own = "cache_context" in t.__dict__

    @contextmanager
    def tracking(name: str, *args: Any, **kwargs: Any) -> Iterator[None]:
        before = guidance.branch
        guidance.branch = name
        try:
            with original(name, *args, **kwargs):
                yield
        finally:
            guidance.branch = before

    t.cache_context = tracking
    try:
        yield
    finally:
        if had_own:
            t.cache_context = original
        else:
            del t.cache_context


@contextmanager
def tags_for_call(channels: TagChannel | Sequence[TagChannel], tags: TagsArg, *,
                  tag_guidance_scale: float | None = None,
                  text_guidance_scale: float | Sequence[float] = 1.0) -> Iterator[None]:
    """Set `tags` on the channels for one pipeline call, with tag guidance (module docstring).

    `text_guidance_scale` is the CFG scale the pipeline itself applies (1 when it applies none),
    one value or one per channel (Wan2.2 A14B: guidance_scale, guidance_scale_2).
    """
    channels = [channels] if isinstance(channels, TagChannel) else list(channels)
    scales = [text_guidance_scale] * len(channels) if isinstance(text_guidance_scale, (int, float)) \
        else list(text_guidance_scale)
    if len(scales) != len(channels):
        raise InvalidRequest("text_guidance_scale", f"give one scale or one per channel ({len(channels)})")
    if tag_guidance_scale is not None and not 0.0 <= float(tag_guidance_scale) <= 30.0:
        raise InvalidRequest("tag_guidance_scale", f"must be between 0 and 30, got {tag_guidance_scale}")
    with _stack(channels, tags, tag_guidance_scale, [max(1.0, float(s)) for s in scales]):
        yield


@contextmanager
def _stack(channels: list[TagChannel], tags: TagsArg, tag_scale: float | None, scales: list[float]) -> Iterator[None]:
    if not channels:
        yield
        return
    channel, scale = channels[0], scales[0]
    guidance = _Guidance(scale, None if tag_scale is None else float(tag_scale))
    channel.set_tags(tags)
    channel._guidance = guidance
    try:
        with _track_branch(channel, guidance), _stack(channels[1:], tags, tag_scale, scales[1:]):
            yield
    finally:
        channel._guidance = None
        channel.clear()


def pipeline_text_guidance(pipe: Any, call_kwargs: Mapping[str, Any], second_stage: bool = False) -> float:
    """The CFG scale `pipe(**call_kwargs)` will apply to its cond/uncond calls (1.0: no CFG)."""
    defaults = {k: p.default for k, p in inspect.signature(pipe.__call__).parameters.items()}
    def get(name: str) -> Any:
        return call_kwargs.get(name, defaults.get(name))
    if "true_cfg_scale" in defaults:  # HunyuanVideo: guidance_scale is the distilled embedding, not CFG
        has_negative = get("negative_prompt") is not None or get("negative_prompt_embeds") is not None
        scale = float(get("true_cfg_scale") or 1.0) if has_negative else 1.0
    else:
        scale = get("guidance_scale_2") if second_stage else None
        scale = float(scale if scale is not None else get("guidance_scale") or 1.0)
    return max(1.0, scale)


def generate_with_tags(pipe: Any, channel: TagChannel | Sequence[TagChannel], tags: TagsArg,
                       tag_guidance_scale: float | None = None, **pipe_call_kwargs: Any) -> Any:
    """Run ``pipe(**pipe_call_kwargs)`` with `tags` on the channel(s) and tag guidance; returns its output.

    Each channel must be attached to ``pipe.transformer`` or ``pipe.transformer_2``.
    """
    channels = [channel] if isinstance(channel, TagChannel) else list(channel)
    scales = []
    for ch in channels:
        if ch.transformer is getattr(pipe, "transformer", None):
            scales.append(pipeline_text_guidance(pipe, pipe_call_kwargs))
        elif ch.transformer is getattr(pipe, "transformer_2", None):
            scales.append(pipeline_text_guidance(pipe, pipe_call_kwargs, second_stage=True))
        else:
            raise TagChannelError("the tag channel is attached to a transformer this pipeline does not use")
    with tags_for_call(channels, tags, tag_guidance_scale=tag_guidance_scale, text_guidance_scale=scales):
        return pipe(**pipe_call_kwargs)
