"""The training run: data → cache → HydraLoRA/LoRA (+ tag encoder) → checkpoints, metrics, samples.

One code path for one CPU, one GPU and `accelerate launch` (DDP; FSDP through accelerate's own
config). Everything a step uses is a function of (seed, step): the curriculum draw, the noise,
the timesteps, caption and tag dropout, and the global torch seed (adapter dropout). With the
adapter weights, the optimizer and scheduler state and the sampler's queue cursors saved in a
checkpoint, a resumed run therefore continues bit-for-bit like an uninterrupted one.

Checkpoints (every ``train.checkpoint_every`` steps and at the end), each written into a
temporary folder and renamed into place (the rename is the commit)::

    <output_dir>/checkpoints/step-000100/
        adapter/          a loadable adapter (HydraLoRA or diffusers LoRA) + animatrix_adapter.json
        tag_encoder/      when trained jointly
        trainable.safetensors  the raw trained tensors (what a resume loads)
        state.pt          step, optimizer, lr schedule, sampler cursors, config, world size
        rng-rank0.pt ...  python / numpy / torch (/ cuda) RNG state of each process
    <output_dir>/adapter/  the final adapter (and tag_encoder/ beside it)
    <output_dir>/metrics.csv, samples/step-000100/*.mp4
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, ContextManager

import torch

from ..core.errors import InvalidRequest, UnsupportedCombination
from ..core.settings import Settings
from ..core.toolkit.files import staged_folder, swap_folder
from .caching import CacheKeys, FeatureCache, build_cache
from .checkpoints import (CHECKPOINTS, TRAINABLE, capture_rng, find_resume, first_difference, list_checkpoints,
                          load_trainable, restore_rng, resume_fingerprint, save_trainable)
from .config import RunConfig, StageConfig
from .curriculum import Curriculum, CurriculumSampler, default_stages, stage_members
from .dataset import Planned, plan_clips, read_clips, training_prompt
from .metrics import Metrics
from .objective import flow_matching_loss, noisy_latents, ops_for, sample_sigmas
from .runtime import StepHook, TrainModule, TrainResult, peak_memory, seed_for, weight_dtype
from .validation import Validator, validation_texts

__all__ = ["CHECKPOINTS", "TRAINABLE", "StepHook", "TrainResult", "Trainer"]


class Trainer:
    """Runs one training config. `on_step_end(step, loss)` is called on every process after each step."""

    def __init__(self, config: RunConfig, settings: Settings, *, on_step_end: StepHook | None = None,
                 show_progress: bool = True) -> None:
        self.config = config
        self.settings = settings
        self.on_step_end = on_step_end
        self.show_progress = show_progress
        self.out = config.output_path
        self.ckpt_root = self.out / CHECKPOINTS
        # Filled by prepare(); typed here because the validator reads them (ValidationHost).
        self.acc: Any = None
        self.pipe: Any = None
        self.ops: Any = None
        self.channel: Any = None
        self.cache: FeatureCache
        self.keys: CacheKeys
        self.val_texts: list[str] = []

    # ------------------------------------------------------------ public, for the validator
    @property
    def device(self) -> torch.device:
        device: torch.device = self.acc.device
        return device

    def autocast(self) -> ContextManager[Any]:
        """The mixed-precision context the model is trained under (for sampling with it)."""
        ctx: ContextManager[Any] = self.acc.autocast()
        return ctx

    def log(self, message: str) -> None:
        """One line on stderr, from the main process only (keeps progress bars intact)."""
        if self.acc.is_main_process:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stderr)

    # ------------------------------------------------------------------------- set-up
    def _accelerator(self) -> Any:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import DistributedDataParallelKwargs

        from ..core.memory import resolve_device

        # A second run in the same process (tests, notebooks) may use other settings.
        AcceleratorState._reset_state(reset_partial_state=False)
        device = resolve_device(self.settings.device)
        mixed = self.config.train.mixed_precision
        cpu = device == "cpu" or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
        if cpu and mixed == "fp16":
            raise UnsupportedCombination("train.mixed_precision", "fp16 needs a GPU; use bf16 or no on CPU")
        ddp = DistributedDataParallelKwargs(find_unused_parameters=False)
        acc = Accelerator(mixed_precision=mixed, cpu=cpu, kwargs_handlers=[ddp])
        env = os.environ
        if env.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_ADDR" in env and "WORLD_SIZE" not in env:
            # `accelerate launch --cpu --num_processes N` starts ONE process unless it is given an MPI hostfile.
            if acc.is_main_process:
                print("warning: `accelerate launch --cpu` ran ONE process; for N CPU processes use "
                      "`accelerate launch --multi_gpu --num_processes N ...`", file=sys.stderr)
        return acc

    def _load_pipeline(self) -> Any:
        from diffusers import DiffusionPipeline

        from ..core.loading import locate_weights, quiet_libraries
        from ..core.registry import resolve_model

        quiet_libraries()
        spec = resolve_model(self.config.model)
        with self.acc.main_process_first():  # the preview model is written on first use
            folder = locate_weights(spec, self.settings)
        self.weights_folder = Path(folder)
        dtype = weight_dtype(self.config.train.mixed_precision)
        pipe = DiffusionPipeline.from_pretrained(folder, dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        self.spec = spec
        return pipe

    def _prepare_data(self, pipe: Any) -> list[Planned]:
        from ..core.pks import load_taxonomy

        cfg = self.config
        self.taxonomy = load_taxonomy()
        clips, report = read_clips(cfg.data, self.taxonomy)
        fam = self.spec.family
        planned = plan_clips(clips, cfg.data, fam.frame_stride, fam.side_multiple, self.spec.max_side, report)
        self.log(f"data: {report.describe()}")
        if not planned:
            raise InvalidRequest("data.manifest", f"no usable clip in {cfg.data.manifest} ({report.describe()})")
        self.prompts = [training_prompt(p.clip, self.taxonomy, bool(cfg.data.compile_tags)) for p in planned]
        return planned

    def _curriculum(self, planned: list[Planned]) -> tuple[Curriculum, list[list[int]]]:
        cur = self.config.curriculum
        total = self.config.train.max_steps
        stages: tuple[StageConfig, ...]
        if not cur.enabled:
            stages = (StageConfig(name="all", steps=total or 1),)
        elif cur.stages:
            stages = cur.stages
        elif any(p.clip.motion is not None for p in planned):
            stages = default_stages(total or 1)
        else:
            self.log("curriculum: the data has no motion scores, so one stage over every clip is used")
            stages = (StageConfig(name="all", steps=total or 1),)
        curriculum = Curriculum(tuple(stages), cur.blend_steps)
        return curriculum, stage_members(planned, curriculum.stages)

    def _build_cache(self, pipe: Any, planned: list[Planned]) -> None:
        from tqdm import tqdm

        cfg = self.config
        acc = self.acc
        self.cache = FeatureCache(cfg.cache_path, cfg.cache.dtype)
        self.keys = CacheKeys.for_pipeline(pipe, cfg.model, cfg.cache.dtype, cfg.data.max_text_tokens,
                                           self.weights_folder)
        self.latent_files = [self.cache.latent_path(self.keys.latent_key(p)) for p in planned]
        self.text_files = [self.cache.text_path(self.keys.text_key(t)) for t in self.prompts]
        self.empty_text_file = self.cache.text_path(self.keys.text_key(""))
        self.val_texts = validation_texts(cfg, self.taxonomy) if self.validation_on else []
        wanted = list(dict.fromkeys([*self.prompts, "", *self.val_texts]))
        wanted_files = [*self.latent_files, *(self.cache.text_path(self.keys.text_key(t)) for t in wanted)]
        if not all(f.is_file() for f in wanted_files):
            pipe.vae.to(acc.device)
            pipe.text_encoder.to(acc.device)
            if getattr(pipe, "text_encoder_2", None) is not None:
                pipe.text_encoder_2.to(acc.device)
            bar = tqdm(total=None, desc="caching", disable=not (acc.is_main_process and self.show_progress),
                       file=sys.stderr, dynamic_ncols=True)

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            try:
                stats = build_cache(pipe, self.ops, self.cache, self.keys, planned, wanted,
                                    max_tokens=cfg.data.max_text_tokens, device=acc.device, rank=acc.process_index,
                                    world_size=acc.num_processes, progress=progress)
            finally:
                bar.close()
            self.log(f"cache ({cfg.cache_path}): {stats.describe()}")
        acc.wait_for_everyone()

    def _build_model(self, pipe: Any) -> None:
        from ..core.adapters import HydraSpec, base_info_for, inject_hydralora, inspect_adapter

        cfg = self.config
        a = cfg.adapter
        transformer = pipe.transformer
        transformer.requires_grad_(False)
        transformer.to(self.acc.device)
        spec = HydraSpec(rank=a.rank, alpha=a.alpha, num_heads=a.heads, router=a.router if a.heads > 1 else "fixed",
                         fixed_weights=a.fixed_weights, dropout=a.dropout, targets=a.targets, exclude=a.exclude)
        torch.manual_seed(seed_for(cfg.seed, 1))  # same initial A and router on every process and every run
        self.injection = inject_hydralora(transformer, spec)
        if a.init_from:
            files = inspect_adapter(a.init_from)
            if files.kind != "hydralora" or files.config is None:
                raise InvalidRequest("adapter.init_from", "must be a HydraLoRA adapter saved by the studio")
            from ..core.adapters.io import load_tensors

            try:
                self.injection.load_state_dict(load_tensors(files.weights))
            except KeyError as exc:
                raise InvalidRequest("adapter.init_from", str(exc.args[0])) from None
        self.base_info = base_info_for(transformer, self.injection, cfg.model)
        self.tag_encoder = None
        self.channel = None
        if cfg.tag_encoder.enabled:
            from ..core.conditioning import TagEncoder, attach_tag_encoder, load_tag_encoder

            te = cfg.tag_encoder
            if te.init_from:
                encoder = load_tag_encoder(te.init_from, self.taxonomy, self.ops.name)
            else:
                torch.manual_seed(seed_for(cfg.seed, 3))
                encoder = TagEncoder.for_transformer(transformer, self.taxonomy, hidden_dim=te.hidden_dim)
            encoder.to(self.acc.device)
            self.tag_encoder = encoder
            self.channel = attach_tag_encoder(transformer, encoder)
        if cfg.train.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        transformer.train()
        groups: list[dict[str, Any]] = [{"params": list(self.injection.parameters()), "lr": cfg.optimizer.lr,
                   "weight_decay": cfg.optimizer.weight_decay}]
        if self.tag_encoder is not None:
            groups.append({"params": list(self.tag_encoder.parameters()), "lr": cfg.tag_encoder.lr,
                           "weight_decay": cfg.tag_encoder.weight_decay})
        o = cfg.optimizer
        optimizer = torch.optim.AdamW(groups, betas=o.betas, eps=o.eps)
        warm = o.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warm) if warm > 0 else 1.0)
        module = TrainModule(transformer, self.ops, self.tag_encoder, self.channel, cfg.train.hunyuan_guidance)
        self.model, self.optimizer = self.acc.prepare(module, optimizer)
        self.trainable = [p for g in groups for p in g["params"]]

    # --------------------------------------------------------------------------- run
    def run(self, *, cache_only: bool = False, resume: str = "auto") -> TrainResult:
        """Cache, then train to the end (or resume). `resume`: "auto", "never" or a checkpoint folder."""
        result = self.prepare(cache_only=cache_only, resume=resume)
        return result if cache_only else self.fit()

    def prepare(self, *, cache_only: bool = False, resume: str = "auto") -> TrainResult:
        """Everything before the first step: model, data, cache, adapters, optimizer, resume state."""
        self._started = time.perf_counter()
        self.acc = self._accelerator()
        cfg = self.config
        ckpt = self._find_resume(resume)  # refuse early, before minutes of loading
        self.validation_on = cfg.validation_every > 0 and bool(cfg.validation.prompts)
        self.log(f"accelerate: {self.acc.num_processes} process(es), {self.acc.distributed_type}, "
                  f"device {self.acc.device}, mixed precision {cfg.train.mixed_precision}")
        pipe = self._load_pipeline()
        self.pipe = pipe
        self.ops = ops_for(pipe)
        planned = self._prepare_data(pipe)
        self.planned = planned
        curriculum, members = self._curriculum(planned)
        self.curriculum = curriculum
        self._build_cache(pipe, planned)
        result = self._result = TrainResult(self.out, None, 0)
        if cache_only:
            result.seconds = time.perf_counter() - self._started
            return result
        # The text encoders are not needed any more: every prompt is in the cache.
        for name in ("text_encoder", "text_encoder_2"):
            if getattr(pipe, name, None) is not None:
                setattr(pipe, name, None)
        self._build_model(pipe)
        self._total = cfg.train.max_steps or curriculum.total_steps
        self.sampler = CurriculumSampler(planned, curriculum, members, cfg.train.batch_size,
                                         self.acc.num_processes, cfg.seed)
        self._start = 0
        if ckpt is not None:
            self._start = self._load_checkpoint(ckpt)
            result.resumed_from = ckpt
            self.log(f"resumed from {ckpt} at step {self._start}")
        return result

    def fit(self) -> TrainResult:
        """Train from the prepared state to the last step; returns the run's result."""
        result = self._result
        try:
            self._train(self._start, self._total, result)
        finally:
            if self.channel is not None:
                self.channel.detach()
        result.seconds = time.perf_counter() - self._started
        result.peak_memory_bytes = peak_memory(self.acc.device)
        self.acc.wait_for_everyone()
        return result

    def _train(self, start_step: int, total: int, result: TrainResult) -> None:
        from tqdm import tqdm

        cfg, acc = self.config, self.acc
        metrics = Metrics(self.out / "metrics.csv", start_step, acc.is_main_process, cfg.train.tensorboard)
        validator = Validator(self) if self.validation_on and acc.is_main_process else None
        bar = tqdm(total=total, initial=start_step, desc="training", unit="step", file=sys.stderr, dynamic_ncols=True,
                   disable=not (acc.is_main_process and self.show_progress))
        shown_stage = None
        ema = None
        try:
            for step in range(start_step, total):
                t0 = time.perf_counter()
                loss, stage = self._step(step)
                done = step + 1
                ema = loss if ema is None else 0.9 * ema + 0.1 * loss
                name = self.curriculum.stages[self.curriculum.stage_at(step)].name
                if name != shown_stage:
                    self.log(f"step {done}: curriculum stage '{name}'")
                    shown_stage = name
                result.losses.append((done, loss))
                bar.set_postfix(loss=f"{ema:.4f}", stage=name, refresh=False)
                bar.update(1)
                if done % cfg.train.log_every == 0 or done == total:
                    mix = self.curriculum.weights(step)
                    metrics.write(done, loss, float(self.scheduler.get_last_lr()[0]), name, self.curriculum.stages[stage].name,
                                  mix, self._last_grad_norm, time.perf_counter() - t0)
                validate = self.validation_on and (done % cfg.validation_every == 0 or done == total)
                if done % cfg.train.checkpoint_every == 0 or done == total or validate:
                    # Validation samples are tagged with a checkpoint, so a validation step saves one.
                    path = self._save_checkpoint(done)
                    result.checkpoints.append(path)
                    if validator is not None and validate:
                        samples, ids = validator.run(done, path)
                        result.samples += samples
                        result.history_ids += ids
                    acc.wait_for_everyone()
                if self.on_step_end is not None:
                    self.on_step_end(done, loss)
            result.steps = total
            if acc.is_main_process:
                result.adapter_dir = self._export_final(total)
            acc.wait_for_everyone()
            if not acc.is_main_process:
                result.adapter_dir = self.out / "adapter"
        finally:
            bar.close()
            metrics.close()
            if validator is not None:
                validator.close()

    def sample_loss(self, pred: torch.Tensor, target: torch.Tensor, clips: list[int]) -> torch.Tensor:
        """The loss of one micro-batch of these clips (planned indices); rwr.py weighs them."""
        return flow_matching_loss(pred, target)

    def apply_gradients(self) -> None:
        """One optimizer step from the accumulated gradients (clipped when configured); shared with DPO."""
        cfg, acc = self.config, self.acc
        norm = None
        if cfg.optimizer.max_grad_norm is not None:
            norm = acc.clip_grad_norm_(self.trainable, cfg.optimizer.max_grad_norm)
        self._last_grad_norm = float(norm) if norm is not None else float("nan")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _step(self, step: int) -> tuple[float, int]:
        cfg, acc = self.config, self.acc
        accum = cfg.train.grad_accum
        total_loss = 0.0
        stage = 0
        wdtype = weight_dtype(cfg.train.mixed_precision)
        for micro in range(accum):
            draw = 0 if cfg.train.overfit_batch else step * accum + micro
            if cfg.train.overfit_batch:
                if not hasattr(self, "_fixed_draw"):
                    self._fixed_draw = self.sampler.draw(0, 0)
                stage, indices = self._fixed_draw
            else:
                stage, indices = self.sampler.draw(draw, step)
            mine = self.sampler.rank_slice(indices, acc.process_index)
            seed = seed_for(cfg.seed, draw, acc.process_index)
            torch.manual_seed(seed)  # adapter dropout and anything else drawing from the global RNG
            gen = torch.Generator(device="cpu").manual_seed(seed)
            x0 = torch.stack([self.cache.read(self.latent_files[i])["latents"].float() for i in mine])
            texts = [self.cache.read(self.text_files[i]) for i in mine]
            if cfg.data.caption_dropout > 0:
                drop = torch.rand(len(mine), generator=gen) < cfg.data.caption_dropout
                empty = self.cache.read(self.empty_text_file, keep=True)
                texts = [empty if d else t for d, t in zip(drop.tolist(), texts)]
            text = {k: v.to(acc.device, wdtype if v.is_floating_point() else v.dtype)
                    for k, v in self.ops.collate_text(texts, cfg.data.max_text_tokens).items()}
            noise = torch.randn(x0.shape, generator=gen)
            sigmas = sample_sigmas(len(mine), gen, self._shift(), cfg.train.timestep_sampling,
                                   cfg.train.logit_mean, cfg.train.logit_std)
            x_t, target = noisy_latents(x0, noise, sigmas)
            tags = None
            if self.tag_encoder is not None:
                from ..core.conditioning import encode_tags, tag_dropout

                te = cfg.tag_encoder
                tags = tag_dropout(encode_tags(self.taxonomy, [dict(self.planned[i].clip.tags) for i in mine]),
                                   te.tag_dropout, gen, drop_all_rate=te.drop_all_rate)
            sync = micro == accum - 1
            ctx = acc.no_sync(self.model) if not sync and acc.num_processes > 1 else contextlib.nullcontext()
            with ctx:
                pred = self.model(x_t.to(acc.device, wdtype), (sigmas * 1000.0).to(acc.device), text, tags)
                loss = self.sample_loss(pred, target.to(acc.device), list(mine))
                acc.backward(loss / accum)
            if self.channel is not None:
                self.channel.clear()
            total_loss += float(loss.detach()) / accum
        self.apply_gradients()
        if acc.num_processes > 1:
            t = torch.tensor([total_loss], device=acc.device)
            total_loss = float(acc.reduce(t, reduction="mean")[0])
        return total_loss, stage

    _last_grad_norm = float("nan")

    def _shift(self) -> float:
        return float(getattr(self.pipe.scheduler.config, "shift", None) or self.spec.flow_shift)

    # -------------------------------------------------------------------- checkpoints
    def _resume_fingerprint(self) -> dict[str, Any]:
        return resume_fingerprint(self.config, self.curriculum.stages)

    def checkpoints(self) -> list[Path]:
        return list_checkpoints(self.ckpt_root)

    def _find_resume(self, resume: str) -> Path | None:
        return find_resume(self.ckpt_root, resume)

    def _save_checkpoint(self, step: int) -> Path:
        acc = self.acc
        final = self.ckpt_root / f"step-{step:06d}"
        tmp = self.ckpt_root / f".step-{step:06d}.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        torch.save(capture_rng(), tmp / f"rng-rank{acc.process_index}.pt")
        acc.wait_for_everyone()
        if acc.is_main_process:
            self._write_adapter(tmp / "adapter", step)
            save_trainable(tmp / TRAINABLE, self.injection, self.tag_encoder)
            state = {"step": step, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "sampler": self.sampler.state_dict(), "config": self._resume_fingerprint(),
                     "world_size": acc.num_processes, "version": 1}
            torch.save(state, tmp / "state.pt")
            swap_folder(tmp, final)  # the rename is the commit
            for old in self.checkpoints()[:-self.config.train.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def _write_adapter(self, folder: Path, step: int) -> None:
        from ..core.adapters import save_adapter
        from ..core.conditioning import save_tag_encoder

        cfg = self.config
        extra = {"step": step, "run": str(self.out), "trained_with": "engine.training"}
        save_adapter(self.injection, folder, kind=cfg.adapter.kind, base=self.base_info, extra=extra)
        if self.tag_encoder is not None:
            save_tag_encoder(self.tag_encoder, folder.parent / "tag_encoder")

    def _export_final(self, step: int) -> Path:
        with staged_folder(self.out / ".adapter") as tmp:  # nothing half-written if the export fails
            self._write_adapter(tmp / "adapter", step)
            for name in ("adapter", "tag_encoder"):
                if (tmp / name).exists():
                    swap_folder(tmp / name, self.out / name)
        return self.out / "adapter"

    def _load_checkpoint(self, path: Path) -> int:
        acc = self.acc
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
        saved, now = state.get("config"), self._resume_fingerprint()
        if saved != now:
            diff = first_difference(saved, now)
            raise InvalidRequest("config", f"differs from the run in {path} ({diff}); resume needs the same "
                                           "data, model and training settings, or use another output_dir")
        if state.get("world_size") != acc.num_processes:
            self.log(f"warning: {path} was written by {state.get('world_size')} processes, this run has "
                      f"{acc.num_processes}: the data order will differ from an uninterrupted run")
        load_trainable(path / TRAINABLE, self.injection, self.tag_encoder)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        rng_file = path / f"rng-rank{acc.process_index}.pt"
        if rng_file.is_file():
            restore_rng(torch.load(rng_file, map_location="cpu", weights_only=False))
        return int(state["step"])

