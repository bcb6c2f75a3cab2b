"""What adapters and tag encoders this machine holds, read from their folders without torch.

`AdapterCatalog` finds the fine-tuned adapters (HydraLoRA / LoRA) in `Settings.adapters_dir`,
in `Settings.training_dir` and in the training runs whose validation samples are in the history;
only a found candidate is inspected (which imports torch). `find_tag_encoders` lists the saved
tag encoders, reading only their JSON config.

Nothing here imports torch when the module is imported: the UI builds its page from it.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

from .errors import EngineError, InvalidRequest
from .families import FAMILIES
from .lora_metadata import LoraInfo, lora_info
from .preview import TEXT_DIM
from .registry import ModelSpec, resolve_model
from .settings import Settings

__all__ = ["ADAPTER_CONFIG", "AdapterCatalog", "AdapterEntry", "HistoryReader", "TAG_ENCODER_CONFIG",
           "TAG_ENCODER_WEIGHTS", "TagEncoderEntry", "find_tag_encoders", "inspect_tag_encoder", "tag_encoder_family",
           "tag_encoder_roots", "tag_encoders_for"]

log = logging.getLogger(__name__)


class _Run(Protocol):
    @property
    def checkpoint(self) -> str | None: ...


class _Page(Protocol):
    @property
    def items(self) -> Sequence[_Run]: ...


class HistoryReader(Protocol):
    """What the catalogs read of the history (a `HistoryService`): the recorded training runs.

    A protocol, because the generation core sits below storage and never imports it."""

    def list(self, *, source: str | None = None, limit: int = 50) -> _Page: ...


# -- adapters -------------------------------------------------------------------------
# The file names of engine.core.adapters.io and engine.core.tag_encoder, which import torch; a test pins them equal.
ADAPTER_CONFIG = "animatrix_adapter.json"  # engine.core.adapters.io.CONFIG_NAME
KIND_LABELS = {"hydralora": "HydraLoRA", "lora": "LoRA"}
_STEP_RE = re.compile(r"^step-0*(\d+)$")
_SKIP_DIRS = frozenset({"cache", "samples", "latents", "text", "tag_encoder", "__pycache__"})
_MAX_DEPTH = 4
_MAX_CANDIDATES = 200


@dataclass(frozen=True)
class AdapterEntry:
    """One adapter found on disk, as the Create tab lists it."""

    path: str
    name: str  # short: "my-style", "run-a · step 250", "run-a · final"
    kind: str  # "hydralora" | "lora"
    base_model: str | None  # the model id it was trained on; None for a LoRA made elsewhere
    base_family: str | None
    info: LoraInfo | None = None  # what a LoRA made elsewhere says in its header (triggers, rank, base)

    def label(self, model: str | None = None) -> str:
        """"name · HydraLoRA", plus its base when that is not `model` (the one it is listed for), plus
        what a LoRA made elsewhere says of itself (rank, trigger words, the model it was made for)."""
        said = self.info.summary() if self.info is not None else ""
        base = "" if self.base_model == model else (
            f" · trained on {self.base_model}" if self.base_model else ("" if "made for" in said
                                                                      else " · base model not recorded"))
        return f"{self.name} · {KIND_LABELS.get(self.kind, self.kind)}{base}{said}"

    def misfit(self, spec: ModelSpec) -> str | None:
        """Why this adapter cannot go on `spec` (None: it can, as far as the files tell).

        The family must match; the preview model's layers are tiny, so its adapters fit only it
        and no real checkpoint's adapter fits it. A LoRA made elsewhere records no base: the
        engine checks its layer shapes when it loads, on any model (the built-in one too).
        """
        if self.base_family is None:
            return None
        if self.base_family != spec.family.name:
            return (f"it was trained on a {self.base_family} model ('{self.base_model}'); "
                    f"{spec.id} is {spec.family.name}")
        if (self.base_model == "preview") != spec.is_preview:
            return (f"it was trained on '{self.base_model}', whose layers are another size than {spec.id}'s")
        return None


class AdapterCatalog:
    """Adapters under the studio's folders and in recorded training runs, read with `inspect_adapter`.

    Finding candidates is plain file-system work; only a candidate is inspected (which imports
    torch, so a studio without adapters never does). Results are cached per path and mtime, so a
    rescan on every page load or model change costs a directory walk.
    """

    def __init__(self, settings: Settings, history: "HistoryReader | None" = None) -> None:
        self.settings = settings
        self.history = history
        self._cache: dict[str, tuple[int, AdapterEntry | None]] = {}
        self._lock = threading.Lock()
        self.problems: tuple[tuple[str, str], ...] = ()  # (path, why) of candidates the last scan skipped

    def roots(self) -> tuple[Path, Path]:
        """Where adapters are looked for: `Settings.adapters_dir` (copy files here) and `Settings.training_dir`
        (and `Settings.loras_dir`, where community LoRAs are dropped as in ComfyUI)."""
        return self.settings.adapters_dir, self.settings.training_dir

    # -- finding candidates (no torch) ---------------------------------------------------------------
    def _walk(self, root: Path, *, loose: bool) -> Iterator[Path]:
        """Folders holding our adapter config; with `loose`, also other .safetensors files and folders."""
        if not root.is_dir():
            return
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            depth = len(here.relative_to(root).parts)
            if ADAPTER_CONFIG in files:
                dirs[:] = []  # an adapter folder: its files are its own
                yield here
                continue
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS and depth < _MAX_DEPTH)
            if loose and "state.pt" not in files:  # a training checkpoint's raw tensors are no adapter
                weights = sorted(f for f in files if f.endswith(".safetensors") and not f.startswith("."))
                if here != root and len(weights) == 1:
                    yield here  # a downloaded LoRA folder
                else:
                    yield from (here / f for f in weights)

    def _from_history(self) -> Iterator[Path]:
        """Adapter folders of the training runs whose validation samples are in the history."""
        if self.history is None:
            return
        try:
            records = self.history.list(source="training", limit=200).items
        except Exception as exc:  # noqa: BLE001 - the list of adapters must not break the page
            log.warning("could not read training runs from the history: %s", exc)
            return
        runs: set[Path] = set()
        for record in records:
            if not record.checkpoint:
                continue
            adapter = Path(record.checkpoint)
            # <run>/checkpoints/step-N/adapter: the run's final adapter and other checkpoints too
            if adapter.name == "adapter" and adapter.parent.parent.name == "checkpoints":
                runs.add(adapter.parents[2])
            elif adapter.is_dir():
                yield adapter
        for run in sorted(runs):
            yield from self._walk(run, loose=False)

    def candidates(self) -> list[Path]:
        models, training = self.roots()
        seen: dict[str, Path] = {}
        loras = self.settings.loras_dir
        for path in [*self._walk(models, loose=True), *self._walk(loras, loose=True), *self._walk(training, loose=False),
                     *self._from_history()]:
            seen.setdefault(os.path.realpath(path), path)
            if len(seen) >= _MAX_CANDIDATES:
                log.warning("more than %d adapter candidates; listing the first ones", _MAX_CANDIDATES)
                break
        return list(seen.values())

    # -- reading them -------------------------------------------------------------------------------
    def _name(self, path: Path) -> str:
        models, training = self.roots()
        for root in (models, self.settings.loras_dir, training):
            try:
                rel = path.relative_to(root)
                break
            except ValueError:
                continue
        else:
            rel = path
        parts = list(rel.parts)
        if parts and parts[-1].endswith(".safetensors"):
            parts[-1] = Path(parts[-1]).stem
        if parts and parts[-1] == "adapter":  # a training run: <run>/adapter or <run>/checkpoints/step-N/adapter
            parts.pop()
            step = _STEP_RE.match(parts[-1]) if parts else None
            if step and len(parts) >= 2 and parts[-2] == "checkpoints":
                run = parts[-3] if len(parts) >= 3 else path.parents[3].name
                return f"{run} · step {int(step.group(1))}"
            return f"{parts[-1] if parts else path.parent.name} · final"
        if not parts:
            return path.name
        return " / ".join(parts) if len(parts) <= 2 else f"{parts[0]} / … / {parts[-1]}"

    def inspect(self, path: str | Path) -> AdapterEntry:
        """The entry for any adapter path (listed or typed); InvalidRequest when it is not one."""
        from .adapters import inspect_adapter  # torch: imported only when there is something to read

        p = Path(path).expanduser()
        key = os.path.realpath(p)
        try:
            stamp = p.stat().st_mtime_ns
        except OSError:
            stamp = -1
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] == stamp and cached[1] is not None:
            return cached[1]
        files = inspect_adapter(p)
        base = files.config.base if files.config is not None else None
        info = None
        if files.config is None:
            try:
                info = lora_info(files.weights)
            except (OSError, ValueError) as exc:  # listed all the same; the header only adds a note
                log.warning("could not read the header of %s: %s", files.weights, exc)
        entry = AdapterEntry(str(p), self._name(p), files.kind, base.model_id if base else None,
                             base.family if base else None, info)
        with self._lock:
            self._cache[key] = (stamp, entry)
        return entry

    def scan(self) -> tuple[AdapterEntry, ...]:
        """Every readable adapter found; unreadable candidates are logged and kept in `problems`."""
        candidates = self.candidates()
        if not candidates:
            self.problems = ()
            return ()
        found: list[AdapterEntry] = []
        problems: list[tuple[str, str]] = []
        for path in candidates:
            try:
                found.append(self.inspect(path))
            except (EngineError, OSError, ValueError) as exc:
                problems.append((str(path), str(exc)))
        for where, why in problems:
            log.warning("skipping adapter %s: %s", where, why)
        self.problems = tuple(problems)
        return tuple(found)

    def for_model(self, model: str) -> tuple[AdapterEntry, ...]:
        """The adapters that fit `model`: the ones trained on it first, then by name."""
        try:
            spec = resolve_model(model)
        except InvalidRequest:
            return ()
        fitting = [e for e in self.scan() if e.misfit(spec) is None]
        return tuple(sorted(fitting, key=lambda e: (e.base_model != spec.id, e.name.casefold())))


# -- tag encoders on this machine (dual-channel conditioning) ----------------------------------------
TAG_ENCODER_CONFIG = "tag_encoder.json"  # engine.core.tag_encoder.CONFIG_NAME
TAG_ENCODER_WEIGHTS = "tag_encoder.safetensors"  # engine.core.tag_encoder.WEIGHTS_NAME
PREVIEW_TEXT_DIM = TEXT_DIM  # an encoder of this text width was built for the preview model
FAMILY_LABELS = {key: family.name for key, family in FAMILIES.items()}


def tag_encoder_family(spec: ModelSpec) -> str:
    """'wan' or 'hunyuanvideo' for a model (as engine.core.tag_encoder.family_name says, without torch)."""
    return spec.family.key


@dataclass(frozen=True)
class TagEncoderEntry:
    """One saved tag encoder folder, as the Create tab lists it (only its JSON config is read)."""

    path: str
    name: str  # "my-encoder", "run-a · final", "run-a · step 250"
    family: str | None  # "wan" | "hunyuanvideo"
    text_dim: int | None
    problem: str | None = None  # why its config cannot be used

    @property
    def for_preview(self) -> bool:
        return self.text_dim == PREVIEW_TEXT_DIM

    def label(self) -> str:
        size = "preview-sized" if self.for_preview else FAMILY_LABELS.get(self.family or "", str(self.family))
        return f"{self.name} · {size}"

    def misfit(self, spec: ModelSpec) -> str | None:
        """Why this encoder cannot drive `spec` (None: it can, as far as its config tells)."""
        if self.problem:
            return self.problem
        want = tag_encoder_family(spec)
        if self.family != want:
            return f"{self.name} was trained for the {self.family!r} family; {spec.id} is {want!r}"
        if self.for_preview != spec.is_preview:
            return (f"{self.name} was trained for {'the preview model' if self.for_preview else 'a real checkpoint'}, "
                    f"whose layers are another size than {spec.id}'s")
        return None


def tag_encoder_roots(settings: Settings) -> tuple[Path, Path]:
    """Where tag encoders are looked for: `Settings.tag_encoders_dir` and `Settings.training_dir` (training runs
    write ``<run>/tag_encoder`` and ``<run>/checkpoints/step-N/tag_encoder``)."""
    return settings.tag_encoders_dir, settings.training_dir


def _tag_encoder_name(path: Path, roots: tuple[Path, ...]) -> str:
    if path.name == "tag_encoder":  # a training run's
        step = _STEP_RE.match(path.parent.name)
        if step and path.parent.parent.name == "checkpoints":
            return f"{path.parents[2].name} · step {int(step.group(1))}"
        return f"{path.parent.name} · final"
    for root in roots:
        try:
            return " / ".join(path.relative_to(root).parts) or path.name
        except ValueError:
            continue
    return path.name


def inspect_tag_encoder(path: str | Path, roots: tuple[Path, ...] = ()) -> TagEncoderEntry:
    """The entry for a tag encoder folder (listed or typed); `problem` says why it cannot be used."""
    p = Path(path).expanduser()
    name = _tag_encoder_name(p, roots)
    config_path = p / TAG_ENCODER_CONFIG
    if not config_path.is_file() or not (p / TAG_ENCODER_WEIGHTS).is_file():
        return TagEncoderEntry(str(p), name, None, None,
                               f"no tag encoder in {p} (expected {TAG_ENCODER_CONFIG} and {TAG_ENCODER_WEIGHTS})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        dims = config.get("dims") if isinstance(config.get("dims"), dict) else {}
        text_dim = dims.get("text_dim")
        return TagEncoderEntry(str(p), name, str(config.get("family")),
                               int(text_dim) if isinstance(text_dim, int) else None)
    except (OSError, ValueError, AttributeError) as exc:
        return TagEncoderEntry(str(p), name, None, None, f"{config_path}: {exc}")


def find_tag_encoders(settings: Settings, history: "HistoryReader | None" = None) -> tuple[TagEncoderEntry, ...]:
    """Every tag encoder folder under `tag_encoder_roots` and in the training runs the history records."""
    roots = tag_encoder_roots(settings)
    starts = [r for r in roots if r.is_dir()]
    if history is not None:
        try:
            records = history.list(source="training", limit=200).items
        except Exception as exc:  # noqa: BLE001 - the list must not break the page
            log.warning("could not read training runs from the history: %s", exc)
            records = []
        for record in records:
            ckpt = Path(record.checkpoint) if record.checkpoint else None
            if ckpt is not None and ckpt.name == "adapter" and ckpt.parent.parent.name == "checkpoints":
                starts.append(ckpt.parents[2])  # <run>/checkpoints/step-N/adapter
    seen: dict[str, Path] = {}
    for start in starts:
        if not start.is_dir():
            continue
        for folder, dirs, files in os.walk(start):
            here = Path(folder)
            if TAG_ENCODER_CONFIG in files:
                dirs[:] = []
                seen.setdefault(os.path.realpath(here), here)
                continue
            depth = len(here.relative_to(start).parts)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS - {"tag_encoder"}
                             and depth < _MAX_DEPTH)
            if len(seen) >= _MAX_CANDIDATES:
                break
    entries = [inspect_tag_encoder(p, roots) for p in seen.values()]
    for e in entries:
        if e.problem:
            log.warning("skipping tag encoder %s: %s", e.path, e.problem)
    return tuple(sorted((e for e in entries if not e.problem), key=lambda e: e.name.casefold()))


def tag_encoders_for(settings: Settings, model: str,
                     history: "HistoryReader | None" = None) -> tuple[TagEncoderEntry, ...]:
    """The saved tag encoders that fit `model` (none for a model the registry cannot resolve)."""
    try:
        spec = resolve_model(model)
    except InvalidRequest:
        return ()
    return tuple(e for e in find_tag_encoders(settings, history) if e.misfit(spec) is None)
