"""Dual-channel conditioning: PKS tags injected into a diffusers video transformer.

Tags reach the transformer through forward hooks on diffusers' own modules: added to the timestep
embedding that drives every block's AdaLN modulation, and as a separate tag segment in every
cross-attention. Exactly the base model at init; tag guidance at inference. Where each family takes
the hooks lives in engine/core/families/; the design, formulas and costs are in docs/conditioning.md.
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from .errors import InvalidRequest
from .families import FAMILIES as _FAMILY_TABLE
from .families import ModelFamily, TagChannelError, TagSites, family_named, family_of, module_at
from .families.base import diffusers_version
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
from .toolkit.numbers import check_number

TagsArg = TagIndices | Sequence[Mapping[str, Any] | None] | Mapping[str, Any]
_MARK = "_animatrix_tag_channel"


def _adapter_for(transformer: nn.Module, family: str | None = None) -> TagSites:
    """The tag sites of `transformer`'s family; refused when an encoder of another family asks for it."""
    try:
        detected: ModelFamily | None = family_of(transformer)
    except InvalidRequest:
        detected = None
    cls_name = type(transformer).__name__
    if family is not None and detected is not None and detected.key != family:
        raise TagChannelError(f"a tag encoder for the {family!r} family cannot drive a {cls_name}")
    chosen = detected or (family_named(family) if family is not None else None)
    if chosen is None:
        supported = ", ".join(f.transformer_class for f in _FAMILY_TABLE.values())
        raise TagChannelError(f"{cls_name} is not a supported transformer (supported: {supported})")
    return chosen.tag_sites


def transformer_dims(transformer: nn.Module) -> tuple[str, dict[str, int]]:
    """(family, dims) a TagEncoder needs to drive `transformer`."""
    family = family_of(transformer)
    return family.key, family.tag_sites.dims(transformer)


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
        temb_module = module_at(transformer, self.adapter.temb_path)
        context_module = module_at(transformer, self.adapter.context_path)
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
        fwd = self._fwd
        if fwd is None:
            return None
        def add(x: torch.Tensor) -> torch.Tensor:
            p = fwd.pooled.to(x.device, x.dtype)
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
    weight: Any = getattr(linear, "weight", None)
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
                              f"name its cond/uncond calls (diffusers {diffusers_version()})")
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

    setattr(t, "cache_context", tracking)  # noqa: B010 - an instance attribute over the method, removed after
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
    if tag_guidance_scale is not None:
        check_number("tag_guidance_scale", tag_guidance_scale, lenient=True, low=0, high=30, between=True)
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
        second = get("guidance_scale_2") if second_stage else None
        scale = float(second if second is not None else get("guidance_scale") or 1.0)
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
