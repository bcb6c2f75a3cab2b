"""Adapter training on the preview model with a synthetic dataset (coloured squares whose motion
follows their tags): config, data, curriculum, loss going down, exact resume, validation samples
in the studio history, and the trained adapter in the studio's pipeline."""
from __future__ import annotations

import copy
import json
import shutil
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.core.errors import InvalidRequest
from engine.core.settings import Settings
from engine.training.config import load_config, parse_config
from engine.training.synthetic import write_synthetic_dataset


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, preview_folder: Path) -> types.SimpleNamespace:
    root = tmp_path_factory.mktemp("training")
    manifest = write_synthetic_dataset(root / "data", clips=6, size=(32, 32), frames=9, fps=8)
    settings = Settings(data_dir=root / "studio", default_model="preview", device="cpu")
    settings.ensure_dirs()
    shutil.copytree(preview_folder, settings.models_dir / "preview")
    return types.SimpleNamespace(root=root, manifest=manifest, settings=settings, preview=preview_folder)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _raw(ws: types.SimpleNamespace, name: str, **over: Any) -> dict[str, Any]:
    base = {
        "model": "preview", "output_dir": str(ws.root / name), "seed": 3,
        "cache": {"dir": str(ws.root / "cache"), "dtype": "float32"},
        "data": {"manifest": str(ws.manifest), "num_frames": 5, "fps": 8, "base_size": [32, 32]},
        "adapter": {"rank": 4, "alpha": 4},
        "train": {"max_steps": 8, "checkpoint_every": 4, "batch_size": 2},
        "curriculum": {"enabled": False},
    }
    return _merge(base, over)


def _run(ws: types.SimpleNamespace, raw: dict[str, Any], **kw: Any):
    from engine.training.loop import Trainer

    hook = kw.pop("on_step_end", None)
    return Trainer(parse_config(raw), ws.settings, on_step_end=hook, show_progress=False).run(**kw)


# -------------------------------------------------------------------------------- config
def test_config_defaults_follow_ptta_and_errors_name_the_field(ws, tmp_path) -> None:
    cfg = parse_config({"model": "preview", "output_dir": "out", "data": {"manifest": "m.jsonl", "num_frames": 9},
                        "train": {"max_steps": 10}}, tmp_path)
    a, o = cfg.adapter, cfg.optimizer
    assert (a.kind, a.rank, a.alpha, a.heads, a.router) == ("hydralora", 32, 32.0, 4, "learned")
    assert (o.lr, o.betas, o.weight_decay) == (2e-5, (0.9, 0.99), 0.01)
    assert cfg.output_dir == str(tmp_path / "out") and cfg.data.manifest == str(tmp_path / "m.jsonl")

    def refused(over: dict[str, Any]) -> InvalidRequest:
        with pytest.raises(InvalidRequest) as exc:
            parse_config(_raw(ws, "x", **over))
        return exc.value

    e = refused({"train": {"batchsize": 2}})
    assert e.field == "train.batchsize" and "unknown setting" in e.reason and "batch_size" in e.reason
    assert refused({"optimizer": {"lr": -1}}).field == "optimizer.lr"
    assert refused({"optimizer": {"lr": "fast"}}).field == "optimizer.lr"
    assert refused({"adapter": {"kind": "dora"}}).field == "adapter.kind"
    e = refused({"data": {"num_frames": 8}})
    assert e.field == "data.num_frames" and "4k+1" in e.reason
    assert refused({"data": {"base_size": [30, 32]}}).field == "data.base_size"
    assert refused({"adapter": {"kind": "lora", "heads": 4}}).field == "adapter.heads"
    assert refused({"curriculum": {"enabled": True, "stages": [{"name": "a"}]}}).field == "curriculum.stages[0].steps"
    assert refused({"surprise": 1}).field == "surprise"

    path = tmp_path / "run.yaml"
    path.write_text("model: preview\noutput_dir: runs/a\ndata: {manifest: data/m.jsonl, num_frames: 9}\n"
                    "train: {max_steps: 5}\noptimizer: {lr: 2e-5}\n")
    loaded = load_config(path)
    assert loaded.optimizer.lr == 2e-5 and loaded.output_dir == str(tmp_path / "runs" / "a")
    path.write_text("model: preview\nmodel: preview\n")
    with pytest.raises(InvalidRequest, match="duplicate key"):
        load_config(path)


# --------------------------------------------------------------------------------- data
def test_dataset_reads_jsonl_parquet_and_caption_folders(ws, tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.core.pks import load_taxonomy
    from engine.training.dataset import frame_indices, make_buckets, nearest_bucket, read_clips

    tax = load_taxonomy()
    cfg = parse_config(_raw(ws, "x")).data
    clips, report = read_clips(cfg, tax)
    assert report.used == 6 and clips[2].deformations == ("squash_and_stretch",) and clips[0].deformations == ()
    assert clips[0].tags["camera.movement"] == ("pan",) and clips[1].tags["camera.movement"] == ("tilt",)

    rows = [json.loads(line) for line in ws.manifest.read_text().splitlines()]
    rows[0]["selected"] = False
    rows[1]["tags"]["camera.movement"] = "moonwalk"  # not in the taxonomy: dropped, not fatal
    for r in rows:
        r["clip"] = str(ws.manifest.parent / r["clip"])
        r["tags"] = json.dumps(r["tags"])
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    pclips, preport = read_clips(parse_config(_raw(ws, "x", data={"manifest": str(tmp_path / "m.parquet")})).data, tax)
    assert preport.used == 5 and preport.skipped["not selected"] == 1 and preport.dropped_tags == 1
    assert "camera.movement" not in pclips[0].tags and pclips[0].caption == clips[1].caption

    # A curation with clips.cut: selected leaves rejected rows without a file: read, never fatal.
    uncut = [json.loads(line) for line in ws.manifest.read_text().splitlines()]
    uncut[0].update(selected=False, clip=None)
    manifest = ws.manifest.parent / "uncut.jsonl"  # beside the clips its paths are relative to
    manifest.write_text("".join(json.dumps(r) + "\n" for r in uncut))
    for only_selected in (True, False):
        data = {"manifest": str(manifest), "only_selected": only_selected}
        uclips, ureport = read_clips(parse_config(_raw(ws, "x", data=data)).data, tax)
        assert ureport.used == 5 and sum(ureport.skipped.values()) == 1, ureport.skipped
        assert list(ureport.skipped) == (["not selected"] if only_selected else ["not selected (never cut)"])
        assert all(c.path.is_file() for c in uclips)

    folder = tmp_path / "folder"
    write_synthetic_dataset(folder, clips=2, size=(32, 32), frames=5, captions_txt=True)
    (folder / "clips" / "clip001.txt").unlink()
    fclips, freport = read_clips(parse_config(_raw(ws, "x", data={"manifest": str(folder / "clips")})).data, tax)
    assert [c.caption for c in fclips] == ["a red square slides right"]
    assert freport.skipped["without a .txt caption"] == 1

    assert frame_indices(9, 8.0, 5, 8.0, 4, 5) == (2, 3, 4, 5, 6)  # centred, consecutive
    assert frame_indices(9, 8.0, 5, 4.0, 4, 5) == (0, 2, 4, 6, 8)  # resampled to 4 fps
    assert frame_indices(7, 8.0, 9, 8.0, 4, 5) == (1, 2, 3, 4, 5)  # too short for 9: the largest 4k+1
    assert frame_indices(3, 8.0, 9, 8.0, 4, 5) is None
    buckets = make_buckets((64, 64), 16, 256)
    assert (64, 64) in buckets and nearest_bucket(1920, 1080, buckets) in {(80, 48), (96, 48)}
    assert nearest_bucket(480, 832, buckets)[0] < nearest_bucket(480, 832, buckets)[1]


def test_curriculum_sampler_draws_from_each_stage_subset(ws) -> None:
    from engine.core.pks import load_taxonomy
    from engine.training.curriculum import Curriculum, CurriculumSampler, stage_members
    from engine.training.dataset import plan_clips, read_clips

    raw = _raw(ws, "x", curriculum={"enabled": True, "blend_steps": 4, "stages": [
        {"name": "style", "steps": 10, "deformation": "absent", "motion_quantile": [0.0, 0.5]},
        {"name": "motion", "steps": 10, "deformation": "absent", "require_tags": {"motion.intensity": "energetic"}},
        {"name": "deformation", "steps": 10, "deformation": "present"},
    ]})
    cfg = parse_config(raw)
    clips, report = read_clips(cfg.data, load_taxonomy())
    planned = plan_clips(clips, cfg.data, 4, 16, 256, report)
    cur = Curriculum(cfg.curriculum.stages, cfg.curriculum.blend_steps)
    members = stage_members(planned, cur.stages)
    deformed = {i for i, p in enumerate(planned) if p.clip.deformations}
    assert set(members[2]) == deformed and not deformed & (set(members[0]) | set(members[1]))
    assert all(planned[i].clip.tags["motion.intensity"] == ("energetic",) for i in members[1])
    slow = sorted(p.clip.motion for p in planned if not p.clip.deformations)
    assert all(planned[i].clip.motion <= slow[len(slow) // 2] for i in members[0])

    sampler = CurriculumSampler(planned, cur, members, batch_size=2, world_size=1, seed=5)
    seen: dict[int, set[int]] = {0: set(), 1: set(), 2: set()}
    for step in range(40):
        w = cur.weights(step)
        assert abs(w.sum() - 1) < 1e-9
        stage, idx = sampler.draw(step, step)
        assert w[stage] > 0 and set(idx) <= set(members[stage])
        if w.max() == 1.0:
            assert stage == cur.stage_at(step)
        seen[stage] |= set(idx)
    assert seen[0] == set(members[0]) and seen[2] == set(members[2])  # every clip of a subset comes up
    # Linear blend over steps 8..11 around the boundary at 10.
    assert [list(cur.weights(s)) for s in (7, 8, 9, 10, 11, 12)] == [
        [1, 0, 0], [0.875, 0.125, 0], [0.625, 0.375, 0], [0.375, 0.625, 0], [0.125, 0.875, 0], [0, 1, 0]]
    with pytest.raises(InvalidRequest, match="stage 'none'"):
        stage_members(planned, [cur.stages[0].__class__(name="none", steps=1, require_tags={"camera.movement": ("orbit",)})])

    # Resumable: the cursors are the whole state.
    a = CurriculumSampler(planned, cur, members, 2, 1, 5)
    for d in range(7):
        a.draw(d, d)
    b = CurriculumSampler(planned, cur, members, 2, 1, 5)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert [a.draw(d, d) for d in range(7, 20)] == [b.draw(d, d) for d in range(7, 20)]


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def overfit_runs(ws) -> dict[str, Any]:
    """60 steps on one fixed batch, HydraLoRA N=4 and plain LoRA (higher lr than PTTA's, for a test)."""
    runs = {}
    for kind in ("hydralora", "lora"):
        raw = _raw(ws, f"overfit-{kind}", adapter={"kind": kind, "rank": 8, "alpha": 8, "targets": ["blocks.*", "proj_out"]},
                   optimizer={"lr": 0.02}, train={"max_steps": 60, "checkpoint_every": 60, "overfit_batch": True})
        runs[kind] = _run(ws, raw)
    return runs


@pytest.mark.parametrize("kind", ["hydralora", "lora"])
def test_training_lowers_the_loss(overfit_runs, kind) -> None:
    losses = [loss for _, loss in overfit_runs[kind].losses]
    assert len(losses) == 60
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])
    out = overfit_runs[kind].output_dir
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,lr,stage") and len(rows) == 61
    adapter = overfit_runs[kind].adapter_dir
    assert (adapter / "animatrix_adapter.json").is_file()
    assert (adapter / ("hydralora.safetensors" if kind == "hydralora" else "pytorch_lora_weights.safetensors")).is_file()


def test_trained_adapter_changes_the_studio_pipeline(ws, overfit_runs) -> None:
    from diffusers import DiffusionPipeline, WanTransformer3DModel

    from engine.core.adapters import apply_adapters
    from engine.core.requests import AdapterRef

    pipe = DiffusionPipeline.from_pretrained(ws.preview)
    pipe.set_progress_bar_config(disable=True)

    def frames() -> torch.Tensor:
        g = torch.Generator().manual_seed(1)
        return pipe(prompt="a red square slides right", num_frames=5, height=32, width=32, num_inference_steps=2,
                    guidance_scale=1.0, generator=g, output_type="pt").frames[0]

    base = frames()
    for kind in ("hydralora", "lora"):
        handle = apply_adapters(pipe, [AdapterRef(str(overfit_runs[kind].adapter_dir))], "preview")
        assert (frames() - base).abs().max() > 1e-3
        handle.remove()
        assert torch.equal(frames(), base)
    other = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=6, in_channels=16,
                                  out_channels=16, text_dim=32, freq_dim=256, ffn_dim=48, num_layers=2,
                                  cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    with pytest.raises(InvalidRequest, match="does not fit"):
        apply_adapters(types.SimpleNamespace(transformer=other),
                       [AdapterRef(str(overfit_runs["hydralora"].adapter_dir))], "preview")


class _Crash(RuntimeError):
    pass


def test_killed_run_resumes_to_exactly_the_same_weights(ws) -> None:
    """Curriculum with blending, caption/adapter/tag dropout, grad accumulation and checkpointing,
    the tag encoder trained jointly and validation samples: a crash after step 5 and a resume from the last
    checkpoint (step 4) end with the weights of the uninterrupted run, bit for bit."""
    from safetensors.torch import load_file

    from engine.storage.db import open_database
    from engine.storage.clips import HistoryService

    def raw(name: str) -> dict[str, Any]:
        return _raw(ws, name, data={"caption_dropout": 0.3}, adapter={"dropout": 0.1},
                    train={"max_steps": 8, "checkpoint_every": 3, "keep_checkpoints": 2, "grad_accum": 2,
                           "gradient_checkpointing": True},
                    curriculum={"enabled": True, "blend_steps": 2, "stages": [
                        {"name": "calm", "steps": 4, "deformation": "absent"},
                        {"name": "deformation", "steps": 4, "deformation": "present"}]},
                    tag_encoder={"enabled": True, "hidden_dim": 16, "lr": 1e-3},
                    validation={"every": 4, "steps": 2, "guidance": 1.0, "width": 32, "height": 32, "num_frames": 5,
                                "prompts": [{"narrative": "a red square slides right",
                                             "tags": {"camera.movement": "pan"}}]})

    whole = _run(ws, raw("whole"))
    assert [p.name for p in whole.checkpoints] == ["step-000003", "step-000004", "step-000006", "step-000008"]

    def crash(step: int, loss: float) -> None:
        if step == 5:
            raise _Crash("simulated crash")

    with pytest.raises(_Crash):
        _run(ws, raw("crashed"), on_step_end=crash)
    out = Path(raw("crashed")["output_dir"])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000003", "step-000004"]
    resumed = _run(ws, raw("crashed"))
    assert resumed.resumed_from == out / "checkpoints" / "step-000004"
    assert [s for s, _ in resumed.losses] == [5, 6, 7, 8]
    assert [loss for s, loss in whole.losses if s > 4] == [loss for _, loss in resumed.losses]

    a = load_file(str(whole.output_dir / "checkpoints" / "step-000008" / "trainable.safetensors"))
    b = load_file(str(out / "checkpoints" / "step-000008" / "trainable.safetensors"))
    assert a.keys() == b.keys() and a["tag_encoder.gates"].abs().sum() > 0  # the tag encoder trained too
    assert all(torch.equal(a[k], b[k]) for k in a)
    metric_steps = [int(r.split(",")[0]) for r in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert metric_steps == list(range(1, 9))
    assert (resumed.adapter_dir.parent / "tag_encoder" / "tag_encoder.safetensors").is_file()

    # Validation samples: files under samples/, and history entries tagged with their checkpoint.
    assert [p.parent.name for p in whole.samples] == ["step-000004", "step-000008"]
    db = open_database(ws.settings.database)
    try:
        page = HistoryService(db, ws.settings.media_dir).list(source="training", limit=50)
        mine = [r for r in page.items if r.checkpoint and r.checkpoint.startswith(str(whole.output_dir))]
        # The adapter is kept beside the samples: keep_checkpoints (2) has pruned step 4's checkpoint.
        assert not (whole.output_dir / "checkpoints" / "step-000004").exists()
        assert sorted(r.checkpoint for r in mine) == sorted(
            str(whole.output_dir / "samples" / s / "adapter") for s in ("step-000004", "step-000008"))
        assert all(r.status == "done" and r.request.adapters[0].path == r.checkpoint for r in mine)
        assert all((Path(r.checkpoint) / "animatrix_adapter.json").is_file() for r in mine)
        assert all(r.request.tag_encoder == str(Path(r.checkpoint).parent / "tag_encoder") for r in mine)
        assert all(r.request.tags_in_prompt is False for r in mine)  # with a tag encoder: not in the text
    finally:
        db.dispose()
    with pytest.raises(InvalidRequest, match="differs from the run"):
        changed = _merge(raw("crashed"), {"optimizer": {"lr": 1e-3}})
        _run(ws, changed)


def test_cache_resumes_and_cli_reports_config_errors(ws, tmp_path, capsys) -> None:
    from engine.cli import _Parser, main_for
    from engine.training.cli import add_parser, run

    raw = _raw(ws, "cache-run", cache={"dir": str(tmp_path / "cache")})
    _run(ws, raw, cache_only=True)
    files = sorted((tmp_path / "cache" / "latents").glob("*.safetensors"))
    assert len(files) == 6
    stamps = {f: f.stat().st_mtime_ns for f in files}
    files[0].unlink()
    _run(ws, raw, cache_only=True)  # only the missing file is encoded again
    assert all(f.is_file() for f in files)
    assert all(f.stat().st_mtime_ns == stamps[f] for f in files[1:])
    assert not list((tmp_path / "cache").rglob("*.tmp"))

    # The studio CLI's wiring: `python -m engine train CONFIG ...` through add_parser + run.
    good = tmp_path / "good.yaml"
    good.write_text(json.dumps(_raw(ws, "cli-run", cache={"dir": str(tmp_path / "cache")})))  # JSON is YAML
    parser = _Parser(prog="python -m engine")
    add_parser(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    args = parser.parse_args(["train", str(good), "--cache-only", "--no-progress"])
    capsys.readouterr()
    assert run(args, ws.settings) == 0
    assert "cache ready" in capsys.readouterr().out

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model: preview\noutput_dir: {tmp_path / 'o'}\ndata: {{manifest: {ws.manifest}, num_frames: 6}}\n"
                   "train: {max_steps: 2}\n")
    capsys.readouterr()
    assert main_for("train", [str(bad), "--data-dir", str(ws.settings.data_dir), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data.num_frames:")
