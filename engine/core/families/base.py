"""What a model family is: the facts every part of the studio needs about Wan or HunyuanVideo.

One `ModelFamily` per family (see `wan.py`, `hunyuan.py`) holds its shape rules (VAE compression,
patch size), the diffusers classes, the linear layers adapters go into, how prompts are encoded,
and where the PKS tag channel hooks in (`TagSites`). Importing this package needs no torch: the
tag-site code imports it lazily, so the registry and the CLI stay light.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..errors import EngineError, InvalidRequest

if TYPE_CHECKING:
    import torch
    from torch import nn


class TagChannelError(EngineError):
    """The transformer lacks a module the tag channel hooks into, or does not fit the encoder."""


@dataclass
class Site:
    """One attention whose output receives the tag segment's contribution."""

    path: str
    attn: "nn.Module"
    query_module: "nn.Module"  # its output is the query the base uses (captured, never recomputed)
    keys: Callable[["torch.Tensor"], "torch.Tensor"]  # context (B, F, W) -> (B, F, H, d), normalised
    values: Callable[["torch.Tensor"], "torch.Tensor"]  # context -> (B, F, H, d)
    out_linear: "nn.Module | None"  # W_o, or None where heads go on unprojected (pre_only)
    heads: int


class TagSites:
    """Where one family's transformer takes the tag channel (docs/conditioning.md explains the paths)."""

    temb_path: str = ""  # module whose output is the timestep embedding feeding every AdaLN
    context_path: str = ""  # module whose forward sees the text tokens (the tag segment is projected there)

    def dims(self, transformer: "nn.Module") -> dict[str, int]:
        raise NotImplementedError

    def dims_from_config(self, config: dict[str, Any]) -> dict[str, int]:
        """The same dims from the transformer's config.json (no weights loaded)."""
        raise NotImplementedError

    def project_context(self, transformer: "nn.Module", tokens: "torch.Tensor") -> "torch.Tensor":
        raise NotImplementedError

    def sites(self, transformer: "nn.Module") -> list[Site]:
        raise NotImplementedError


def diffusers_version() -> str:
    try:
        import diffusers

        return str(diffusers.__version__)
    except ImportError:  # pragma: no cover - diffusers is a hard dependency
        return "not installed"


def module_at(root: "nn.Module", path: str) -> Any:
    """`root.<path>`, or a TagChannelError naming the first missing part and the diffusers version."""
    from torch import nn

    found: Any = root
    parts = path.split(".")
    for i, part in enumerate(parts):
        found = found._modules.get(part) if isinstance(found, nn.Module) else None
        if not isinstance(found, nn.Module):
            missing = ".".join(parts[: i + 1])
            needed = f" (needed: '{path}')" if missing != path else ""
            raise TagChannelError(
                f"cannot attach the tag encoder: {type(root).__name__} has no module '{missing}'{needed}. The tag "
                f"channel hooks the module layout of diffusers 0.42 (installed: diffusers {diffusers_version()}); "
                f"a diffusers update may have moved it -- pin diffusers or update engine/core/families/")
    return found


@dataclass(frozen=True)
class SpeedSupport:
    """What one family's pipelines take of diffusers' speed hooks (engine/core/speed.py applies them).

    `profiles` maps each speed profile to a step cache and its number, measured on the family's
    real-size architecture (docs/benchmarks.md, "Speed profiles"); `refused` says why a cache kind
    diffusers has does not fit this family's pipelines. `probe` is (block list, submodule): the
    submodule of the last block runs once per transformer evaluation that is really computed.
    """

    cache_kinds: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    profiles: tuple[tuple[str, str, float | None], ...] = (("quality", "none", None),)
    probe: tuple[str, str] = ("blocks", "ffn")

    def profile(self, name: str) -> tuple[str, float | None]:
        """(cache kind, number) of a speed profile; a profile the family does not define runs uncached."""
        for profile, kind, number in self.profiles:
            if profile == name:
                return kind, number
        return "none", None

    def why_not(self, kind: str) -> str:
        return dict(self.refused).get(kind, "it has not been tried on this family")


@dataclass(frozen=True)
class FileLayouts:
    """How a community transformer file of the family is read (engine/core/file_layouts.py).

    `original` / `diffusers`: regexes of tensor names only that layout has (the original
    repositories' names, or diffusers' own), after a ComfyUI prefix is stripped. `converter`: the
    function in diffusers' single_file_utils that renames the original layout to diffusers'."""

    original: tuple[str, ...]
    diffusers: tuple[str, ...]
    converter: str


@dataclass(frozen=True)
class ModelFamily:
    """One model family. `key` is what files store (tag encoders, adapters); `name` is what people read."""

    key: str
    name: str
    pipeline_class: str
    transformer_class: str
    frame_stride: int  # frames must be stride*k + 1 (temporal VAE compression)
    side_multiple: int  # width/height must be multiples of this (spatial compression x patch)
    adapter_targets: tuple[str, ...]  # fnmatch globs of the DiT linear layers LoRA / HydraLoRA go into
    encodes_prompt_up_front: bool  # the pipeline takes prompt_embeds (Wan) or needs the prompt text
    tag_sites: TagSites
    has_second_expert: bool = False  # Wan2.2 A14B: transformer_2 takes the low-noise steps
    speed: SpeedSupport = SpeedSupport()  # step caches and speed profiles (engine/core/speed.py)
    # The registry model whose defaults and limits a local folder of this family borrows (engine/core/registry.py).
    local_defaults: str = ""
    file_layouts: FileLayouts | None = None  # None: single transformer files are read as they are

    def check_shape(self, num_frames: int, width: int, height: int, max_frames: int, max_side: int) -> None:
        """The family's shape rules, refused with the rule and the nearest values that work."""
        # Limits before the stride rule: "try 9997" is no help when the model stops at 33 frames.
        if num_frames > max_frames:
            raise InvalidRequest("num_frames", f"this model takes at most {max_frames} frames, got {num_frames}")
        for name, value in (("width", width), ("height", height)):
            if value > max_side:
                raise InvalidRequest(name, f"this model takes at most {max_side} pixels per side, got {value}")
            if value < self.side_multiple:  # the smallest side is one multiple: the range the form's hint shows
                raise InvalidRequest(name, f"must be from {self.side_multiple} to {max_side} pixels, got {value}")
        if (num_frames - 1) % self.frame_stride:
            lower = (num_frames - 1) // self.frame_stride * self.frame_stride + 1
            raise InvalidRequest(
                "num_frames",
                f"{self.name} models need {self.frame_stride}k+1 frames (its VAE packs {self.frame_stride} frames "
                f"into one latent after the first); {num_frames} is not, try {lower} or {lower + self.frame_stride}",
            )
        for name, value in (("width", width), ("height", height)):
            if value % self.side_multiple:
                raise InvalidRequest(
                    name,
                    f"{self.name} models need sides that are multiples of {self.side_multiple} pixels; "
                    f"{value} is not, try {value // self.side_multiple * self.side_multiple or self.side_multiple}",
                )

    def variant(self, **changes: Any) -> "ModelFamily":
        """The same family with other shape rules (e.g. Wan2.2-5B's 32-pixel sides)."""
        from dataclasses import replace

        return replace(self, **changes)
