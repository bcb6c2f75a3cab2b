"""A real tiny eval run for the Eval tab's tests: the preview model, 2 systems x 2 prompts x 1 seed,
through the real runner (about 2 s of generation on a CPU), in a data folder of its own."""
from __future__ import annotations

import io
from pathlib import Path

from engine.core.settings import Settings

from support.app import make_settings

SUITE = """\
name: tiny
seeds: [1]
generation: {width: 64, height: 64, num_frames: 9, steps: 1}
prompts:
  - {id: pan, narrative: "a girl crosses a rooftop", tags: {camera.movement: pan, style.timing: on_twos}}
  - {id: still, narrative: "an old man waits", tags: {camera.movement: static, motion.intensity: still}}
systems:
  - {id: tags, model: preview}
  - {id: blind, model: preview, use_tags: false}
"""
RUN = "tiny"


def make_eval_run(root: Path, preview_folder: Path) -> Settings:
    """Settings whose data folder holds the finished run `RUN` (4 clips in the History)."""
    import torch

    from engine.eval.runner import EvalRunner
    from engine.eval.state import RunFolder
    from engine.eval.suite import load_suite
    from engine.runner import JobRunner
    from engine.studio import Studio

    settings = make_settings(root, preview_folder)
    (root / "suite.yaml").write_text(SUITE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors on shared cores
    studio = Studio(settings)
    try:
        summary = EvalRunner(JobRunner(studio), load_suite(root / "suite.yaml"),
                             RunFolder(settings.data_dir / "eval" / RUN), stream=io.StringIO()).run()
        assert (summary.generated, summary.failed) == (4, 0), summary
    finally:
        studio.close()
        torch.set_num_threads(threads)
    return settings
