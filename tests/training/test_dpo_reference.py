"""The Flow-DPO reference is frozen: its predictions do not move while the adapter and a tag
encoder train (at a high lr), every valid reference choice starts at exactly log 2, and the
combinations that cannot mean what they say are refused by the config and by `engine train`."""
from __future__ import annotations

import math
import types
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from engine.core.errors import InvalidRequest
from engine.core.settings import Settings
from engine.training.config import parse_config
from engine.training.dpo import DPOTrainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

HOT_TAGS = {"enabled": True, "lr": 0.3, "tag_dropout": 0.0, "drop_all_rate": 0.0, "hidden_dim": 16}


@pytest.fixture(scope="module")
def start(dpo_ws: Any) -> types.SimpleNamespace:
    """A saved adapter and tag encoder (4 DPO steps) to start the `initial`-reference runs from."""
    trainer = DPOTrainer(parse_config(dpo_ws.raw("start", tag_encoder=HOT_TAGS, train={"max_steps": 4})),
                         dpo_ws.settings, show_progress=False)
    result = trainer.run()
    return types.SimpleNamespace(adapter=str(result.adapter_dir), tag_encoder=str(result.output_dir / "tag_encoder"))


def _trainer(ws: Any, name: str, steps: int, **over: Any) -> tuple[DPOTrainer, list[float]]:
    losses: list[float] = []
    trainer = DPOTrainer(parse_config(ws.raw(name, train={"max_steps": steps, "checkpoint_every": 100,
                                                          "batch_size": 2}, **over)),
                         ws.settings, show_progress=False, on_step_end=lambda _s, loss: losses.append(loss))
    trainer.prepare()
    return trainer, losses


@pytest.mark.parametrize("reference", ["base", "initial"])
def test_reference_predictions_are_bit_identical_across_steps(dpo_ws, start, reference) -> None:
    over: dict[str, Any] = {"tag_encoder": HOT_TAGS, "optimizer": {"lr": 3e-2}}
    if reference == "initial":
        over["adapter"] = {"init_from": start.adapter}
        over["tag_encoder"] = {**HOT_TAGS, "init_from": start.tag_encoder}
    trainer, losses = _trainer(dpo_ws, f"frozen-{reference}", 5, dpo={"beta": 1000.0, "reference": reference}, **over)
    assert trainer.config.dpo.reference == reference
    inputs = trainer._pair_inputs([0, 1], torch.Generator().manual_seed(5))
    first = trainer._reference_pred(inputs)
    encoder0 = [p.detach().clone() for p in trainer.tag_encoder.parameters()]
    seen: list[torch.Tensor] = []
    trainer.on_step_end = lambda _s, loss: (losses.append(loss), seen.append(trainer._reference_pred(inputs)))
    trainer.fit()
    assert len(seen) == 5
    assert all(torch.equal(first, later) for later in seen)  # bit-identical, not just close
    moved = max(float((a - b.detach()).abs().max()) for a, b in zip(encoder0, trainer.tag_encoder.parameters()))
    assert moved > 1e-3  # the tag encoder really trained (the check above would be empty otherwise)
    assert losses[0] == pytest.approx(math.log(2.0), abs=1e-6)


@pytest.mark.parametrize("start_from", ["adapter", "tag_encoder", "both"])
def test_step_zero_is_log2_for_every_initial_start(dpo_ws, start, start_from) -> None:
    over: dict[str, Any] = {"tag_encoder": HOT_TAGS}
    if start_from in ("adapter", "both"):
        over["adapter"] = {"init_from": start.adapter}
    if start_from in ("tag_encoder", "both"):
        over["tag_encoder"] = {**HOT_TAGS, "init_from": start.tag_encoder}
    trainer, losses = _trainer(dpo_ws, f"log2-{start_from}", 1, **over)  # reference: auto -> initial
    assert trainer.config.dpo.reference == "initial"
    trainer.fit()
    assert losses[0] == pytest.approx(math.log(2.0), abs=1e-6)
    assert trainer.dpo_log[0]["margin"] == 0.0


def test_base_reference_with_a_fresh_tag_encoder_starts_at_log2(dpo_ws) -> None:
    trainer, losses = _trainer(dpo_ws, "log2-base", 1, tag_encoder=HOT_TAGS)
    assert trainer.config.dpo.reference == "base"  # auto, nothing loaded
    trainer.fit()
    assert losses[0] == pytest.approx(math.log(2.0), abs=1e-6)


@pytest.mark.parametrize("over, field, words", [
    ({"dpo": {"reference": "base"}, "adapter": {"init_from": "saved/adapter"}}, "dpo.reference", "adapter.init_from"),
    ({"dpo": {"reference": "base"}, "tag_encoder": {"enabled": True, "init_from": "te"}}, "dpo.reference",
     "tag_encoder.init_from"),
    ({"dpo": {"reference": "initial"}}, "dpo.reference", "use reference: base"),
    ({"dpo": {"reference": "initial"}, "tag_encoder": {"enabled": True}}, "dpo.reference", "starts from none"),
    ({"curriculum": {"stages": [{"name": "a", "steps": 2}]}}, "curriculum", "one stage"),
    ({"dpo": {"sources": ["marks"]}}, "dpo.sources", "dpo.deformations"),
    ({"dpo": {"sources": ["choices", "choices"]}}, "dpo.sources", "once each"),
    ({"dpo": {"failure_weight": 0.5}}, "dpo.failure_weight", ""),
])
def test_combinations_that_cannot_mean_what_they_say_are_refused(dpo_ws, over, field, words) -> None:
    with pytest.raises(InvalidRequest) as exc:
        parse_config(dpo_ws.raw("refused", **over))
    assert exc.value.field == field and words in str(exc.value)


def test_engine_train_refuses_them_in_one_line(dpo_ws, tmp_path: Path, capsys) -> None:
    from engine.cli import main_for

    config = tmp_path / "dpo.yaml"
    config.write_text(yaml.safe_dump(dpo_ws.raw("cli", dpo={"reference": "initial"})))
    settings: Settings = dpo_ws.settings
    rc = main_for("train", ["--data-dir", str(settings.data_dir), "--device", "cpu", str(config), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "dpo.reference" in err and "Traceback" not in err
    assert not (tmp_path / "cli").exists() and not Path(dpo_ws.raw("cli")["output_dir"]).exists()
