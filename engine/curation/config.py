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
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import InvalidRequest

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".ts", ".mts",
                                     ".flv", ".wmv", ".mpg", ".mpeg", ".gif")
DETECTORS = ("content", "adaptive")
CUT_MODES = ("auto", "copy", "reencode")
FLOW_METHODS = ("dis", "raft")
DIS_PRESETS = ("ultrafast", "fast", "medium")
PIXEL_STATISTICS = ("mean", "median", "p90")
AESTHETIC_SCORERS = ("laion", "tiny", "none")
CAPTIONERS = ("qwen2.5-vl", "none")
STAGES = ("ingest", "shots", "clips", "motion", "aesthetic", "select", "caption", "manifest")


def _check(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise InvalidRequest(path, message)


@dataclass(frozen=True)
class InputConfig:
    """Where the raw footage is: folders (searched recursively) and/or single files."""

    paths: tuple[str, ...] = ()
    recursive: bool = True
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS

    def validate(self, p: str) -> None:
        for ext in self.extensions:
            _check(ext.startswith(".") and len(ext) > 1, f"{p}.extensions", f"'{ext}' must start with a dot, e.g. '.mp4'")


@dataclass(frozen=True)
class ShotConfig:
    """Scene detection with PySceneDetect. `threshold` None = the detector's own default
    (ContentDetector 27, AdaptiveDetector 3.0)."""

    detector: str = "content"
    threshold: float | None = None
    min_shot_s: float = 0.5

    def validate(self, p: str) -> None:
        _check(self.detector in DETECTORS, f"{p}.detector", f"'{self.detector}' is not one of {', '.join(DETECTORS)}")
        _check(self.threshold is None or self.threshold > 0, f"{p}.threshold", f"must be positive, got {self.threshold}")
        _check(self.min_shot_s >= 0, f"{p}.min_shot_s", f"must be 0 or more, got {self.min_shot_s}")


@dataclass(frozen=True)
class ClipConfig:
    """Clips inside shots: lengths in seconds; how they are cut (see docs: keyframes vs exact)."""

    min_s: float = 3.0
    max_s: float = 5.0
    target_s: float = 4.0
    shot_margin_frames: int = 2  # skip frames next to a cut: dissolves and detector latency live there
    cut_mode: str = "auto"
    crf: int = 18

    def validate(self, p: str) -> None:
        _check(self.min_s > 0, f"{p}.min_s", f"must be positive, got {self.min_s}")
        _check(self.max_s >= self.min_s, f"{p}.max_s", f"must be at least min_s ({self.min_s}), got {self.max_s}")
        _check(self.min_s <= self.target_s <= self.max_s, f"{p}.target_s",
               f"must lie between min_s ({self.min_s}) and max_s ({self.max_s}), got {self.target_s}")
        _check(self.shot_margin_frames >= 0, f"{p}.shot_margin_frames", f"must be 0 or more, got {self.shot_margin_frames}")
        _check(self.cut_mode in CUT_MODES, f"{p}.cut_mode", f"'{self.cut_mode}' is not one of {', '.join(CUT_MODES)}")
        _check(0 <= self.crf <= 51, f"{p}.crf", f"must be from 0 to 51, got {self.crf}")


@dataclass(frozen=True)
class HoldConfig:
    """Held-frame detection: a frame repeats the previous drawing when the largest 3x3-averaged
    absolute grey-level difference (0-255) between them, at `size` px on the long side, is below
    `threshold`."""

    threshold: float = 10.0
    size: int = 160
    long_hold_frames: int = 4  # exposures this long (at 24 fps) count as holds, not timing

    def validate(self, p: str) -> None:
        _check(0 < self.threshold < 255, f"{p}.threshold", f"must be between 0 and 255 grey levels, got {self.threshold}")
        _check(16 <= self.size <= 2048, f"{p}.size", f"must be from 16 to 2048 pixels, got {self.size}")
        _check(self.long_hold_frames >= 4, f"{p}.long_hold_frames", f"must be 4 or more, got {self.long_hold_frames}")


@dataclass(frozen=True)
class MotionConfig:
    """Dense optical flow between consecutive drawings (held frames skipped)."""

    method: str = "dis"
    preset: str = "medium"
    max_side: int = 512
    pixel_statistic: str = "mean"
    raft_weights: str | None = None  # a local .pth of torchvision's raft_large; None = torch hub cache

    def validate(self, p: str) -> None:
        _check(self.method in FLOW_METHODS, f"{p}.method", f"'{self.method}' is not one of {', '.join(FLOW_METHODS)}")
        _check(self.preset in DIS_PRESETS, f"{p}.preset", f"'{self.preset}' is not one of {', '.join(DIS_PRESETS)}")
        _check(32 <= self.max_side <= 4096, f"{p}.max_side", f"must be from 32 to 4096 pixels, got {self.max_side}")
        _check(self.pixel_statistic in PIXEL_STATISTICS, f"{p}.pixel_statistic",
               f"'{self.pixel_statistic}' is not one of {', '.join(PIXEL_STATISTICS)}")


@dataclass(frozen=True)
class AestheticConfig:
    """Aesthetic scorer: `laion` = LAION improved aesthetic predictor (CLIP ViT-L/14 + MLP head),
    `tiny` = randomly initialised test scorer, `none` = no aesthetic term (see docs)."""

    scorer: str = "laion"
    frames: int = 4
    clip_model: str = "openai/clip-vit-large-patch14"
    head_weights: str | None = None  # sac+logos+ava1-l14-linearMSE.pth
    device: str = "cpu"
    seed: int = 0  # the tiny scorer's initialisation

    def validate(self, p: str) -> None:
        _check(self.scorer in AESTHETIC_SCORERS, f"{p}.scorer", f"'{self.scorer}' is not one of {', '.join(AESTHETIC_SCORERS)}")
        _check(1 <= self.frames <= 64, f"{p}.frames", f"must be from 1 to 64, got {self.frames}")
        _check(self.device in ("cpu", "cuda", "mps"), f"{p}.device", f"'{self.device}' is not one of cpu, cuda, mps")


@dataclass(frozen=True)
class SelectionConfig:
    """S = alpha * S_optical + (1 - alpha) * S_aesthetic >= theta, plus hard filters."""

    alpha: float = 0.7
    theta: float = 10.0
    reference_diagonal: float = 918.0  # S_optical is flow in px per drawing at 800x450 (PTTA's size)
    min_motion: float = 0.05  # % of diagonal per drawing; below = static
    max_motion: float = 25.0  # above = flashes, cuts, broken flow
    min_width: int = 256
    min_height: int = 144
    max_border: float = 0.10  # letterbox / pillarbox: black share of height or of width
    black_level: int = 24
    text_filter: bool = False  # needs an OCR engine; none is supported here (see docs)

    def validate(self, p: str) -> None:
        _check(0.0 <= self.alpha <= 1.0, f"{p}.alpha", f"must be from 0 to 1, got {self.alpha}")
        _check(self.reference_diagonal > 0, f"{p}.reference_diagonal", f"must be positive, got {self.reference_diagonal}")
        _check(self.min_motion >= 0, f"{p}.min_motion", f"must be 0 or more, got {self.min_motion}")
        _check(self.max_motion > self.min_motion, f"{p}.max_motion", f"must be above min_motion ({self.min_motion}), got {self.max_motion}")
        _check(self.min_width >= 0 and self.min_height >= 0, f"{p}.min_width", "sizes must be 0 or more")
        _check(0.0 <= self.max_border <= 1.0, f"{p}.max_border", f"must be from 0 to 1, got {self.max_border}")
        _check(0 <= self.black_level <= 255, f"{p}.black_level", f"must be from 0 to 255, got {self.black_level}")
        _check(not self.text_filter, f"{p}.text_filter",
               "needs an OCR engine and none is installed or supported yet; set it to false")


@dataclass(frozen=True)
class CaptionConfig:
    """AniCaption: a VLM writes PKS tags + narrative as JSON constrained to the taxonomy."""

    captioner: str = "qwen2.5-vl"
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"  # hub id (read from the local cache) or a local folder
    frames: int = 8
    max_new_tokens: int = 512
    only_selected: bool = True
    device: str = "auto"

    def validate(self, p: str) -> None:
        _check(self.captioner in CAPTIONERS, f"{p}.captioner", f"'{self.captioner}' is not one of {', '.join(CAPTIONERS)}")
        _check(1 <= self.frames <= 64, f"{p}.frames", f"must be from 1 to 64, got {self.frames}")
        _check(16 <= self.max_new_tokens <= 8192, f"{p}.max_new_tokens", f"must be from 16 to 8192, got {self.max_new_tokens}")
        _check(self.device in ("auto", "cpu", "cuda", "mps"), f"{p}.device", f"'{self.device}' is not one of auto, cpu, cuda, mps")


@dataclass(frozen=True)
class CurationConfig:
    """Everything one curation run needs; `output_dir` holds clips, state, manifest and report."""

    output_dir: str = "curation"
    input: InputConfig = field(default_factory=InputConfig)
    workers: int = 1
    progress: bool = True
    taxonomy: str | None = None
    shots: ShotConfig = field(default_factory=ShotConfig)
    clips: ClipConfig = field(default_factory=ClipConfig)
    holds: HoldConfig = field(default_factory=HoldConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    aesthetic: AestheticConfig = field(default_factory=AestheticConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)

    def __post_init__(self) -> None:
        _check(isinstance(self.output_dir, str) and self.output_dir.strip() != "", "output_dir", "must name a folder")
        _check(1 <= self.workers <= 256, "workers", f"must be from 1 to 256, got {self.workers}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                value.validate(f.name)

    @property
    def out(self) -> Path:
        return Path(self.output_dir).expanduser()

    # ------------------------------------------------------------------------- conversions
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "CurationConfig":
        return _build(cls, {} if data is None else data, "")

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

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


# ------------------------------------------------------------------------------ strict builder
def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise InvalidRequest(prefix or "config", f"must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key, raw in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise InvalidRequest(path, f"unknown key '{key}'; allowed: {', '.join(names)}")
        values[key] = _coerce(hints[key], raw, path)
    try:
        return cls(**values)
    except InvalidRequest as exc:
        if prefix and not exc.field.startswith(prefix):
            raise InvalidRequest(f"{prefix}.{exc.field}", exc.reason) from None
        raise


def _coerce(tp: Any, raw: Any, path: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, raw, path)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if raw is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], raw, path)
    if origin is tuple:
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, (list, tuple)):
            raise InvalidRequest(path, f"must be a list, got {raw!r}")
        item = typing.get_args(tp)[0]
        return tuple(_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(raw))
    if tp is bool:
        if not isinstance(raw, bool):
            raise InvalidRequest(path, f"must be true or false, got {raw!r}")
        return raw
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise InvalidRequest(path, f"must be a whole number, got {raw!r}")
        return raw
    if tp is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw != raw:
            raise InvalidRequest(path, f"must be a number, got {raw!r}")
        return float(raw)
    if tp is str:
        if isinstance(raw, Path):
            return str(raw)
        if not isinstance(raw, str):
            raise InvalidRequest(path, f"must be text, got {raw!r}")
        return raw
    raise InvalidRequest(path, f"unsupported setting type {tp!r}")  # pragma: no cover - a bug here


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
