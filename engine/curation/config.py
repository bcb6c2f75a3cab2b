"""The curation config: one frozen, typed tree loaded from YAML (or built in code).

Every section is a frozen dataclass; `CurationConfig.from_dict` / `load_config` refuse unknown
keys (naming the key and the allowed ones) and bad values (`InvalidRequest` whose field is the
dotted path, e.g. ``clips.max_s``). The defaults are the PTTA recipe (3-5 s clips, alpha 0.7,
theta 10) with the scales of docs/curation.md.

Each stage hashes only its own sections (`stage_fingerprint`), so changing a selection
threshold re-runs selection but not the optical flow.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import InvalidRequest
from ..core.toolkit.config import Section, build, limits, plain

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".ts", ".mts",
                                     ".flv", ".wmv", ".mpg", ".mpeg", ".gif")
DETECTORS = ("content", "adaptive")
CUT_MODES = ("auto", "copy", "reencode")
EXECUTORS = ("local", "ray")  # where the per-clip stages run: this machine's processes, or a Ray cluster
FLOW_METHODS = ("dis", "raft")
DIS_PRESETS = ("ultrafast", "fast", "medium")
PIXEL_STATISTICS = ("mean", "median", "p90")
AESTHETIC_SCORERS = ("laion", "tiny", "none")
CAPTIONERS = ("qwen2.5-vl", "none")
STAGES = ("ingest", "shots", "clips", "motion", "aesthetic", "select", "caption", "manifest")


def _check(cond: bool, name: str, message: str) -> None:
    if not cond:
        raise InvalidRequest(name, message)


@dataclass(frozen=True)
class InputConfig(Section):
    """Where the raw footage is: folders (searched recursively) and/or single files."""

    paths: tuple[str, ...] = ()
    recursive: bool = True
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS

    def check(self) -> None:
        for ext in self.extensions:
            _check(ext.startswith(".") and len(ext) > 1, "extensions", f"'{ext}' must start with a dot, e.g. '.mp4'")


@dataclass(frozen=True)
class ShotConfig(Section):
    """Scene detection with PySceneDetect. `threshold` None = the detector's own default
    (ContentDetector 27, AdaptiveDetector 3.0)."""

    detector: str = field(default="content", metadata=limits(choices=DETECTORS))
    threshold: float | None = field(default=None, metadata=limits(above=0))
    min_shot_s: float = field(default=0.5, metadata=limits(min=0))


@dataclass(frozen=True)
class ClipConfig(Section):
    """Clips inside shots: lengths in seconds; how they are cut (see docs: keyframes vs exact)."""

    min_s: float = field(default=3.0, metadata=limits(above=0))
    max_s: float = 5.0
    target_s: float = 4.0
    # skip frames next to a cut: dissolves and detector latency live there
    shot_margin_frames: int = field(default=2, metadata=limits(min=0))
    cut_mode: str = field(default="auto", metadata=limits(choices=CUT_MODES))
    crf: int = field(default=18, metadata=limits(min=0, max=51))
    # all: every planned clip is cut, then analysed from its file; selected: the clips are analysed
    # from the source itself (one pass per source) and only the selected ones are cut (docs/curation.md)
    cut: str = field(default="selected", metadata=limits(choices=("all", "selected")))

    def check(self) -> None:
        _check(self.max_s >= self.min_s, "max_s", f"must be at least min_s ({self.min_s}), got {self.max_s}")
        _check(self.min_s <= self.target_s <= self.max_s, "target_s",
               f"must lie between min_s ({self.min_s}) and max_s ({self.max_s}), got {self.target_s}")


@dataclass(frozen=True)
class HoldConfig(Section):
    """Held-frame detection: a frame repeats the previous drawing when the largest 3x3-averaged
    absolute grey-level difference (0-255) between them, at `size` px on the long side, is below
    `threshold`."""

    threshold: float = field(default=10.0, metadata=limits(above=0))
    size: int = field(default=160, metadata=limits(min=16, max=2048))
    # exposures this long (at 24 fps) count as holds, not timing
    long_hold_frames: int = field(default=4, metadata=limits(min=4))

    def check(self) -> None:
        _check(self.threshold < 255, "threshold", f"must be between 0 and 255 grey levels, got {self.threshold}")


@dataclass(frozen=True)
class MotionConfig(Section):
    """Dense optical flow between consecutive drawings (held frames skipped)."""

    method: str = field(default="dis", metadata=limits(choices=FLOW_METHODS))
    preset: str = field(default="medium", metadata=limits(choices=DIS_PRESETS))
    # flow at <= 256 px: the score is a frame-wide mean in % of the diagonal, which needs no fine detail;
    # a quarter of the DIS work of 512 px (docs/curation.md, "Flow resolution")
    max_side: int = field(default=256, metadata=limits(min=32, max=4096))
    pixel_statistic: str = field(default="mean", metadata=limits(choices=PIXEL_STATISTICS))
    raft_weights: str | None = None  # a local .pth of torchvision's raft_large; None = torch hub cache


@dataclass(frozen=True)
class AestheticConfig(Section):
    """Aesthetic scorer: `laion` = LAION improved aesthetic predictor (CLIP ViT-L/14 + MLP head),
    `tiny` = randomly initialised test scorer, `none` = no aesthetic term (see docs)."""

    scorer: str = field(default="laion", metadata=limits(choices=AESTHETIC_SCORERS))
    frames: int = field(default=4, metadata=limits(min=1, max=64))
    clip_model: str = "openai/clip-vit-large-patch14"
    head_weights: str | None = None  # sac+logos+ava1-l14-linearMSE.pth
    device: str = field(default="cpu", metadata=limits(choices=("cpu", "cuda", "mps")))
    seed: int = 0  # the tiny scorer's initialisation


@dataclass(frozen=True)
class SelectionConfig(Section):
    """S = alpha * S_optical + (1 - alpha) * S_aesthetic >= theta, plus hard filters."""

    alpha: float = field(default=0.7, metadata=limits(min=0.0, max=1.0))
    theta: float = 10.0
    # S_optical is flow in px per drawing at 800x450 (PTTA's size)
    reference_diagonal: float = field(default=918.0, metadata=limits(above=0))
    min_motion: float = field(default=0.05, metadata=limits(min=0))  # % of diagonal per drawing; below = static
    max_motion: float = 25.0  # above = flashes, cuts, broken flow
    min_width: int = field(default=256, metadata=limits(min=0))
    min_height: int = field(default=144, metadata=limits(min=0))
    # letterbox / pillarbox: black share of height or of width
    max_border: float = field(default=0.10, metadata=limits(min=0.0, max=1.0))
    black_level: int = field(default=24, metadata=limits(min=0, max=255))
    text_filter: bool = False  # needs an OCR engine; none is supported here (see docs)

    def check(self) -> None:
        _check(self.max_motion > self.min_motion, "max_motion",
               f"must be above min_motion ({self.min_motion}), got {self.max_motion}")
        _check(not self.text_filter, "text_filter",
               "needs an OCR engine and none is installed or supported yet; set it to false")


@dataclass(frozen=True)
class CaptionConfig(Section):
    """AniCaption: a VLM writes PKS tags + narrative as JSON constrained to the taxonomy."""

    captioner: str = field(default="qwen2.5-vl", metadata=limits(choices=CAPTIONERS))
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"  # hub id (read from the local cache) or a local folder
    frames: int = field(default=8, metadata=limits(min=1, max=64))
    max_new_tokens: int = field(default=512, metadata=limits(min=16, max=8192))
    only_selected: bool = True
    device: str = field(default="auto", metadata=limits(choices=("auto", "cpu", "cuda", "mps")))


@dataclass(frozen=True)
class CurationConfig(Section):
    """Everything one curation run needs; `output_dir` holds clips, state, manifest and report."""

    output_dir: str = "curation"
    input: InputConfig = field(default_factory=InputConfig)
    workers: int = field(default=1, metadata=limits(min=1, max=256))
    progress: bool = True
    executor: str = field(default="local", metadata=limits(choices=EXECUTORS))
    ray_address: str | None = None  # e.g. ray://head:10001; None: a cluster already running here, or a new local one
    state: str | None = None  # the resumable state: a folder or an fsspec URL (s3://...); None: <output_dir>/state
    taxonomy: str | None = None
    shots: ShotConfig = field(default_factory=ShotConfig)
    clips: ClipConfig = field(default_factory=ClipConfig)
    holds: HoldConfig = field(default_factory=HoldConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    aesthetic: AestheticConfig = field(default_factory=AestheticConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)

    @property
    def out(self) -> Path:
        return Path(self.output_dir).expanduser()

    # ------------------------------------------------------------------------- conversions
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "CurationConfig":
        return build(cls, data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = plain(self)
        return out

    def replace(self, **sections: Any) -> "CurationConfig":
        """A copy with whole sections or top-level values swapped (validated again)."""
        return dataclasses.replace(self, **sections)

    def stage_fingerprint(self, stage: str) -> str:
        """A short hash of the settings a stage's results depend on (its own and upstream ones)."""
        deps = {
            "ingest": (),
            "shots": ("shots", "clips"),
            "clips": ("shots", "clips"),
            "motion": ("shots", "clips", "holds", "motion"),
            "aesthetic": ("shots", "clips", "aesthetic"),
            "caption": ("shots", "clips", "caption", "taxonomy"),
        }[stage]
        data = {name: self.to_dict()[name] for name in deps}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> CurationConfig:
    """Read a YAML config; `overrides` (dotted keys such as ``clips.max_s``) win over the file."""
    from ..core.pks import load_yaml_text

    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidRequest("config", f"{path} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest("config", f"{path} could not be read as UTF-8 text ({exc})") from None
    data = load_yaml_text(text, path.name, "config")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidRequest("config", f"{path.name} must hold a mapping of sections, got {type(data).__name__}")
    return CurationConfig.from_dict(apply_overrides(data, overrides or {}))


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``motion.preset``) in a nested mapping; `None` values are 'not given'."""
    out: dict[str, Any] = json.loads(json.dumps(data, default=str))
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = out
        *parents, leaf = dotted.split(".")
        for name in parents:
            child = node.setdefault(name, {})
            if not isinstance(child, dict):
                raise InvalidRequest(dotted, f"'{name}' is not a section")
            node = child
        node[leaf] = value
    return out
