"""`torchrun --nproc-per-node N -m engine generate --parallel ulysses|ring ...`: one clip, N processes.

Rank 0 runs the job as `generate` always does (the job runner, the history, the mp4); the other
ranks open the same studio, build the same request with rank 0's seed and run the same prepared
request through the engine in lockstep, writing nothing: their share of each step's attention is
all they contribute (engine/core/parallel.py).
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Callable

from .core.memory import resolve_device
from .core.parallel import is_helper, join_group, shared_seed
from .core.requests import MAX_SEED, GenerationRequest
from .core.settings import Settings

BuildRequest = Callable[[Any], GenerationRequest]  # the CLI's flags (and --from, --preset) -> a request


def open_studio_and_request(settings: Settings, build: BuildRequest) -> tuple[Any, GenerationRequest]:
    """The studio and the request on every rank: rank 0 opens (and migrates) the database first."""
    import torch.distributed as dist

    from .studio import Studio

    join_group(resolve_device(settings.device))
    studio = None
    if not is_helper():
        studio = Studio(settings)
    dist.barrier()  # the helpers open the database once rank 0 has brought it up to date
    if studio is None:
        studio = Studio(settings)
    try:
        request = build(studio)
        seed = shared_seed(request.seed, random.SystemRandom().randint(0, MAX_SEED))
    except BaseException:
        studio.close()
        raise
    return studio, replace(request, seed=seed)


def help_rank_zero(studio: Any, request: GenerationRequest) -> int:
    """A helper rank's whole part of the job: the same generation, its output thrown away."""
    try:
        studio.engine.generate(studio.engine.prepare(request))
    finally:
        studio.close()
    return 0
