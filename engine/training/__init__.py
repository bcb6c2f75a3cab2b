"""Adapter fine-tuning: config, dataset, caching, flow-matching objective, curriculum, loop, CLI.

Public API:

* `load_config(path) -> RunConfig`, `parse_config(data, base_dir) -> RunConfig` (config.py)
* `Trainer(config, settings, on_step_end=None).run(cache_only=False, resume="auto") -> TrainResult`
* `Curriculum`, `CurriculumSampler`, `stage_members`, `default_stages` (curriculum.py)
* `read_clips`, `plan_clips`, `make_buckets`, `frame_indices` (dataset.py)
* `sample_sigmas`, `noisy_latents`, `flow_matching_loss` (objective.py)
* `cli.add_parser(subparsers)`, `cli.run(args, settings)`; `python -m engine.training CONFIG`
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.toolkit.lazy import lazy_exports
from .config import RunConfig, load_config, parse_config

if TYPE_CHECKING:
    from .loop import Trainer, TrainResult

__all__ = ["RunConfig", "Trainer", "TrainResult", "load_config", "parse_config"]

# torch/diffusers load only when training is really used
__getattr__ = lazy_exports(__name__, {"Trainer": "loop", "TrainResult": "loop"})
