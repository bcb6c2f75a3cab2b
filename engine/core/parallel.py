"""One clip over several processes: diffusers' context parallelism (Ulysses or ring attention) under torchrun.

Every rank loads the same pipeline and runs the same prepared request in lockstep; the transformer's
sequence is split across the ranks by diffusers' `enable_parallelism`, and each step's attention
gathers what it needs through the process group. Rank 0 owns the job (history, mp4, progress); the
other ranks help with it and write nothing. docs/speed.md says what has been run where.
"""
from __future__ import annotations

import logging
import os
import types
import warnings
from typing import Any

from .errors import UnsupportedCombination
from .requests import GenerationRequest

# Ring attention merges partial results by their log-sum-exp, which only these backends return (all CUDA).
RING_BACKENDS: tuple[str, ...] = ("_native_cudnn", "_native_flash", "flash", "flash_hub", "_flash_3_hub",
                                  "sage", "sage_hub")
_ENABLED = "_animatrix_parallel"  # attribute on a transformer: the mode it was split with


def world() -> tuple[int, int, int]:
    """(rank, local rank, world size) of this process as torchrun set them; (0, 0, 1) outside torchrun."""
    if "LOCAL_RANK" not in os.environ:
        return 0, 0, 1
    return (int(os.environ.get("RANK", "0") or 0), int(os.environ["LOCAL_RANK"] or 0),
            int(os.environ.get("WORLD_SIZE", "1") or 1))


def is_helper() -> bool:
    """True on the ranks that help rank 0 with its job and write nothing themselves."""
    return world()[0] != 0


def check_parallel(request: GenerationRequest, device: str, num_heads: int | None) -> None:
    """Refuse, with the reason, a context-parallel request that cannot run in this launch."""
    if request.parallel == "none":
        return
    _rank, _local, size = world()
    if "LOCAL_RANK" not in os.environ or size < 2:
        raise UnsupportedCombination("parallel", f"--parallel {request.parallel} splits one clip over several "
                                                 "processes and must be launched with torchrun, e.g. `torchrun "
                                                 "--nproc-per-node 2 -m engine generate --parallel "
                                                 f"{request.parallel} ...`")
    if request.offload not in ("none", "auto") or (request.cache or "none") != "none":
        raise UnsupportedCombination("parallel", "context parallelism runs with offload none and no step cache")
    if request.compile_blocks:
        raise UnsupportedCombination("parallel", "context parallelism runs without compiled blocks here")
    if device == "cuda":
        import torch

        visible = torch.cuda.device_count()
        if visible < size:
            raise UnsupportedCombination("parallel", f"{size} processes need {size} CUDA GPUs; this machine shows "
                                                     f"{visible}")
    elif device != "cpu":
        raise UnsupportedCombination("parallel", f"context parallelism runs on CUDA GPUs (or CPU processes for a "
                                                 f"check), not on {device}")
    if request.parallel == "ulysses":
        if num_heads is not None and num_heads % size:
            raise UnsupportedCombination("parallel", f"ulysses splits the {num_heads} attention heads over {size} "
                                                     "processes, which must divide them; use ring or another count")
    elif device != "cuda":
        raise UnsupportedCombination("parallel", "ring attention needs a backend that returns log-sum-exp "
                                                 f"({', '.join(RING_BACKENDS)}), and they all need a CUDA GPU; "
                                                 "on a CPU use ulysses")
    elif request.attention not in RING_BACKENDS:
        raise UnsupportedCombination("attention", f"ring attention needs one of {', '.join(RING_BACKENDS)}, got "
                                                  f"{request.attention}")


def join_group(device: str) -> None:
    """Join torchrun's process group once: NCCL with one GPU per rank on CUDA, gloo on a CPU."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    # diffusers' split hooks warn on every step about the 1-D timestep (never split, by design) and use a
    # collective that torch has renamed; neither is the user's to act on.
    logging.getLogger("diffusers.hooks.context_parallel").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*all_gather_tensor.* is deprecated", category=FutureWarning)
    _rank, local, _size = world()
    if device == "cuda":
        torch.cuda.set_device(local)  # "cuda" then means this rank's own GPU everywhere in the engine
    dist.init_process_group("nccl" if device == "cuda" else "gloo")


def leave_group() -> None:
    """Leave the process group before the process ends: gloo's threads left running at exit can
    abort the process ("terminate called without an active exception") after its work is done."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def shared_seed(seed: int | None, draw: int) -> int:
    """The seed every rank uses: rank 0's (its own or `draw`), so all ranks start from the same noise."""
    import torch.distributed as dist

    value = [seed if seed is not None else draw]
    if dist.is_initialized():
        dist.broadcast_object_list(value, src=0)
    return int(value[0])


def apply_parallel(model: Any, request: GenerationRequest) -> None:
    """Split the transformer's sequence for this request; splitting cannot be undone on a loaded model."""
    done = getattr(model, _ENABLED, "none")
    if request.parallel == done:
        return
    if done != "none":
        raise UnsupportedCombination("parallel", f"this loaded model is split for {done}; a {request.parallel} "
                                                 "job needs a fresh launch")
    import torch
    import torch.distributed as dist
    from diffusers.models._modeling_parallel import ContextParallelConfig, ParallelConfig

    size = dist.get_world_size()
    config = (ContextParallelConfig(ulysses_degree=size) if request.parallel == "ulysses"
              else ContextParallelConfig(ring_degree=size))
    device = next(model.parameters()).device
    if device.type == "cpu":
        # diffusers builds the mesh on the accelerator and divides by its device count, which is 0 on a CPU;
        # the same set-up with a CPU mesh (gloo) instead.
        def resolve(self: Any, cfg: Any) -> Any:
            full = ParallelConfig(context_parallel_config=cfg) if isinstance(cfg, ContextParallelConfig) else cfg
            cp: Any = full.context_parallel_config  # set just above
            mesh = torch.distributed.device_mesh.init_device_mesh("cpu", mesh_shape=cp.mesh_shape,
                                                                  mesh_dim_names=cp.mesh_dim_names)
            full.setup(dist.get_rank(), size, torch.device("cpu"), mesh=mesh)
            self._parallel_config = full
            return full

        model._resolve_parallel_config = types.MethodType(resolve, model)
    model.enable_parallelism(config=config)
    setattr(model, _ENABLED, request.parallel)
