"""Metrics that need weights (`--learned`): a requested one whose weights are missing stops the
command with one line saying what to put where (exit 2, nothing made); the reward model (tiny,
trained here) and a tiny random CLIP (with a word-level tokenizer built offline) score synthetic
clips, and their values reach the report as `learned.<metric>.<dim>` with CIs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.core.settings import Settings
from engine.eval.learned import LearnedMetric, build_metrics, parse_learned
from engine.eval.report import build_report, render_markdown
from engine.eval.runner import EvalRunner
from engine.eval.state import RunFolder, item_key
from engine.eval.suite import parse_suite
from engine.eval.synthetic import SyntheticSpec, render, write_clip

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    out = []
    for i, move in enumerate(("pan_left", "static", "zoom_in")):
        spec = SyntheticSpec(move=move, rate=1.2, hold=2, frames=12, width=64, height=48, seed=i,
                             subject_speed=1.0 if move == "static" else 0.0)
        out.append(write_clip(render(spec), spec.fps, folder / f"{move}.mp4"))
    return out


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny reward model trained for a few steps on the synthetic rating set (tiny CLIP backbone)."""
    from engine.reward.config import RewardConfig, RewardTrainConfig
    from engine.reward.synthetic import make_rating_set
    from engine.reward.train import train_reward_model

    synthetic = make_rating_set(prompts=8, variants=2, seed=0)
    config = RewardConfig(num_frames=8, fps=8, segments=2, motion_size=16, d_model=16, n_heads=2, text_buckets=64)
    out = tmp_path_factory.mktemp("reward") / "tiny"
    train = RewardTrainConfig(steps=4, batch_pairs=8, batch_clips=8, holdout=0.25, seed=0)
    train_reward_model(synthetic.data, config, train, frames_of=synthetic.frames_of, out_dir=out)
    return out


def _tiny_clip(folder: Path) -> Path:
    """A random CLIPModel small enough for a test, and a word-level tokenizer: both built offline."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<s>", "</s>", "a", "girl", "runs", "pan", "camera", "shot", "on", "twos"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                            eos_token="</s>", model_max_length=16).save_pretrained(folder)
    text = {"vocab_size": len(words), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 16, "eos_token_id": 3, "bos_token_id": 2,
            "pad_token_id": 0}
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(folder)
    return folder


def _score(settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--data-dir", str(settings.data_dir), "--device", "cpu", "eval", "score", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_missing_clip_weights_exit_2_in_one_line_through_python_m_engine(clips: list[Path], tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    out = subprocess.run([sys.executable, "-m", "engine", "--data-dir", str(tmp_path / "data"), "eval", "score",
                          str(clips[0]), "--learned", "clip=/nonexistent"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert out.returncode == 2 and out.stdout == "", out.stderr
    assert len(lines) == 1 and lines[0].startswith("error: --learned clip: no CLIP/SigLIP model"), out.stderr
    assert "at /nonexistent" in lines[0] and "hf download openai/clip-vit-large-patch14" in lines[0]


def test_every_missing_weight_is_named_with_what_to_put_where(settings: Settings, clips: list[Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "videoscore"
    fake.mkdir()
    (fake / "config.json").write_text(json.dumps({"architectures": ["Idefics2ForSequenceClassification"],
                                                  "model_type": "idefics2"}))
    not_clip = tmp_path / "t5"
    not_clip.mkdir()
    (not_clip / "config.json").write_text(json.dumps({"model_type": "t5"}))
    cases = [
        (["clip"], "--learned clip: openai/clip-vit-large-patch14 is not in the local hub cache"),
        ([f"clip={not_clip}"], "is a 't5' model; the clip metric needs a full CLIP or SigLIP model"),
        (["aesthetic"], f"the LAION aesthetic head is not at {settings.models_dir}/aesthetic/"
                        "sac+logos+ava1-l14-linearMSE.pth"),
        (["videoscore"], "TIGER-Lab/VideoScore is not in the local hub cache; on a machine with network run "
                         "`hf download TIGER-Lab/VideoScore`"),
        ([f"videoscore={fake}"], "holds a Idefics2ForSequenceClassification (VideoScore's own head); transformers"),
        (["reward"], f"no reward checkpoint in {settings.reward_dir}; train one with `python -m engine reward train"),
        (["reward=/no/such/dir"], "no reward checkpoint at /no/such/dir"),
        (["wobble"], "--learned: 'wobble' is not one of clip, aesthetic, videoscore, reward"),
        (["reward", "reward"], "reward is given twice"),
    ]
    for names, words in cases:
        flags = [f for n in names for f in ("--learned", n)]
        code, out, err = _score(settings, capsys, str(clips[0]), *flags)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and words in err, (names, err)
    assert "mantis" in _score(settings, capsys, str(clips[0]), "--learned", f"videoscore={fake}")[2]


def test_eval_run_with_missing_weights_generates_nothing(settings: Settings, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\nseeds: [1]\nprompts:\n  - {id: a, narrative: x, tags: {camera.movement: pan}}\n"
                     "systems:\n  - {id: base, model: preview}\n")
    code = main(["--data-dir", str(settings.data_dir), "eval", "run", str(suite), "--learned", "reward"])
    assert code == 2 and "--learned reward: no reward checkpoint" in capsys.readouterr().err
    assert not (settings.data_dir / "eval").exists() and not settings.database.exists()


def test_the_reward_metric_scores_a_clip_and_matches_the_model(settings: Settings, clips: list[Path],
                                                               reward_folder: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from engine.reward.model import RewardModel

    code, out, err = _score(settings, capsys, str(clips[0]), "--tag", "camera.movement=pan", "--narrative",
                            "a fox runs", "--learned", f"reward={reward_folder}", "--json")
    assert code == 0, err
    data = json.loads(out)
    model = RewardModel.load(reward_folder)
    direct = model.score_video(clips[0], "a fox runs", {"camera.movement": "pan"})
    got = data["learned"]["reward"]
    assert set(got) == {*model.config.dimensions, "reward", "p_failure"}
    assert got["reward"] == pytest.approx(direct.reward, abs=1e-5)
    assert got["p_failure"] == pytest.approx(direct.p_failure, abs=1e-5)
    assert data["learned_from"]["reward"] == model.key
    # by name from models/reward, and the text line lists the values
    (settings.reward_dir).mkdir(parents=True, exist_ok=True)
    (settings.reward_dir / "tiny").symlink_to(reward_folder, target_is_directory=True)
    code, out, err = _score(settings, capsys, str(clips[0]), "--learned", "reward=tiny")
    assert code == 0 and "; learned: reward." in out and "reward.p_failure" in out, err


def test_tiny_clip_scores_axis_phrases(settings: Settings, clips: list[Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = _tiny_clip(tmp_path / "clip")
    code, out, err = _score(settings, capsys, str(clips[0]), "--tag", "camera.movement=pan",
                            "--tag", "style.timing=on_twos", "--narrative", "a girl runs", "--learned",
                            f"clip={folder}", "--json")
    assert code == 0, err
    sims = json.loads(out)["learned"]["clip"]
    assert set(sims) == {"camera", "style", "narrative"}  # one per tagged axis, and the narrative
    assert all(-1.0 <= v <= 1.0 for v in sims.values())
    # missing tokenizer: said before anything loads
    (folder / "tokenizer.json").unlink()
    code, out, err = _score(settings, capsys, str(clips[0]), "--learned", f"clip={folder}")
    assert code == 2 and "has no tokenizer" in err


def test_run_adds_learned_scores_to_finished_clips_and_reports_them(studio_settings: Settings, clips: list[Path],
                                                                    reward_folder: Path) -> None:
    """A finished run given --learned later: each clip is scored (not regenerated) and the report
    averages learned.reward.* with bootstrap CIs; copies in results.json lose to the rescored ones."""
    import io

    from engine.runner import JobRunner
    from engine.studio import Studio

    prompts = [{"id": f"p{i}", "narrative": "a girl runs", "seeds": [0], "tags": {"camera.movement": "pan"}}
               for i in range(len(clips))]
    suite = parse_suite({"name": "later", "prompts": prompts, "systems": [{"id": "base", "model": "preview"}]},
                        "later.yaml")
    folder = RunFolder(studio_settings.data_dir / "eval" / "later")
    folder.start(suite)
    items = {item_key("base", p["id"], 0): {"system": "base", "prompt": p["id"], "seed": 0, "status": "done",
                                            "video": str(clip), "scores": {"adherence": {"camera": True}}}
             for p, clip in zip(prompts, clips)}
    folder.write_state((1, 1), items)
    folder.merge([])  # results.json holds the old copies
    metrics = build_metrics(parse_learned([f"reward={reward_folder}"]), studio_settings)
    assert all(isinstance(m, LearnedMetric) for m in metrics)
    studio = Studio(studio_settings)
    try:
        summary = EvalRunner(JobRunner(studio), suite, folder, stream=io.StringIO(), learned=metrics).run()
        assert (summary.generated, summary.reused, summary.rescored) == (0, 3, 3)
        again = EvalRunner(JobRunner(studio), suite, folder, stream=io.StringIO(), learned=metrics).run()
        assert again.rescored == 0  # same weights: nothing to redo
    finally:
        studio.close()
    stored = folder.all_items()
    assert all(it["rev"] == 1 and "reward" in it["scores"]["learned"] for it in stored.values())
    report = build_report(folder)
    m = report["systems"]["base"]["metrics"]
    reward = m["learned.reward.reward"]
    assert reward["n"] == 3 and reward["ci"][0] <= reward["mean"] <= reward["ci"][1]
    assert m["camera_adherence"]["mean"] == 1.0
    md = render_markdown(report)
    assert "| learned.reward.p_failure ↓ |" in md and "| learned.reward.reward ↑ |" in md


def test_aesthetic_runs_the_laion_head_on_a_local_tower(settings: Settings, clips: list[Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A folder holding the head file beside a (tiny, random) CLIP vision tower with 768-wide
    embeddings, as ViT-L/14 gives: the LAION head runs on it; values on the 0-10 scale."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from engine.curation.aesthetic import LAION_HEAD_FILE, _laion_head

    folder = tmp_path / "aesthetic"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cfg = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                               image_size=32, patch_size=8, projection_dim=768)
        CLIPVisionModelWithProjection(cfg).save_pretrained(folder)
        torch.save(_laion_head().state_dict(), folder / LAION_HEAD_FILE)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    code, out, err = _score(settings, capsys, str(clips[1]), "--learned", f"aesthetic={folder}", "--json")
    assert code == 0, err
    value = json.loads(out)["learned"]["aesthetic"]["score"]
    assert 0.0 <= value <= 10.0
    (folder / "preprocessor_config.json").unlink()
    code, out, err = _score(settings, capsys, str(clips[1]), "--learned", f"aesthetic={folder}")
    assert code == 2 and "no preprocessor_config.json" in err


def test_eval_run_scores_new_clips_with_the_learned_metric(studio_settings: Settings, reward_folder: Path,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\nseeds: [5]\ngeneration: {width: 64, height: 64, num_frames: 9, steps: 1}\n"
                     "prompts:\n  - {id: a, narrative: a girl runs, tags: {camera.movement: pan}}\n"
                     "systems:\n  - {id: base, model: preview}\n")
    argv = ["--data-dir", str(studio_settings.data_dir), "--device", "cpu", "eval", "run", str(suite), "--run", "lr",
            "--learned", f"reward={reward_folder}"]
    assert main(argv) == 0, capsys.readouterr().err
    item = RunFolder(studio_settings.data_dir / "eval" / "lr").all_items()[item_key("base", "a", 5)]
    assert set(item["scores"]["learned"]["reward"]) >= {"reward", "p_failure"} and "rev" not in item
    md = (studio_settings.data_dir / "eval" / "lr" / "report.md").read_text()
    assert "| learned.reward.reward ↑ |" in md and "![axes](plots/axes.png)" in md
