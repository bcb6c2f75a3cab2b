"""Fixtures of the preference-optimization tests: a synthetic rating set and a studio with the
preview model, shared by the DPO test modules (one set-up per session)."""
from __future__ import annotations

import shutil
import types
from pathlib import Path
from typing import Any

import pytest

from engine.core.settings import Settings
from engine.reward.synthetic import write_rating_set


class DPOWorkspace(types.SimpleNamespace):
    root: Path
    pairs: Path
    deformations: Path
    settings: Settings

    def raw(self, name: str, **over: Any) -> dict[str, Any]:
        """A small DPO config on the preview model; `over` merges one level deep per section."""
        raw: dict[str, Any] = {
            "model": "preview", "output_dir": str(self.root / name), "seed": 1,
            "cache": {"dir": str(self.root / "cache"), "dtype": "float32"},
            "data": {"manifest": str(self.pairs), "num_frames": 5, "fps": 8, "base_size": [32, 32]},
            "adapter": {"rank": 4, "alpha": 4}, "optimizer": {"lr": 3e-3},
            "train": {"max_steps": 16, "checkpoint_every": 100, "batch_size": 2},
            "curriculum": {"enabled": False}, "dpo": {"beta": 1000.0},
        }
        for key, value in over.items():
            raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
        return raw


@pytest.fixture(scope="session")
def dpo_ws(tmp_path_factory: pytest.TempPathFactory, preview_folder: Path) -> DPOWorkspace:
    root = tmp_path_factory.mktemp("dpo")
    # Three prompts, each a clean clip and a flickering one; the raters prefer the clean clip.
    files = write_rating_set(root / "set", prompts=3, variants=2, kinds=("clean", "flicker"), seed=0)
    settings = Settings(data_dir=root / "studio", default_model="preview", device="cpu")
    settings.ensure_dirs()
    shutil.copytree(preview_folder, settings.models_dir / "preview")
    return DPOWorkspace(root=root, pairs=files["pairs"], deformations=files["deformations"], settings=settings)
