"""The training config: YAML in, frozen dataclasses out, every value checked with its path.

Unknown keys are refused naming the key (``train.batchsize: unknown setting; known: ...``); a bad
value raises InvalidRequest naming the field (``optimizer.lr``). Relative paths are resolved
against the config file's folder. Defaults follow PTTA: HydraLoRA rank 32, alpha 32, N = 4;
AdamW lr 2e-5, betas (0.9, 0.99), weight decay 0.01. The full reference is docs/training.md.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from ..core.errors import InvalidRequest
from ..core.toolkit.config import Section, build, limits, plain

TagRule = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class DataConfig(Section):
    manifest: str  # a manifest (.jsonl / .parquet) or a folder of videos with same-name .txt captions
    num_frames: int = field(default=33, metadata=limits(min=1, max=1024))  # frames per sample (family rule: 4k+1)
    min_frames: int | None = field(default=None, metadata=limits(min=1))  # shorter clips: fewer frames, down to this
    fps: float | None = field(default=16.0, metadata=limits(min=0.1, max=240))  # resample to this rate; None: every frame
    base_size: tuple[int, int] | None = None  # width, height of the base bucket (default: the model's size)
    buckets: tuple[tuple[int, int], ...] = ()  # explicit (width, height) buckets; empty: automatic
    only_selected: bool = True  # skip manifest rows with selected: false
    caption_dropout: float = field(default=0.0, metadata=limits(min=0.0, max=1.0))  # empty caption (for CFG)
    # Prefix captions with the PKS tag phrases, like the studio's prompts. Default (None): yes without a
    # tag encoder, no with one (the tags then reach the model through their own channel only).
    compile_tags: bool | None = None
    max_text_tokens: int = field(default=512, metadata=limits(min=1, max=4096))


@dataclass(frozen=True)
class CacheConfig(Section):
    dir: str | None = None  # default: <output_dir>/cache
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"


@dataclass(frozen=True)
class AdapterTrainConfig(Section):
    kind: Literal["hydralora", "lora"] = "hydralora"
    rank: int = field(default=32, metadata=limits(min=1, max=1024))
    alpha: float = field(default=32.0, metadata=limits(min=1e-6))
    heads: int = field(default=4, metadata=limits(min=1, max=64))  # N specialist B heads (HydraLoRA)
    router: Literal["learned", "fixed"] = "learned"
    fixed_weights: tuple[float, ...] | None = None  # with router: fixed, one weight per head
    dropout: float = field(default=0.0, metadata=limits(min=0.0, max=0.9))
    targets: tuple[str, ...] = ()  # module-name globs; empty: the family's DiT-block linear layers
    exclude: tuple[str, ...] = ()
    init_from: str | None = None  # continue from a saved adapter (same shape)


@dataclass(frozen=True)
class OptimizerConfig(Section):
    lr: float = field(default=2e-5, metadata=limits(min=0.0, max=1.0))
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = field(default=0.01, metadata=limits(min=0.0, max=1.0))
    eps: float = field(default=1e-8, metadata=limits(min=0.0, max=1.0))
    max_grad_norm: float | None = field(default=1.0, metadata=limits(min=0.0))
    warmup_steps: int = field(default=0, metadata=limits(min=0))


@dataclass(frozen=True)
class TrainConfig(Section):
    batch_size: int = field(default=1, metadata=limits(min=1, max=4096))  # per process
    grad_accum: int = field(default=1, metadata=limits(min=1, max=4096))
    max_steps: int | None = field(default=None, metadata=limits(min=1))  # default: the curriculum's total
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = False
    checkpoint_every: int = field(default=250, metadata=limits(min=1))
    keep_checkpoints: int = field(default=3, metadata=limits(min=1))
    log_every: int = field(default=1, metadata=limits(min=1))
    timestep_sampling: Literal["uniform", "logit_normal"] = "uniform"
    logit_mean: float = 0.0
    logit_std: float = field(default=1.0, metadata=limits(min=1e-6))
    overfit_batch: bool = False  # sanity check: the same batch, noise and timesteps every step
    tensorboard: bool = False  # also log to TensorBoard when it is installed
    hunyuan_guidance: float = field(default=1.0, metadata=limits(min=0.0, max=30.0))  # HunyuanVideo's distilled guidance input


@dataclass(frozen=True)
class StageConfig(Section):
    name: str
    steps: int = field(metadata=limits(min=1))
    deformation: Literal["any", "absent", "present"] = "any"  # motion.deformation tags besides "none"
    motion: tuple[float | None, float | None] | None = None  # raw scores.motion range
    motion_quantile: tuple[float, float] | None = None  # range of the dataset's motion-score quantiles
    min_aesthetic: float | None = None
    require_tags: TagRule = field(default_factory=dict)  # field: values (one must be present; "*": any)
    exclude_tags: TagRule = field(default_factory=dict)  # field: values (none may be present; "*": any)

    def check(self) -> None:
        for name in ("require_tags", "exclude_tags"):
            for key, values in getattr(self, name).items():
                if not values:  # a rule naming no value would silently match nothing
                    raise InvalidRequest(f"{name}.{key}", "must be a value id or a list of value ids, got []")


@dataclass(frozen=True)
class CurriculumConfig(Section):
    enabled: bool = True
    stages: tuple[StageConfig, ...] = ()  # empty: style -> motion -> deformation over train.max_steps
    blend_steps: int = field(default=0, metadata=limits(min=0))  # linear mixing window around each boundary


@dataclass(frozen=True)
class TagEncoderTrainConfig(Section):
    enabled: bool = False
    lr: float = field(default=1e-4, metadata=limits(min=0.0, max=1.0))
    weight_decay: float = field(default=0.0, metadata=limits(min=0.0, max=1.0))
    hidden_dim: int = field(default=256, metadata=limits(min=1, max=65536))
    tag_dropout: float = field(default=0.1, metadata=limits(min=0.0, max=1.0))
    drop_all_rate: float = field(default=0.1, metadata=limits(min=0.0, max=1.0))
    init_from: str | None = None


@dataclass(frozen=True)
class PromptConfig(Section):
    narrative: str
    tags: TagRule = field(default_factory=dict)


@dataclass(frozen=True)
class ValidationConfig(Section):
    every: int | None = field(default=None, metadata=limits(min=0))  # default: train.checkpoint_every; 0: off
    prompts: tuple[PromptConfig, ...] = ()
    negative_prompt: str = field(default="", metadata=limits(empty=True))
    seed: int = field(default=0, metadata=limits(min=0))
    steps: int = field(default=30, metadata=limits(min=1, max=200))
    guidance: float = field(default=5.0, metadata=limits(min=0.0, max=30.0))
    tag_guidance: float | None = field(default=None, metadata=limits(min=0.0, max=30.0))
    width: int | None = None  # default: data.base_size
    height: int | None = None
    num_frames: int | None = None  # default: data.num_frames
    fps: int | None = None  # default: data.fps
    record_history: bool = True  # add the samples to the studio history (source "training")


@dataclass(frozen=True)
class DPOConfig(Section):
    """Flow-DPO on preference pairs (engine/training/dpo.py). With this section the run is a DPO
    run and ``data.manifest`` names a trl or pickapic rating export instead of a clip manifest."""

    beta: float = field(default=500.0, metadata=limits(min=1e-9))
    # base: the model with the adapter off and the tag channel off; initial: a frozen snapshot of
    # everything that trains (adapter and tag encoder) at step 0; auto: initial when the run starts
    # from saved weights (adapter.init_from / tag_encoder.init_from), else base.
    reference: Literal["auto", "base", "initial"] = "auto"
    deformations: str | None = None  # a deformations export (.jsonl): failure marks make pairs and weights
    sources: tuple[Literal["choices", "marks"], ...] = ("choices", "marks")  # where pairs come from
    failure_weight: float = field(default=2.0, metadata=limits(min=1.0, max=100.0))  # latent frames in a failure range
    dimensions: tuple[str, ...] = ()  # rating dimensions whose verdicts count; empty: all
    min_strength: int = field(default=1, metadata=limits(min=1, max=3))  # trl rows: weakest preference kept
    sft_weight: float = field(default=0.0, metadata=limits(min=0.0))  # + weight x flow-matching loss on the winners


@dataclass(frozen=True)
class RWRConfig(Section):
    """Reward-weighted flow matching (engine/training/rwr.py): the clips of ``data.manifest`` are
    weighed by exp(u / temperature), u = the reward model's utility of each clip in ``scores``."""

    scores: str  # JSON Lines {video, utility | score} or the JSON object `reward score --json` prints
    temperature: float = field(default=1.0, metadata=limits(min=1e-3, max=1e3))
    max_weight: float = field(default=10.0, metadata=limits(min=1.0, max=1e6))  # cap after normalising


@dataclass(frozen=True)
class RunConfig(Section):
    model: str  # registry id or a local diffusers folder
    output_dir: str
    data: DataConfig
    seed: int = field(default=0, metadata=limits(min=0, max=2**32 - 1))
    cache: CacheConfig = field(default_factory=CacheConfig)
    adapter: AdapterTrainConfig = field(default_factory=AdapterTrainConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    tag_encoder: TagEncoderTrainConfig = field(default_factory=TagEncoderTrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    dpo: DPOConfig | None = None  # preference optimization instead of fine-tuning (see DPOConfig)
    rwr: RWRConfig | None = None  # reward-weighted fine-tuning on scored clips (see RWRConfig)

    # ----------------------------------------------------------------------- derived
    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)

    @property
    def cache_path(self) -> Path:
        return Path(self.cache.dir) if self.cache.dir else self.output_path / "cache"

    @property
    def validation_every(self) -> int:
        v = self.validation.every
        return self.train.checkpoint_every if v is None else v

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


def _check_run(cfg: RunConfig) -> RunConfig:
    """Checks that involve several fields or the model family; fills the model-dependent defaults."""
    from ..core.registry import resolve_model

    spec = resolve_model(cfg.model)
    fam = spec.family
    if cfg.data.base_size is None:
        size = (spec.defaults.width, spec.defaults.height)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, base_size=size))
    d = cfg.data
    assert d.base_size is not None  # filled just above
    if (d.num_frames - 1) % fam.frame_stride:
        lower = (d.num_frames - 1) // fam.frame_stride * fam.frame_stride + 1
        raise InvalidRequest("data.num_frames", f"{fam.name} models need {fam.frame_stride}k+1 frames; "
                                                f"{d.num_frames} is not, try {lower} or {lower + fam.frame_stride}")
    if d.num_frames > spec.max_frames:
        raise InvalidRequest("data.num_frames", f"this model takes at most {spec.max_frames} frames")
    if d.min_frames is not None and (d.min_frames > d.num_frames or (d.min_frames - 1) % fam.frame_stride):
        raise InvalidRequest("data.min_frames", f"must be {fam.frame_stride}k+1 and at most data.num_frames")
    for i, size in enumerate((d.base_size, *d.buckets)):
        where = "data.base_size" if i == 0 else f"data.buckets[{i - 1}]"
        for side in size:
            if side < fam.side_multiple or side % fam.side_multiple or side > spec.max_side:
                raise InvalidRequest(where, f"{fam.name} sides must be multiples of {fam.side_multiple} "
                                            f"up to {spec.max_side}, got {list(size)}")
    a = cfg.adapter
    if a.router == "fixed" and a.fixed_weights is not None and len(a.fixed_weights) != a.heads:
        raise InvalidRequest("adapter.fixed_weights", f"needs {a.heads} values (one per head), got {len(a.fixed_weights)}")
    if a.fixed_weights is not None and a.router != "fixed":
        raise InvalidRequest("adapter.fixed_weights", "fixed weights replace the router: set adapter.router: fixed")
    b1, b2 = cfg.optimizer.betas
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
        raise InvalidRequest("optimizer.betas", f"both must be in [0, 1), got {[b1, b2]}")
    names = [s.name for s in cfg.curriculum.stages]
    if len(set(names)) != len(names):
        raise InvalidRequest("curriculum.stages", f"stage names must be unique, got {names}")
    for i, s in enumerate(cfg.curriculum.stages):
        q = s.motion_quantile
        if q is not None and not (0.0 <= q[0] <= q[1] <= 1.0):
            raise InvalidRequest(f"curriculum.stages[{i}].motion_quantile", f"must be 0 <= low <= high <= 1, got {list(q)}")
        m = s.motion
        if m is not None and m[0] is not None and m[1] is not None and m[0] > m[1]:
            raise InvalidRequest(f"curriculum.stages[{i}].motion", f"low must not exceed high, got {list(m)}")
    if cfg.dpo is not None and cfg.rwr is not None:
        raise InvalidRequest("rwr", "a run is either DPO on pairs (dpo:) or reward-weighted on scored clips (rwr:)")
    if cfg.dpo is not None:
        from ..storage.models import RATING_DIMENSIONS

        bad = [d for d in cfg.dpo.dimensions if d not in RATING_DIMENSIONS]
        if bad:
            raise InvalidRequest("dpo.dimensions", f"'{bad[0]}' is not one of {', '.join(RATING_DIMENSIONS)}")
        if cfg.train.max_steps is None:
            raise InvalidRequest("train.max_steps", "is required for a dpo run")
        cfg = _check_dpo(cfg)
    if not cfg.curriculum.stages and cfg.train.max_steps is None:
        raise InvalidRequest("train.max_steps", "is required when curriculum.stages is not given")
    if cfg.data.compile_tags is None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, compile_tags=not cfg.tag_encoder.enabled))
    v = cfg.validation
    for name in ("width", "height"):
        value = getattr(v, name)
        if value is not None and (value % fam.side_multiple or not fam.side_multiple <= value <= spec.max_side):
            raise InvalidRequest(f"validation.{name}", f"must be a multiple of {fam.side_multiple} up to {spec.max_side}")
    if v.num_frames is not None and (v.num_frames - 1) % fam.frame_stride:
        raise InvalidRequest("validation.num_frames", f"{fam.name} models need {fam.frame_stride}k+1 frames")
    return cfg


def _check_dpo(cfg: RunConfig) -> RunConfig:
    """Refuse the dpo settings that cannot mean what they say; resolve `reference: auto`."""
    d = cfg.dpo
    assert d is not None
    if not d.sources or len(set(d.sources)) != len(d.sources):
        raise InvalidRequest("dpo.sources", f"name choices, marks or both, once each; got {list(d.sources)}")
    if d.sources == ("marks",) and d.deformations is None:
        raise InvalidRequest("dpo.sources", "pairs from marks only need dpo.deformations (a deformations export)")
    cur = cfg.curriculum
    if cur.stages or cur.blend_steps:
        raise InvalidRequest("curriculum", "a dpo run trains one stage on the preference pairs and cannot follow "
                                           "curriculum stages; remove curriculum.stages/blend_steps (run the "
                                           "curriculum as a fine-tuning run and start from it with adapter.init_from)")
    loaded = [name for name, path in (("adapter.init_from", cfg.adapter.init_from),
                                      ("tag_encoder.init_from", cfg.tag_encoder.init_from
                                       if cfg.tag_encoder.enabled else None)) if path]
    ref = d.reference if d.reference != "auto" else ("initial" if loaded else "base")
    if ref == "base" and loaded:
        raise InvalidRequest("dpo.reference", f"base is the model without the trained weights, but {loaded[0]} "
                                              "starts the policy from saved ones, so step 0 would not be the "
                                              "reference (loss not log 2); use reference: initial (a frozen "
                                              "snapshot of the starting adapter and tag encoder)")
    if ref == "initial" and not loaded:
        raise InvalidRequest("dpo.reference", "initial is a frozen snapshot of the starting weights, but the run "
                                              "starts from none (no adapter.init_from or tag_encoder.init_from), "
                                              "so it would be the base model; use reference: base")
    return dataclasses.replace(cfg, dpo=dataclasses.replace(d, reference=ref))


def parse_config(data: Any, base_dir: Path | None = None, data_dir: Path | None = None) -> RunConfig:
    """Build and check a RunConfig from plain data (e.g. parsed YAML). A relative path is relative to
    `base_dir`; one written `{data_dir}/...` is in the studio's data folder (`data_dir`, else the default)."""
    from ..core.settings import expand_data_dir

    cfg = build(RunConfig, data)
    base = Path(base_dir) if base_dir is not None else Path.cwd()

    def resolve(p: str) -> str:
        path = Path(expand_data_dir(p, data_dir)).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())

    def maybe(p: str | None) -> str | None:
        return None if p is None else resolve(p)

    model = cfg.model if _is_registry_id(cfg.model) else resolve(cfg.model)
    cfg = dataclasses.replace(
        cfg, model=model, output_dir=resolve(cfg.output_dir),
        data=dataclasses.replace(cfg.data, manifest=resolve(cfg.data.manifest)),
        cache=dataclasses.replace(cfg.cache, dir=maybe(cfg.cache.dir)),
        adapter=dataclasses.replace(cfg.adapter, init_from=maybe(cfg.adapter.init_from)),
        tag_encoder=dataclasses.replace(cfg.tag_encoder, init_from=maybe(cfg.tag_encoder.init_from)),
    )
    if cfg.dpo is not None:
        cfg = dataclasses.replace(cfg, dpo=dataclasses.replace(cfg.dpo, deformations=maybe(cfg.dpo.deformations)))
    if cfg.rwr is not None:
        cfg = dataclasses.replace(cfg, rwr=dataclasses.replace(cfg.rwr, scores=resolve(cfg.rwr.scores)))
    if cfg.adapter.kind == "lora":
        raw = data.get("adapter") if isinstance(data, Mapping) else None
        if isinstance(raw, Mapping) and raw.get("heads", 1) != 1:
            # Plain LoRA is one head without a router: refuse rather than silently use 1.
            raise InvalidRequest("adapter.heads", "plain LoRA has one head; remove adapter.heads or use kind: hydralora")
        cfg = dataclasses.replace(cfg, adapter=dataclasses.replace(cfg.adapter, heads=1))
    return _check_run(cfg)


def _is_registry_id(model: str) -> bool:
    from ..core.registry import REGISTRY

    return model in REGISTRY


def load_config(path: Path | str, data_dir: Path | None = None) -> RunConfig:
    """Read a YAML config file (strict: duplicate keys refused) and check it; `data_dir`: see parse_config."""
    from ..core.pks import load_yaml_text

    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidRequest("config", f"{path} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest("config", f"{path} could not be read ({exc})") from None
    data = load_yaml_text(text, f"config {path}", "config")
    return parse_config(data, path.parent.resolve(), data_dir)
