"""Live previews: while a clip denoises, every few steps a small animated picture of where it is going.

*What is shown*: the current estimate of the clean clip. Every family here is flow matching: the
scheduler steps with the model's (guided) velocity v, so x0 = x_t - sigma_t * v exactly. The pipeline's
step callback only sees the latents after the step, so `StepRecorder` wraps `scheduler.step` and keeps
references (no copies) to its last inputs; a scheduler that is not flow matching shows the current latents.

*How it is decoded*: a linear latent->RGB projection, fitted once per VAE by least squares against the
VAE's own decode of a few latents (smooth colour fields, encoded then decoded; the decode pooled to the
latent grid) and kept on disk; a VAE small enough to run at every preview (the mini model's, which
decodes frame by frame) is used directly.

*Where it goes*: a small animated WebP (<= 128 px), written off the denoising thread and renamed into
place, so a front-end in another process (`--no-worker` + `python -m engine worker`) reads whole files.
`PreviewFolder` names the files of a data folder's jobs and the wish markers that ask for them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

PREVIEW_SIDE = 128  # longest side of a preview file, in pixels
MAX_FRAMES = 24  # frames kept in one preview file (evenly picked): bounds its size and encode time
FIT_IMAGES = 8
FIT_GRID = 8  # latent cells per side of each fitting image (8 x 8 x 8 images: 512 samples, 17 unknowns)
STALE_S = 24 * 3600.0  # markers and files of jobs that never ran (removed while queued) go after a day


def preview_every(steps: int) -> int:
    """Steps between previews: about ten a run, the first by 10 % of the steps (step 1 for short runs)."""
    return max(1, steps // 10)


# -- the clean-clip estimate ------------------------------------------------------------------------
def is_flow_matching(scheduler: Any) -> bool:
    config = getattr(scheduler, "config", {}) or {}
    return ("FlowMatch" in type(scheduler).__name__ or bool(config.get("use_flow_sigmas"))
            or config.get("prediction_type") == "flow_prediction")


class StepRecorder:
    """Within `with`, keeps the last `scheduler.step(model_output, timestep, sample)` inputs (references)."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.flow = is_flow_matching(scheduler)
        self.train_steps = float((getattr(scheduler, "config", {}) or {}).get("num_train_timesteps", 1000))
        self.last: tuple[Any, Any, Any] | None = None
        self._own: Any = None

    def __enter__(self) -> "StepRecorder":
        original = self.scheduler.step
        self._own = vars(self.scheduler).get("step")  # an instance attribute someone else set, kept

        def step(model_output: Any, timestep: Any, sample: Any, *args: Any, **kwargs: Any) -> Any:
            self.last = (model_output, timestep, sample)
            return original(model_output, timestep, sample, *args, **kwargs)

        self.scheduler.step = step
        return self

    def __exit__(self, *_exc: Any) -> None:
        if self._own is not None:
            self.scheduler.step = self._own
        else:
            vars(self.scheduler).pop("step", None)
        self.last = None

    def clean(self, latents: "torch.Tensor") -> "torch.Tensor":
        """x0 = x_t - sigma_t * v from the last step's inputs; the current latents when that is not known."""
        if not self.flow or self.last is None:
            return latents.float()
        velocity, timestep, sample = self.last
        sigma = float(timestep.flatten()[0] if hasattr(timestep, "flatten") else timestep) / self.train_steps
        return sample.float() - sigma * velocity.float()


# -- decoders ---------------------------------------------------------------------------------------
class PreviewDecoder(Protocol):
    @property
    def frames_per_latent(self) -> int:
        """Output frames per latent frame (1: one picture per latent frame)."""
        ...

    def frames(self, latents: "torch.Tensor") -> np.ndarray:
        """Pipeline-space latents (B, C, T, h, w) -> uint8 frames (T', h', w', 3) of the first clip."""
        ...


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, -1.0, 1.0) * 127.5 + 127.5).astype(np.uint8)


@dataclass(frozen=True)
class LinearDecoder:
    weight: np.ndarray  # (C, 3)
    bias: np.ndarray  # (3,)
    frames_per_latent: int = 1

    def frames(self, latents: "torch.Tensor") -> np.ndarray:
        import torch

        x = latents[0].float()
        w = torch.as_tensor(self.weight, dtype=torch.float32, device=x.device)
        b = torch.as_tensor(self.bias, dtype=torch.float32, device=x.device)
        rgb = torch.einsum("cthw,ck->thwk", x, w) + b
        return _to_uint8(rgb.cpu().numpy())


class VaeDecoder:
    """A VAE cheap enough to decode a preview outright (the mini model's frame-by-frame decoder)."""

    frames_per_latent = 4

    def __init__(self, vae: Any) -> None:
        self.vae = vae

    def frames(self, latents: "torch.Tensor") -> np.ndarray:
        import torch

        z = from_pipeline_space(latents[:1].float(), self.vae).to(self.vae.dtype)
        with torch.no_grad():
            video = self.vae.decode(z, return_dict=False)[0]  # (1, 3, F, H, W) in [-1, 1]
        return _to_uint8(video[0].permute(1, 2, 3, 0).float().cpu().numpy())


def _norm(vae: Any, z: "torch.Tensor") -> tuple[Any, Any, float | None]:
    import torch

    config = vae.config
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean and std:
        shape = (1, -1, 1, 1, 1)
        return (torch.tensor(mean, device=z.device).view(shape), torch.tensor(std, device=z.device).view(shape), None)
    scale = getattr(config, "scaling_factor", None)
    return None, None, float(scale) if scale else None


def to_pipeline_space(z: "torch.Tensor", vae: Any) -> "torch.Tensor":
    """VAE latents as the pipelines denoise them: Wan normalises by latents_mean/std, Hunyuan scales."""
    mean, std, scale = _norm(vae, z)
    if mean is not None:
        return (z - mean) / std
    return z * scale if scale else z


def from_pipeline_space(x: "torch.Tensor", vae: Any) -> "torch.Tensor":
    mean, std, scale = _norm(vae, x)
    if mean is not None:
        return x * std + mean
    return x / scale if scale else x


def _fingerprint(vae: Any) -> str:
    """Class, config and a checksum of two weight tensors: a refit when the VAE's weights change."""
    params = list(vae.parameters())
    sums = [float(p.detach().float().sum()) for p in (params[0], params[-1])] if params else []
    config = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
    text = json.dumps([type(vae).__name__, config, [round(s, 5) for s in sums]], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def fit_linear(vae: Any, spatial: int) -> LinearDecoder:
    """Least squares from pipeline-space latents to the VAE's decode, pooled to the latent grid."""
    import torch
    import torch.nn.functional as F

    device = next(vae.parameters()).device
    side = spatial * FIT_GRID
    g = torch.Generator().manual_seed(0)
    # Smooth colour fields (low-res colours blown up): latents like a picture's, not like noise.
    low = torch.rand(FIT_IMAGES, 3, 4, 4, generator=g) * 2 - 1
    images = F.interpolate(low, size=(side, side), mode="bilinear", align_corners=True).unsqueeze(2)
    with torch.no_grad():
        z = vae.encode(images.to(device=device, dtype=vae.dtype)).latent_dist.mode()
        decoded = vae.decode(z, return_dict=False)[0]
    target = F.adaptive_avg_pool2d(decoded[:, :, 0].float().cpu(), z.shape[-2:])
    feats = to_pipeline_space(z.float(), vae)[:, :, 0].cpu()
    a = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).double()
    a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], dim=1)
    y = target.permute(0, 2, 3, 1).reshape(-1, 3).double()
    ridge = 1e-4 * torch.eye(a.shape[1], dtype=a.dtype) * float((a * a).mean())
    solution = torch.linalg.solve(a.T @ a + ridge, a.T @ y).float().numpy()
    return LinearDecoder(solution[:-1].copy(), solution[-1].copy())


def decoder_for(pipe: Any, cache_dir: Path | None = None) -> PreviewDecoder:
    """The pipeline's preview decoder: its VAE itself when it is tiny, else a cached linear fit."""
    vae = pipe.vae
    if hasattr(vae, "decode_frames"):  # the mini model's VAE: a few small convolutions a frame
        return VaeDecoder(vae)
    key = _fingerprint(vae)
    path = cache_dir / f"{key}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text())
            return LinearDecoder(np.asarray(data["weight"], dtype=np.float32), np.asarray(data["bias"], np.float32))
        except (OSError, ValueError, KeyError):
            pass  # unreadable: fitted again and rewritten
    spatial = int(getattr(pipe, "vae_scale_factor_spatial", 0) or getattr(vae.config, "scale_factor_spatial", 8))
    decoder = fit_linear(vae, spatial)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _replace_text(path, json.dumps({"weight": decoder.weight.tolist(), "bias": decoder.bias.tolist()}))
        except OSError:
            log.warning("could not keep the preview projection in %s", path.parent)
    return decoder


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- the file ---------------------------------------------------------------------------------------
def write_webp(path: Path, frames: np.ndarray, fps: float) -> None:
    """uint8 frames (T, h, w, 3) as an animated WebP of at most PREVIEW_SIDE px, renamed into place."""
    from PIL import Image

    if len(frames) > MAX_FRAMES:
        frames = frames[np.linspace(0, len(frames) - 1, MAX_FRAMES).round().astype(int)]
        fps = fps * MAX_FRAMES / len(frames)
    h, w = frames.shape[1:3]
    scale = PREVIEW_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Latent grids are small: nearest keeps their cells sharp; big decodes are averaged down.
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX
    images = [Image.fromarray(f).resize(size, resample) for f in frames]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    images[0].save(tmp, format="WEBP", save_all=True, append_images=images[1:], loop=0, quality=70, method=0,
                   duration=max(20, round(1000.0 / max(fps, 0.5))))
    os.replace(tmp, path)


class LivePreview:
    """One job's preview file: `show` hands frames to a writer thread (the newest wins), so the
    denoising loop never waits on an encoder; `close` removes the file."""

    def __init__(self, path: Path, *, wanted: Callable[[], bool] | None = None, every: int | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        self.path = path
        self.every = every
        self._wanted = wanted
        self._on_close = on_close
        self._pending: tuple[np.ndarray, float] | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.written = 0  # files written so far (tests, benchmarks)

    def due(self, done: int, total: int) -> bool:
        """Whether step `done` of `total` gets a preview (never the last: the clip itself follows)."""
        every = self.every or preview_every(total)
        if done >= total or done % every:
            return False
        return self._wanted is None or self._wanted()

    def show(self, frames: np.ndarray, fps: float) -> None:
        with self._cond:
            if self._closed:
                return
            self._pending = (frames, fps)
            if self._thread is None:
                self._thread = threading.Thread(target=self._write_loop, name="animatrix-preview", daemon=True)
                self._thread.start()
            self._cond.notify()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until the frames shown so far are on disk (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending is not None and time.monotonic() < deadline:
                self._cond.wait(0.05)

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                frames, fps = self._pending
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_webp(self.path, frames, fps)
                self.written += 1
            except Exception:  # noqa: BLE001 - a preview that cannot be written never stops the clip
                log.warning("could not write the live preview %s", self.path, exc_info=True)
            with self._cond:
                if self._pending is not None and self._pending[0] is frames:
                    self._pending = None
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(10.0)
        self.path.unlink(missing_ok=True)
        if self._on_close is not None:
            self._on_close()


class PreviewFolder:
    """The live previews of a data folder's jobs: `job-<id>.webp`, asked for by a `job-<id>.wanted` marker
    (written by whoever queues the job, read by whichever process runs it)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, job_id: int) -> Path:
        return self.root / f"job-{int(job_id)}.webp"

    def _marker(self, job_id: int) -> Path:
        return self.root / f"job-{int(job_id)}.wanted"

    def want(self, job_id: int) -> None:
        """Ask for previews of a job; also clears what jobs that never ran left behind."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._marker(job_id).touch()
            self._sweep()
        except OSError:
            log.warning("could not ask for a live preview of job #%s in %s", job_id, self.root)

    def wanted(self, job_id: int) -> bool:
        return self._marker(job_id).exists()

    def current(self, job_id: int) -> Path | None:
        """The job's preview file while it runs (None before the first one and after the end)."""
        path = self.path(job_id)
        return path if path.is_file() else None

    def live(self, job_id: int, *, every: int | None = None) -> LivePreview:
        return LivePreview(self.path(job_id), wanted=lambda: self.wanted(job_id), every=every,
                           on_close=lambda: self.forget(job_id))

    def forget(self, job_id: int) -> None:
        for path in (self.path(job_id), self._marker(job_id)):
            path.unlink(missing_ok=True)

    def _sweep(self) -> None:
        cutoff = time.time() - STALE_S
        for path in self.root.glob("job-*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
            except OSError:
                pass


class PreviewRun:
    """One denoising run's previews: the step recorder around the pipeline call, a preview on due steps.
    `decoder` is asked for at the first due step (a fit costs once per VAE, and only when someone looks)."""

    def __init__(self, live: LivePreview, decoder: Callable[[], PreviewDecoder], scheduler: Any, fps: float,
                 frame_stride: int) -> None:
        self.live = live
        self._decoder_factory = decoder
        self._decoder: PreviewDecoder | None = None
        self.recorder = StepRecorder(scheduler)
        self.fps = fps
        self.frame_stride = max(frame_stride, 1)
        self.seconds = 0.0  # time spent in `step` on the denoising thread (benchmarks)
        self._failed = False

    def __enter__(self) -> "PreviewRun":
        self.recorder.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.recorder.__exit__(*exc)

    def step(self, done: int, total: int, latents: "torch.Tensor | None") -> None:
        if self._failed or latents is None or not self.live.due(done, total):
            return
        started = time.perf_counter()
        try:
            if self._decoder is None:
                self._decoder = self._decoder_factory()
            decoder = self._decoder
            # A latent frame stands for `frame_stride` frames: a picture per latent plays at fps / stride.
            fps = self.fps * decoder.frames_per_latent / self.frame_stride
            self.live.show(decoder.frames(self.recorder.clean(latents)), fps)
        except Exception:  # noqa: BLE001 - a preview never stops the clip; one warning, then none
            self._failed = True
            log.warning("live previews stopped for this run", exc_info=True)
        self.seconds += time.perf_counter() - started
