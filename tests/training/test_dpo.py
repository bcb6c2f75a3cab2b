"""Flow-DPO on the preview model: the loss by hand, log 2 at step 0, a growing implicit reward
margin on the training pairs, a frozen base, and the `engine train` command with a dpo section."""
from __future__ import annotations

import json
import math
import types
from typing import Any

import pytest
import torch
import yaml

from engine.core.errors import InvalidRequest
from engine.core.pks import load_taxonomy
from engine.training.config import DPOConfig, parse_config
from engine.training.dpo import DPOTrainer, flow_dpo_loss, read_preference_pairs


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def ws(dpo_ws) -> Any:
    return dpo_ws  # tests/training/conftest.py


def _raw(ws: Any, name: str, **over: Any) -> dict[str, Any]:
    return ws.raw(name, **over)


def test_flow_dpo_loss_by_hand() -> None:
    target_w, target_l = torch.zeros(1, 2, 2), torch.ones(1, 2, 2)
    # errors: policy 1 (winner) and 4 (loser), reference 0 and 0 -> inside = (1 - 0) - (4 - 0) = -3
    loss, margin = flow_dpo_loss(target_w + 1, target_l + 2, target_w, target_l, target_w, target_l, beta=1.0)
    assert float(margin) == pytest.approx(1.5)  # -beta/2 * inside
    assert float(loss) == pytest.approx(math.log1p(math.exp(-1.5)))  # -log sigma(1.5)
    # Policy = reference: no margin, loss log 2, whatever the errors.
    pred = torch.randn(3, 4)
    loss, margin = flow_dpo_loss(pred, pred + 1, pred, pred + 1, torch.zeros(3, 4), torch.ones(3, 4), beta=500.0)
    assert float(loss) == pytest.approx(math.log(2.0)) and torch.equal(margin, torch.zeros(3))


def test_ties_gold_and_cancelling_verdicts_are_dropped(tmp_path) -> None:
    def row(v0: str, v1: str, l0: float, dim: str = "visual_quality", **extra: Any) -> dict[str, Any]:
        return {"caption": "p", "tags": "{}", "video_0": v0, "video_1": v1, "label_0": l0, "label_1": 1.0 - l0,
                "dimension": dim, **extra}

    rows = [row("a.mp4", "b.mp4", 1.0), row("a.mp4", "b.mp4", 1.0, "artistic_motion"),  # a > b twice
            row("c.mp4", "d.mp4", 0.5),  # a tie: no preference
            row("e.mp4", "f.mp4", 1.0), row("e.mp4", "f.mp4", 0.0, "artistic_motion"),  # cancel out
            row("g.mp4", "h.mp4", 0.0, is_gold=True),  # a gold pair (never in an export; refused anyway)
            row("i.mp4", "j.mp4", 0.0, "style_fidelity")]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = read_preference_pairs(path, DPOConfig(), load_taxonomy())
    names = [(found.clips[w].path.name, found.clips[lo].path.name) for w, lo in found.pairs]
    assert names == [("a.mp4", "b.mp4"), ("j.mp4", "i.mp4")]
    assert found.dropped["ties"] == 1 and found.dropped["gold-pair rows"] == 1
    assert found.dropped["pairs whose verdicts cancel out"] == 1
    only_vq = read_preference_pairs(path, DPOConfig(dimensions=("visual_quality",)), load_taxonomy())
    assert len(only_vq.pairs) == 2  # a > b, and e > f now that its artistic-motion verdict is left out


def test_config_errors_name_the_field(ws) -> None:
    for over, name in (({"dpo": {"beta": 0.0}}, "dpo.beta"), ({"dpo": {"reference": "ema"}}, "dpo.reference"),
                       ({"dpo": {"dimensions": ["speed"]}}, "dpo.dimensions"), ({"dpo": {"betta": 1}}, "dpo.betta")):
        with pytest.raises(InvalidRequest) as exc:
            parse_config(_raw(ws, "x", **over))
        assert exc.value.field == name
    assert parse_config(_raw(ws, "x")).dpo == DPOConfig(beta=1000.0, reference="base")
    assert parse_config({k: v for k, v in _raw(ws, "x").items() if k != "dpo"}).dpo is None


@pytest.fixture(scope="module")
def dpo_run(ws) -> types.SimpleNamespace:
    """One 16-step DPO run on the rating set, shared by the tests that read its results."""
    losses: list[float] = []
    trainer = DPOTrainer(parse_config(_raw(ws, "run")), ws.settings, show_progress=False,
                         on_step_end=lambda step, loss: losses.append(loss))
    trainer.prepare()
    base = {k: v.clone() for k, v in trainer.pipe.transformer.state_dict().items() if "animatrix_hydra" not in k}
    before = trainer.implicit_margins()
    result = trainer.fit()
    return types.SimpleNamespace(trainer=trainer, losses=losses, base=base, before=before, result=result)


def test_dpo_starts_at_log2_and_grows_the_margin_with_a_frozen_base(ws, dpo_run) -> None:
    trainer, losses, base, result = dpo_run.trainer, dpo_run.losses, dpo_run.base, dpo_run.result
    assert len(trainer.pairs) == 3
    for w, lo in trainer.pairs:  # the preferred clip of each pair is the clean one
        assert trainer.clip_planned[w].clip.path.stem < trainer.clip_planned[lo].clip.path.stem
    assert torch.equal(dpo_run.before, torch.zeros(3))
    assert losses[0] == pytest.approx(math.log(2.0), abs=1e-6)  # policy = reference at step 0
    after = trainer.implicit_margins()
    print(f"implicit reward margin per pair: {after.tolist()}; losses {losses[0]:.4f} -> {losses[-1]:.4f}")
    assert float(after.mean()) > 0.01 and bool((after > 0).all())
    assert trainer.dpo_log[-1]["accuracy"] == 1.0 and len(trainer.dpo_log) == 16
    now = {k: v for k, v in trainer.pipe.transformer.state_dict().items() if "animatrix_hydra" not in k}
    assert now.keys() == base.keys() and all(torch.equal(base[k], now[k]) for k in base)
    assert (result.adapter_dir / "animatrix_adapter.json").is_file()
    assert (ws.root / "run" / "dpo_metrics.csv").read_text().startswith("step,loss,margin,accuracy")


def test_engine_train_runs_a_dpo_stage_from_a_saved_adapter(ws, dpo_run, capsys) -> None:
    from engine.cli import main_for

    def main(argv: list[str]) -> int:
        return main_for("train", argv)

    start = dpo_run.result.adapter_dir  # the shared run's final adapter
    raw = _raw(ws, "run2", adapter={"init_from": str(start)}, dpo={"reference": "initial", "beta": 1000.0},
               train={"max_steps": 3})
    config = ws.root / "dpo.yaml"
    config.write_text(yaml.safe_dump(raw))
    rc = main(["--data-dir", str(ws.settings.data_dir), "--device", "cpu", str(config), "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "trained 3 steps" in out.out and "dpo data: 3 preference pairs" in out.err
    first = (ws.root / "run2" / "dpo_metrics.csv").read_text().splitlines()[1].split(",")
    assert float(first[1]) == pytest.approx(math.log(2.0), abs=1e-5)  # the frozen copy is the reference


def test_tags_stay_out_of_the_text_prompt_by_default_with_a_tag_encoder(ws) -> None:
    assert parse_config(_raw(ws, "x")).data.compile_tags is True  # no tag encoder: tags in the text, as before
    with_encoder = parse_config(_raw(ws, "x", tag_encoder={"enabled": True}))
    assert with_encoder.data.compile_tags is False  # the tags reach the model through their own channel
    forced = parse_config(_raw(ws, "x", tag_encoder={"enabled": True}, data={"compile_tags": True}))
    assert forced.data.compile_tags is True  # the switch stays


def test_caption_dropout_drops_the_prompt_of_both_clips_of_a_pair(ws) -> None:
    trainer = DPOTrainer(parse_config(_raw(ws, "dropout", data={"caption_dropout": 1.0})), ws.settings,
                         show_progress=False)
    trainer.prepare()
    inputs = trainer._pair_inputs([0, 1], torch.Generator().manual_seed(0))
    empty = trainer.cache.read(trainer.empty_text_file)
    expected = trainer.ops.collate_text([empty] * 4, trainer.config.data.max_text_tokens)
    assert inputs["text"].keys() == expected.keys()
    assert all(torch.equal(inputs["text"][k].float(), expected[k].float()) for k in expected)
    kept = DPOTrainer(parse_config(_raw(ws, "no-dropout")), ws.settings, show_progress=False)
    kept.prepare()
    text = kept._pair_inputs([0, 1], torch.Generator().manual_seed(0))["text"]
    assert not all(torch.equal(text[k].float(), expected[k].float()) for k in expected)
