"""Shared test set-up: offline, no analytics, and a fresh data folder per test."""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# scrypt at 2^14 for the suite's hundreds of sign-ins (2^17, the default, costs ~0.5 s each); the
# re-hash and cost tests set their own.
os.environ.setdefault("ANIMATRIX_KDF_N", str(2**14))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from engine.core.settings import Settings  # noqa: E402


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings pointing at an empty data folder of this test's own."""
    s = Settings(data_dir=tmp_path / "data", default_model="preview", device="cpu")
    s.ensure_dirs()
    return s


@pytest.fixture(scope="session")
def preview_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The preview model, written once per test session through the real builder."""
    from engine.core.preview import ensure_preview_model

    return ensure_preview_model(tmp_path_factory.mktemp("models"))


@pytest.fixture
def studio_settings(settings: Settings, preview_folder: Path) -> Settings:
    """Settings whose models folder already holds the preview model (copied, not rebuilt)."""
    import shutil

    shutil.copytree(preview_folder, settings.models_dir / "preview")
    return settings


@pytest.fixture(autouse=True)
def _fresh_login_throttle():
    """The sign-in back-off is per process: one test's wrong passwords must not lock out the next test."""
    from engine.rating.accounts import LOGIN_THROTTLE

    LOGIN_THROTTLE.reset()
    yield
    LOGIN_THROTTLE.reset()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors on a shared 2-core machine: thread hand-offs cost more than the maths."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The rating studio template and its fixtures (`template`, `studio`), shared by the rating, reward and UI tests.
pytest_plugins = ("support.rating", "support.postgres")
