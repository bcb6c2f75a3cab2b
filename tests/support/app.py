"""The studio served for API tests: settings with the preview model, a launched app, form values."""
from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from app import adapters
from app.services.context import StudioServices
from app.ui import StudioApp, build_app
from engine.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TAGS = {"style.school": ("cel_90s",), "camera.movement": ("whip_pan",), "vfx.effects": ("speed_lines", "sparkles")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_settings(root: Path, preview_folder: Path, default_model: str = "preview") -> Settings:
    """A data folder of its own with the preview model copied in (built once per session)."""
    settings = Settings(data_dir=root / "data", default_model=default_model, device="cpu",
                        hf_cache_dir=root / "hf-cache")
    settings.ensure_dirs()
    shutil.copytree(preview_folder, settings.models_dir / "preview")
    return settings


def launch(services: StudioServices, **launch_kwargs: Any) -> tuple[StudioApp, str]:
    app = build_app(services)
    _, url, _ = app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                           **launch_kwargs)
    return app, url


def value(item: Any) -> Any:
    """An output as the client returns it: component updates come as {'__type__': 'update', 'value': ...}."""
    return item.get("value") if isinstance(item, dict) and item.get("__type__") == "update" else item


def small_form(**changes: Any) -> adapters.FormValues:
    form = adapters.FormValues(model="preview", narrative="a girl runs across a rooftop at dusk", tags=TAGS,
                               random_seed=False, seed=1234, width=64, height=64, num_frames=9, fps=8, steps=2,
                               guidance=5.0)
    return replace(form, **changes)


def tiny_hydralora(folder: Path) -> Path:
    """A random HydraLoRA for the preview model, saved as the trainer saves adapters."""
    import torch

    from engine.core.adapters import HydraSpec, base_info_for, inject_hydralora, save_adapter
    from engine.core.preview import build_preview_pipeline

    transformer = build_preview_pipeline().transformer
    injection = inject_hydralora(transformer, HydraSpec(rank=4, alpha=4, num_heads=4))
    with torch.no_grad():
        for p in injection.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.3)
    return save_adapter(injection, folder, kind="hydralora", base=base_info_for(transformer, injection, "preview"))


@contextmanager
def serve(settings: Settings, *, launch_kwargs: dict[str, Any] | None = None, client_auth: Any = None,
          **create_kwargs: Any) -> Iterator[tuple[StudioServices, StudioApp, Any]]:
    """The studio on these settings, served on a free port, with a gradio_client; all closed after.

    `create_kwargs` go to StudioServices.create (access=..., identity=...), `launch_kwargs` to launch,
    `client_auth` (USER, PASSWORD) signs the client in when launched with auth."""
    from gradio_client import Client

    # A long orphan grace: in these tests every queued job has its own run call.
    services = StudioServices.create(settings, orphan_grace_s=600, **create_kwargs)
    app, url = launch(services, **(launch_kwargs or {}))
    try:
        yield services, app, Client(url, verbose=False, auth=client_auth)
    finally:
        app.close()
        services.close()
