"""The models the studio knows: hub repo, family, defaults and the family's shape rules."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidRequest

if TYPE_CHECKING:
    from .requests import GenerationRequest

PREVIEW_ID = "preview"


@dataclass(frozen=True)
class Defaults:
    width: int
    height: int
    num_frames: int
    fps: int
    steps: int
    guidance: float


@dataclass(frozen=True)
class FamilyRules:
    """Shape rules that come from the VAE's compression and the transformer's patch size."""

    name: str
    pipeline_class: str
    frame_stride: int  # frames must be stride*k + 1 (temporal VAE compression)
    side_multiple: int  # width/height must be multiples of this (spatial compression x patch)

    def check(self, req: "GenerationRequest", max_frames: int, max_side: int) -> None:
        assert req.num_frames is not None and req.width is not None and req.height is not None
        if (req.num_frames - 1) % self.frame_stride:
            lower = (req.num_frames - 1) // self.frame_stride * self.frame_stride + 1
            raise InvalidRequest(
                "num_frames",
                f"{self.name} models need {self.frame_stride}k+1 frames (its VAE packs {self.frame_stride} frames "
                f"into one latent after the first); {req.num_frames} is not, try {lower} or {lower + self.frame_stride}",
            )
        if req.num_frames > max_frames:
            raise InvalidRequest("num_frames", f"this model takes at most {max_frames} frames, got {req.num_frames}")
        for name in ("width", "height"):
            value = getattr(req, name)
            if value % self.side_multiple:
                raise InvalidRequest(
                    name,
                    f"{self.name} models need sides that are multiples of {self.side_multiple} pixels; "
                    f"{value} is not, try {value // self.side_multiple * self.side_multiple or self.side_multiple}",
                )
            if value > max_side:
                raise InvalidRequest(name, f"this model takes at most {max_side} pixels per side, got {value}")


WAN = FamilyRules("Wan", "WanPipeline", frame_stride=4, side_multiple=16)
WAN22_5B = FamilyRules("Wan2.2-5B", "WanPipeline", frame_stride=4, side_multiple=32)
HUNYUAN = FamilyRules("HunyuanVideo", "HunyuanVideoPipeline", frame_stride=4, side_multiple=16)


@dataclass(frozen=True)
class ModelSpec:
    id: str
    label: str
    repo: str
    family: FamilyRules
    defaults: Defaults
    max_frames: int
    max_side: int
    flow_shift: float
    vram_note: str
    local_path: Path | None = None  # set for a folder given instead of a registry id
    is_preview: bool = False

    def check(self, req: "GenerationRequest") -> None:
        self.family.check(req, self.max_frames, self.max_side)


REGISTRY: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            "wan2.1-t2v-1.3b", "Wan2.1 T2V 1.3B", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", WAN,
            Defaults(832, 480, 81, 16, 50, 5.0), max_frames=129, max_side=1280, flow_shift=3.0,
            vram_note="about 8 GB in bf16; about 5 GB with int8 weights and model offload",
        ),
        ModelSpec(
            "wan2.1-t2v-14b", "Wan2.1 T2V 14B", "Wan-AI/Wan2.1-T2V-14B-Diffusers", WAN,
            Defaults(1280, 720, 81, 16, 50, 5.0), max_frames=129, max_side=1280, flow_shift=5.0,
            vram_note="needs int8/fp8 weights plus group or sequential offload on 24 GB cards",
        ),
        ModelSpec(
            "wan2.2-ti2v-5b", "Wan2.2 TI2V 5B", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", WAN22_5B,
            Defaults(1280, 704, 121, 24, 50, 5.0), max_frames=161, max_side=1280, flow_shift=5.0,
            vram_note="720p on a 24 GB card with model offload",
        ),
        ModelSpec(
            "animegen-t2v", "AnimeGen T2V (Wan2.2 A14B anime)", "aidealab/AnimeGen-T2V", WAN,
            Defaults(832, 480, 81, 16, 40, 4.0), max_frames=129, max_side=1280, flow_shift=3.0,
            vram_note="two 14B experts: int8/fp8 weights and group offload on 24 GB",
        ),
        ModelSpec(
            "hunyuanvideo", "HunyuanVideo", "hunyuanvideo-community/HunyuanVideo", HUNYUAN,
            Defaults(960, 544, 61, 24, 50, 6.0), max_frames=129, max_side=1280, flow_shift=7.0,
            vram_note="about 45 GB in bf16; 24 GB with int8 weights, sequential offload and VAE tiling",
        ),
        ModelSpec(
            PREVIEW_ID, "Preview (built-in, random weights: output is noise)", "built in", WAN,
            Defaults(64, 64, 9, 8, 4, 5.0), max_frames=33, max_side=256, flow_shift=3.0,
            vram_note="a few MB; runs anywhere; random weights, so the output is noise",
            is_preview=True,
        ),
    )
}


def model_ids() -> tuple[str, ...]:
    return tuple(REGISTRY)


def resolve_model(model: str) -> ModelSpec:
    """A registry id, or a local diffusers folder (its family read from model_index.json)."""
    if model in REGISTRY:
        return REGISTRY[model]
    path = Path(model).expanduser()
    index = path / "model_index.json"
    if path.is_dir() and index.is_file():
        import json

        try:
            cls_name = json.loads(index.read_text()).get("_class_name", "")
        except (OSError, ValueError):
            cls_name = ""
        family = HUNYUAN if "Hunyuan" in cls_name else WAN
        if family.pipeline_class != cls_name and cls_name != "WanPipeline":
            raise InvalidRequest("model", f"folder {path} holds a {cls_name or 'unknown'} pipeline; supported: WanPipeline, HunyuanVideoPipeline")
        base = REGISTRY["hunyuanvideo" if family is HUNYUAN else "wan2.1-t2v-1.3b"]
        return ModelSpec(
            str(path), f"Local folder {path.name}", str(path), family, base.defaults, base.max_frames,
            base.max_side, base.flow_shift, "depends on the checkpoint", local_path=path,
        )
    raise InvalidRequest(
        "model", f"'{model}' is neither a known model ({', '.join(REGISTRY)}) nor a folder with a model_index.json"
    )
