"""`python -m engine curate`: raw footage -> scored, tagged training manifest.

    python -m engine curate CONFIG.yaml
    python -m engine curate --input videos/ --out data/curation --workers 2
    python -m engine curate CONFIG.yaml --stage shots --stage clips      # some stages only
    python -m engine curate CONFIG.yaml --set motion.preset=fast --set selection.theta=8

Flags override the file; `--set KEY=VALUE` reaches any setting (the value is read as YAML).
Bad input (unknown key, bad value, missing folder, missing model) exits 2 with one line.
Until `engine/cli.py` wires the subcommand, `python -m engine.curation ...` runs the same.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..core.errors import InvalidRequest
from ..core.settings import Settings
from .config import (AESTHETIC_SCORERS, CAPTIONERS, CUT_MODES, EXECUTORS, STAGES, CurationConfig,
                     apply_overrides)



def _setting(text: str) -> tuple[str, Any]:
    from ..core.errors import InvalidRequest
    from ..core.yamlsafe import load_yaml_text

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE (e.g. selection.theta=8)")
    try:  # the same strict loader as every user file: no aliases, bounded size and depth
        return key.strip(), load_yaml_text(value, f"--set {key.strip()}", key.strip())
    except InvalidRequest as exc:
        raise argparse.ArgumentTypeError(f"{key.strip()}: {exc.reason}") from None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `curate` subcommand to `python -m engine`'s subparsers and return it."""
    c = subparsers.add_parser("curate", help="curate raw anime footage into a scored, tagged training manifest",
                              description=__doc__.split("\n\n")[0])
    c.add_argument("config", nargs="?", type=Path, help="YAML config (see docs/curation.md); flags override it")
    c.add_argument("--input", action="append", default=[], metavar="PATH", help="a folder or video file (repeatable)")
    c.add_argument("--out", type=Path, help="output folder (default: <data dir>/curation)")
    c.add_argument("--workers", type=int, help="worker processes for the per-clip stages")
    c.add_argument("--executor", choices=EXECUTORS, help="local processes (default) or a Ray cluster (pip install ray)")
    c.add_argument("--address", help="with --executor ray: the cluster, e.g. ray://head:10001 (default: one "
                                     "already running here, or a new local one)")
    c.add_argument("--state", metavar="FOLDER_OR_URL", help="where the resumable state lives: a folder or an fsspec "
                   "URL such as s3://bucket/run/state (default: OUT/state)")
    c.add_argument("--stage", action="append", choices=STAGES, default=[], help="run only these stages (repeatable)")
    c.add_argument("--cut", choices=("all", "selected"), help="selected (default): analyse from the sources, cut "
                   "only the selected clips; all: cut every clip first (to watch the rejected ones too)")
    c.add_argument("--cut-mode", choices=CUT_MODES, help="auto (copy where exact), copy (keyframes), reencode (exact)")
    c.add_argument("--aesthetic", choices=AESTHETIC_SCORERS, help="aesthetic scorer")
    c.add_argument("--captioner", choices=CAPTIONERS, help="AniCaption backend")
    c.add_argument("--set", action="append", type=_setting, default=[], metavar="KEY=VALUE", help="any setting")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    c.add_argument("--json", action="store_true", help="print the report's counts as JSON")
    c.add_argument("--explain", metavar="CLIP_ID", help="print one clip's numbers against each threshold (from the "
                   "last run's manifest in the output folder) and stop")
    return c


def build_config(args: argparse.Namespace, settings: Settings) -> CurationConfig:
    from ..core.pks import load_yaml_text

    data: dict[str, Any] = {}
    if args.config is not None:
        path = Path(args.config).expanduser()
        if not path.is_file():
            raise InvalidRequest("config", f"{path} does not exist or is not a file")
        loaded = load_yaml_text(path.read_text(encoding="utf-8"), path.name, "config")
        if loaded is not None and not isinstance(loaded, dict):
            raise InvalidRequest("config", f"{path.name} must hold a mapping of sections")
        data = loaded or {}
    overrides: dict[str, Any] = {
        "output_dir": str(args.out) if args.out else None, "workers": args.workers,
        "clips.cut_mode": args.cut_mode, "clips.cut": args.cut, "aesthetic.scorer": args.aesthetic, "caption.captioner": args.captioner,
        "progress": False if args.no_progress else None, "executor": args.executor, "ray_address": args.address,
        "state": args.state,
        "input.paths": [str(p) for p in args.input] if args.input else None,
    }
    overrides.update(dict(args.set))
    merged = apply_overrides(data, overrides)
    merged.setdefault("output_dir", str(settings.data_dir / "curation"))
    if not merged.get("input", {}).get("paths"):
        raise InvalidRequest("--input", "name the footage: a config with input.paths, or --input FOLDER")
    return CurationConfig.from_dict(merged)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handler of `curate`; EngineErrors propagate to the caller, which prints one line, exit 2."""
    from .pipeline import run_curation

    config = build_config(args, settings)
    if args.explain:
        return explain(config, args.explain)
    result = run_curation(config, settings, stages=args.stage or None)
    counts = result.report.get("counts", {})
    if args.json:
        print(json.dumps({"output_dir": str(result.output_dir), "counts": counts,
                          "reasons": result.report.get("reasons", {})}))
        return 0
    if "manifest" in (args.stage or STAGES):
        print(f"wrote {result.manifest_jsonl} ({counts.get('clips_in_manifest', 0)} clips, "
              f"{counts.get('clips_selected', 0)} selected) and {result.manifest_parquet.name}")
        print(f"report: {result.output_dir / 'report.md'}")
        for hint in result.report.get("hints", []):
            print(f"left out: {hint}")
        for item in result.report.get("unreadable", []):
            print(f"unreadable: {item['file']}: {item['error']}", file=sys.stderr)
    else:
        print(f"ran {', '.join(args.stage)}; state in {config.state or result.output_dir / 'state'}")
    return 0


def explain(config: CurationConfig, clip_id: str) -> int:
    """`--explain CLIP_ID`: the clip's row of the last manifest, against the thresholds of `config`."""
    from .explain import explain_clip

    manifest = Path(config.output_dir) / "manifest.jsonl"
    if not manifest.is_file():
        raise InvalidRequest("--explain", f"there is no manifest in {manifest.parent} yet: run the curation first")
    with manifest.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row.get("clip_id") == clip_id:
                print("\n".join(explain_clip(row, config)))
                return 0
    raise InvalidRequest("--explain", f"no clip {clip_id!r} in {manifest} (clip ids are in its clip_id column)")
