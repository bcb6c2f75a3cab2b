"""The models the studio knows: hub repo, family (engine/core/families), defaults and limits."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .errors import InvalidRequest
from .families import FAMILIES, HUNYUAN, WAN, WAN22_5B, WAN22_A14B, ModelFamily, family_of
from .requests import MODEL_LIMITS, GenerationRequest

PREVIEW_ID = "preview"
MINI_ID = "mini"


@dataclass(frozen=True)
class Defaults:
    width: int
    height: int
    num_frames: int
    fps: int
    steps: int
    guidance: float


@dataclass(frozen=True)
class ModelSpec:
    id: str
    label: str
    repo: str
    family: ModelFamily
    defaults: Defaults
    max_frames: int
    max_side: int
    flow_shift: float
    vram_note: str
    local_path: Path | None = None  # set for a folder given instead of a registry id
    is_preview: bool = False
    builtin: str | None = None  # "preview" or "mini": made on this machine, never downloaded
    trained_size: tuple[int, int, int] | None = None  # (width, height, frames) the only size it makes sense at

    def check(self, req: GenerationRequest) -> None:
        """The family's shape rules and this model's limits, on a request with every size set."""
        if req.num_frames is None or req.width is None or req.height is None:
            raise InvalidRequest("request", "frames, width and height must be set before the model's rules apply")
        if self.trained_size is not None:
            w, h, f = self.trained_size
            for name, got, want in (("width", req.width, w), ("height", req.height, h), ("num_frames", req.num_frames, f)):
                if got != want:
                    raise InvalidRequest(name, f"the {self.id} model was trained on {w}x{h} clips of {f} frames only; "
                                               f"got {got}")
        self.family.check_shape(req.num_frames, req.width, req.height, self.max_frames, self.max_side)

    def resolve(self, req: GenerationRequest, seed: int) -> GenerationRequest:
        """Fill every unset setting from this model's defaults (and the given seed), then check it."""
        d = self.defaults
        filled = replace(
            req,
            seed=req.seed if req.seed is not None else seed,
            width=req.width or d.width,
            height=req.height or d.height,
            num_frames=req.num_frames or d.num_frames,
            fps=req.fps or d.fps,
            steps=req.steps or d.steps,
            guidance=req.guidance if req.guidance is not None else d.guidance,
        )
        self.check(filled)
        return filled


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
            "animegen-t2v", "AnimeGen T2V (Wan2.2 A14B anime)", "aidealab/AnimeGen-T2V", WAN22_A14B,
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
            is_preview=True, builtin=PREVIEW_ID,
        ),
        ModelSpec(
            MINI_ID, "Mini (built-in, trained on the studio's world: 32x32, 17 frames)", "built in", WAN,
            Defaults(32, 32, 17, 24, 20, 4.0), max_frames=17, max_side=32, flow_shift=3.0,
            vram_note="about 10 MB; runs on any CPU in seconds; weights trained here (docs/world.md)",
            builtin=MINI_ID, trained_size=(32, 32, 17),
        ),
    )
}


MODEL_LIMITS.update({spec.id: (spec.max_frames, spec.max_side) for spec in REGISTRY.values()})


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
            index_data = json.loads(index.read_text())
        except (OSError, ValueError):
            index_data = {}
        cls_name = index_data.get("_class_name", "") if isinstance(index_data, dict) else ""
        try:
            family = family_of(cls_name)
        except InvalidRequest:
            raise InvalidRequest("model", f"folder {path} holds a {cls_name or 'unknown'} pipeline; supported: "
                                          f"{', '.join(f.pipeline_class for f in FAMILIES.values())}") from None
        second = index_data.get("transformer_2") if isinstance(index_data, dict) else None
        if family is WAN and isinstance(second, list) and second and second[0] is not None:
            family = WAN22_A14B  # a high-noise and a low-noise expert, as Wan2.2 A14B
        base = REGISTRY[family.local_defaults]
        return ModelSpec(
            str(path), f"Local folder {path.name}", str(path), family, base.defaults, base.max_frames,
            base.max_side, base.flow_shift, "depends on the checkpoint", local_path=path,
        )
    raise InvalidRequest(
        "model", f"'{model}' is neither a known model ({', '.join(REGISTRY)}) nor a folder with a model_index.json"
    )
