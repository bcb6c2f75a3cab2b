"""Applying the adapters of a generation request to a loaded pipeline, and undoing it.

`apply_adapters` is the one entry point the studio calls: it checks every adapter against the
base model before touching the pipeline (a refused adapter leaves the pipeline unchanged),
loads HydraLoRA through our injector and plain LoRA through diffusers' ``load_lora_weights``
(peft backend; community LoRAs in diffusers, ComfyUI/musubi or kohya layouts are read and
checked by layer shapes in `community.py`), and
returns a handle. ``handle.remove()`` restores the pipeline; passing the handle back as
``previous`` reuses it when the adapters did not change (only strengths changing is cheap too).

Merging: plain LoRA can be fused into the weights (``fuse=True``) for speed; HydraLoRA cannot,
because its router weighs the heads per token, so there is no single ΔW to add to W.
"""
from __future__ import annotations

import itertools
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ..errors import InvalidRequest
from ..requests import AdapterRef
from .community import check_file_fits, check_fit, read_lora
from .inject import HydraInjection, inject_hydralora, shape_mismatch
from .io import AdapterConfig, AdapterFiles, inspect_adapter, load_hydralora_weights

if TYPE_CHECKING:
    from ..registry import ModelSpec
    from .io import BaseInfo

_log = logging.getLogger(__name__)
_names = itertools.count(1)

HYDRA_MERGE_REFUSAL = (
    "HydraLoRA adapters cannot be merged (fused) into the model: the router mixes the heads "
    "differently for every token, so the update is not one fixed matrix. Apply it unmerged "
    "(fuse off); plain LoRA adapters can be merged."
)


def can_merge(kind: str) -> bool:
    """Whether an adapter of this kind can be fused into the base weights."""
    return kind == "lora"


def _family_of(base_model_id: str) -> str | None:
    try:
        from ..registry import resolve_model

        return resolve_model(base_model_id).family.name
    except Exception:  # noqa: BLE001 - an unknown id only means "no family to compare"
        return None


def check_base(config: AdapterConfig, transformer: Any, base_model_id: str, where: str) -> None:
    """Refuse an adapter made for another base, with the reason; warn when only the id differs."""
    base = config.base
    family = _family_of(base_model_id)
    if family is not None and base.family and family != base.family:
        raise InvalidRequest("adapters.path", f"{where} was trained on a {base.family} model ('{base.model_id}'); "
                                              f"'{base_model_id}' is a {family} model")
    cls = type(transformer).__name__
    if base.transformer_class and base.transformer_class != cls:
        raise InvalidRequest("adapters.path", f"{where} was trained on a {base.transformer_class} "
                                              f"('{base.model_id}'); this model's transformer is a {cls}")
    why = shape_mismatch(base.layers, transformer)
    if why is not None:
        raise InvalidRequest("adapters.path", f"{where} was trained on '{base.model_id}' and does not fit "
                                              f"'{base_model_id}': {why}")
    if base.model_id != base_model_id:
        _log.warning("%s was trained on '%s'; applying it to '%s' (same layer shapes)", where, base.model_id,
                     base_model_id)


def check_adapters(adapters: Sequence[AdapterRef], spec: "ModelSpec | None" = None,
                   config: dict[str, Any] | None = None) -> tuple[str, ...]:
    """Without a pipeline: every adapter path exists, is what its `kind` says and, when it records its
    base, was trained on `spec`'s family and model size; returns the kinds.

    For refusing a request before it is queued. With the transformer's `config` (its files are here),
    a LoRA made elsewhere is also read in its layout and checked against the layer shapes; otherwise
    that check happens in `apply_adapters`.
    """
    kinds = []
    for i, ref in enumerate(adapters):
        ref = ref if isinstance(ref, AdapterRef) else AdapterRef(**ref)
        files = inspect_adapter(ref.path, ref.kind)
        kinds.append(files.kind)
        if spec is not None:
            why = base_misfit(files.config.base if files.config is not None else None, spec)
            if why is not None:
                raise InvalidRequest("adapters.path", f"{Path(ref.path).name} does not fit {spec.id}: {why}")
            if files.config is None and config is not None:
                check_file_fits(files.weights, spec.family, config, f"adapter {i + 1} ({ref.path})")
    return tuple(kinds)


def base_misfit(base: "BaseInfo | None", spec: "ModelSpec") -> str | None:
    """Why an adapter trained on `base` cannot go on `spec` (None: it can, as far as its files tell).

    The family must match; the preview model's layers are tiny, so its adapters fit only it and no
    real checkpoint's adapter fits it. A LoRA made elsewhere records no base: it is judged by its
    layer shapes when it loads, on any model (the built-in one too).
    """
    if base is None or not base.family:
        return None
    if base.family != spec.family.name:
        return f"it was trained on a {base.family} model ('{base.model_id}'); {spec.id} is {spec.family.name}"
    if (base.model_id == "preview") != spec.is_preview:
        return f"it was trained on '{base.model_id}', whose layers are another size than {spec.id}'s"
    return None


def _signature(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


@dataclass
class _Applied:
    ref: AdapterRef
    kind: str
    weights: Path
    signature: tuple[int, int]
    hydra: HydraInjection | None = None
    lora_name: str | None = None


@dataclass
class AdapterHandle:
    """What `apply_adapters` did to a pipeline; `remove` undoes it."""

    pipe: Any
    base_model_id: str
    fused: bool
    applied: list[_Applied] = field(default_factory=list)
    removed: bool = False

    @property
    def refs(self) -> tuple[AdapterRef, ...]:
        return tuple(a.ref for a in self.applied)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(a.kind for a in self.applied)

    def _same_files(self, adapters: Sequence[AdapterRef]) -> bool:
        if self.removed or len(adapters) != len(self.applied):
            return False
        for ref, a in zip(adapters, self.applied):
            if Path(ref.path).expanduser() != Path(a.ref.path).expanduser() or ref.kind != a.ref.kind:
                return False
            try:
                if _signature(a.weights) != a.signature:
                    return False  # retrained in place: reload
            except OSError:
                return False
        return True

    def matches(self, adapters: Sequence[AdapterRef], base_model_id: str, fuse: bool = False) -> bool:
        """True when applying `adapters` would change nothing."""
        return (self._same_files(adapters) and base_model_id == self.base_model_id and fuse == self.fused
                and all(r.strength == a.ref.strength for r, a in zip(adapters, self.applied)))

    def set_strengths(self, adapters: Sequence[AdapterRef]) -> bool:
        """Change strengths in place (same files, not fused); False when a full re-apply is needed."""
        if self.fused or not self._same_files(adapters):
            return False
        for ref, a in zip(adapters, self.applied):
            a.ref = ref
            if a.hydra is not None:
                a.hydra.set_strength(ref.strength)
        self._set_lora_weights()
        return True

    def _set_lora_weights(self) -> None:
        loras = [a for a in self.applied if a.lora_name is not None]
        if loras:
            self.pipe.set_adapters([a.lora_name for a in loras], adapter_weights=[a.ref.strength for a in loras])

    def remove(self) -> None:
        """Restore the pipeline to how it was before (idempotent)."""
        if self.removed:
            return
        names = [a.lora_name for a in self.applied if a.lora_name is not None]
        if names:
            if self.fused:
                self.pipe.unfuse_lora(components=["transformer"])
            self.pipe.delete_adapters(names)
        for a in self.applied:
            if a.hydra is not None:
                a.hydra.remove()
        self.removed = True


def apply_adapters(
    pipe: Any,
    adapters: Sequence[AdapterRef],
    base_model_id: str,
    *,
    fuse: bool = False,
    previous: AdapterHandle | None = None,
) -> AdapterHandle:
    """Apply `adapters` (LoRA or HydraLoRA, each at its strength) to `pipe.transformer`.

    `previous` is the handle of the last call: it is kept if nothing changed, updated in place if
    only strengths changed, otherwise removed before the new adapters go in (a handle of another
    pipeline object is ignored). With no adapters the call just undoes `previous`. Raises InvalidRequest (field ``adapters.*``) for a missing/unreadable file, a kind that
    does not match the file, an adapter made for another base model (with the reason), or
    ``fuse=True`` with a HydraLoRA adapter. Those checks run before anything changes, so a
    refusal leaves the pipeline as it was (with `previous` still applied). HydraLoRA weights
    stay in float32 whatever the pipeline's dtype (the update is small; the cost is too).
    """
    adapters = tuple(a if isinstance(a, AdapterRef) else AdapterRef(**a) for a in adapters)
    if previous is not None and previous.pipe is not pipe:
        previous = None  # made for a pipeline that was since replaced (another model): nothing to undo here
    if previous is not None and not previous.removed:
        if previous.matches(adapters, base_model_id, fuse):
            return previous
        if not fuse and base_model_id == previous.base_model_id and previous.set_strengths(adapters):
            return previous
    transformer = getattr(pipe, "transformer", None)
    if transformer is None:
        raise InvalidRequest("adapters", f"{type(pipe).__name__} has no transformer to apply adapters to")

    # 1. Check everything first, so a refusal leaves the pipeline untouched.
    planned: list[tuple[AdapterRef, AdapterFiles, dict[str, Any] | None]] = []
    for i, ref in enumerate(adapters):
        files = inspect_adapter(ref.path, ref.kind)
        where = f"adapter {i + 1} ({ref.path})"
        if files.kind == "hydralora" and fuse:
            raise InvalidRequest("adapters.fuse", f"{where}: {HYDRA_MERGE_REFUSAL}")
        tensors: dict[str, Any] | None = None
        if files.config is not None:
            check_base(files.config, transformer, base_model_id, where)
        else:  # made elsewhere: read in its own layout and judged by the model's layer shapes
            tensors = read_lora(type(pipe), files.weights, where)
            check_fit(tensors, transformer, where)
        planned.append((ref, files, tensors))

    if previous is not None:
        previous.remove()
    handle = AdapterHandle(pipe=pipe, base_model_id=base_model_id, fused=False)
    try:
        for i, (ref, files, tensors) in enumerate(planned):
            where = f"adapter {i + 1} ({ref.path})"
            item = _Applied(ref=ref, kind=files.kind, weights=files.weights, signature=_signature(files.weights))
            if files.kind == "hydralora":
                config, tensors = load_hydralora_weights(files)
                injection = inject_hydralora(transformer, config.spec)
                try:
                    injection.load_state_dict(tensors)
                except KeyError as exc:
                    injection.remove()
                    raise InvalidRequest("adapters.path", f"{where}: {exc.args[0]}") from None
                injection.set_strength(ref.strength)
                for p in injection.parameters():
                    p.requires_grad_(False)
                item.hydra = injection
            else:
                item.lora_name = f"animatrix_{next(_names)}"
                with _weights_in_compute_dtype(transformer):
                    _load_lora(pipe, files, item.lora_name, where, tensors)
            handle.applied.append(item)
        handle._set_lora_weights()
        if fuse and any(a.lora_name for a in handle.applied):
            names = [a.lora_name for a in handle.applied if a.lora_name]
            with _weights_in_compute_dtype(transformer):
                pipe.fuse_lora(components=["transformer"], lora_scale=1.0, adapter_names=names)
            handle.fused = True
    except BaseException:
        handle.remove()
        raise
    return handle


@contextmanager
def _weights_in_compute_dtype(transformer: Any) -> Iterator[None]:
    """Layers stored in float8 (fp8 layerwise casting, plain fp8 files) held in their compute dtype while
    LoRA layers go in: peft creates a LoRA's weights in its base layer's dtype, and float8 LoRA weights
    can neither hold the file's values nor multiply on CPU."""
    held = []
    for module in transformer.modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = registry.get_hook("layerwise_casting") if registry is not None else None
        if hook is not None:
            hook.pre_forward(module)
            held.append((module, hook))
    try:
        yield
    finally:
        for module, hook in held:
            hook.post_forward(module, None)


def _load_lora(pipe: Any, files: AdapterFiles, name: str, where: str, tensors: dict[str, Any] | None) -> None:
    if not hasattr(pipe, "load_lora_weights"):
        raise InvalidRequest("adapters.kind", f"{type(pipe).__name__} cannot load LoRA files")
    before = set(pipe.get_list_adapters().get("transformer", [])) if hasattr(pipe, "get_list_adapters") else set()
    try:
        if tensors is not None:  # already read and checked under diffusers' names
            pipe.load_lora_weights(dict(tensors), adapter_name=name)
        else:
            pipe.load_lora_weights(str(files.weights.parent), weight_name=files.weights.name, adapter_name=name)
    except (ValueError, RuntimeError, KeyError, OSError) as exc:
        _delete_quietly(pipe, name)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidRequest("adapters.path", f"{where} could not be loaded as a LoRA for this model: {first}") from None
    after = set(pipe.get_list_adapters().get("transformer", []))
    if name not in after - before:
        _delete_quietly(pipe, name)
        raise InvalidRequest("adapters.path", f"{where}: none of its layers exist in this model "
                                              "(was it made for another architecture?)")


def _delete_quietly(pipe: Any, name: str) -> None:
    try:
        pipe.delete_adapters([name])
    except Exception:  # noqa: BLE001 - cleanup after a failure must not hide it
        pass


def adapter_kind(path: str | os.PathLike[str]) -> str:
    """"lora" or "hydralora" for an adapter file or folder (InvalidRequest when it is neither)."""
    return inspect_adapter(Path(path)).kind
