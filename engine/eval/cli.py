"""`python -m engine eval run|score|merge|report|compare|suite`.

Wiring (engine/cli.py): `eval_cli.add_parser(sub)` and `"eval": eval_cli.run`. Importing this
module is cheap (no torch, no OpenCV); the work is imported in `run`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..core.errors import InvalidRequest
from ..core.settings import Settings

__all__ = ["add_parser", "run"]


def _metric_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--max-side", type=int, default=192, help="analyse frames at most this many px on the long side")
    sp.add_argument("--flow-preset", choices=("ultrafast", "fast", "medium"), default="fast",
                    help="OpenCV DIS preset of the optical flow (default fast)")
    sp.add_argument("--learned", action="append", default=[], metavar="NAME[=PATH]",
                    help="also score with a metric that needs weights: clip[=FOLDER|REPO], aesthetic[=HEAD|FOLDER], "
                         "videoscore[=FOLDER|REPO], reward[=DIR|NAME] (repeatable; missing weights stop the command "
                         "with what to put where)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help="evaluate: a prompt suite x seeds x systems, scored from pixels "
                                           "(and, with --learned, by models)")
    es = p.add_subparsers(dest="eval_command", required=True)

    r = es.add_parser("run", help="generate and score a suite (resumes; --shard I/N)")
    r.add_argument("suite", help="a suite YAML file, or the word builtin")
    r.add_argument("--run", dest="run_id", help="run id (default: suite name + fingerprint, so a rerun resumes)")
    r.add_argument("--shard", default="1/1", help="this process's share of the items, I/N (default 1/1)")
    r.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    _metric_flags(r)

    s = es.add_parser("score", help="score any clips from their pixels; one JSON object per clip with --json")
    s.add_argument("files", nargs="+", type=Path, help="video files (.mp4, .webm, .gif, ...)")
    s.add_argument("--tag", action="append", default=[], metavar="FIELD=VALUE",
                   help="the tags to check adherence against (default: those embedded in the clip)")
    s.add_argument("--narrative", help="the text the learned metrics compare with (default: the clip's own)")
    s.add_argument("--json", action="store_true", help="one JSON object per line")
    _metric_flags(s)

    m = es.add_parser("merge", help="fold shards (also from other machines' run folders) into results.json")
    m.add_argument("run", help="the run folder to fold the shards into")
    m.add_argument("others", nargs="*", help="more run folders of the same run")

    rp = es.add_parser("report", help="per-system tables: Markdown, JSON and HTML")
    rp.add_argument("run", help="the run folder (eval run --out)")
    rp.add_argument("--out", type=Path, help="folder for report.md/.json/.html (default: the run folder)")
    rp.add_argument("--json", action="store_true", help="print the report as JSON instead of Markdown")

    c = es.add_parser("compare", help="two systems side by side, paired over (prompt, seed)")
    c.add_argument("a", help="RUN or RUN:SYSTEM")
    c.add_argument("b", help="RUN or RUN:SYSTEM")
    c.add_argument("--out", type=Path, help="also write the comparison here (.md, .json, .html, or .png: B - A per metric)")
    c.add_argument("--json", action="store_true", help="print as JSON")

    su = es.add_parser("suite", help="write the built-in suite as YAML, to copy and edit")
    su.add_argument("--out", type=Path, required=True, help="the .yaml file to write")
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    return {"run": _run, "score": _score, "merge": _merge, "report": _report, "compare": _compare,
            "suite": _suite}[args.eval_command](args, settings)


def _eval_dir(settings: Settings) -> Path:
    return settings.data_dir / "eval"


def _metrics(args: argparse.Namespace) -> Any:
    from .metrics.score import MetricConfig

    try:
        return MetricConfig(max_side=args.max_side, preset=args.flow_preset)
    except InvalidRequest as exc:
        raise InvalidRequest(f"--{exc.field.replace('_', '-')}", exc.reason) from None


def _learned(args: argparse.Namespace, settings: Settings) -> list[Any]:
    """The requested learned metrics, checked and loaded (InvalidRequest naming what is missing)."""
    from .learned import build_metrics, parse_learned, require_ready

    specs = parse_learned(args.learned)
    if not specs:
        return []
    metrics = build_metrics(specs, settings)
    require_ready(metrics, settings)
    return metrics


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from ..runner import JobRunner
    from ..studio import Studio
    from .report import write_report
    from .runner import EvalRunner
    from .state import RUN_ID_RE, RunFolder, default_run_id, parse_shard
    from .suite import load_suite

    shard = parse_shard(args.shard)
    metrics = _metrics(args)
    suite = load_suite(args.suite)
    run_id = args.run_id or default_run_id(suite)
    if not RUN_ID_RE.match(run_id):
        raise InvalidRequest("--run", f"a run id is 1-64 letters, digits, '_', '.' or '-', got '{run_id}'")
    folder = RunFolder(_eval_dir(settings) / run_id)
    learned = _learned(args, settings)  # before the studio: missing weights change nothing on disk
    studio = Studio(settings)
    try:
        summary = EvalRunner(JobRunner(studio), suite, folder, shard=shard, metrics=metrics, learned=learned).run()
    finally:
        studio.close()
    rescored = f", {summary.rescored} given learned scores" if summary.rescored else ""
    print(f"run {summary.run_id}: {summary.total} clips in shard {shard[0]}/{shard[1]}, {summary.generated} "
          f"generated, {summary.reused} already done{rescored}, {summary.failed} failed; folder {folder.root}")
    if not args.no_report:
        paths = write_report(folder)
        print(f"report: {paths[0]}")
    return 1 if summary.failed else 0


def _tags(pairs: list[str]) -> dict[str, Any] | None:
    if not pairs:
        return None
    out: dict[str, Any] = {}
    for text in pairs:
        field, sep, value = text.partition("=")
        if not sep or not field.strip() or not value.strip():
            raise InvalidRequest("--tag", f"'{text}' is not FIELD=VALUE (e.g. camera.movement=pan)")
        out[field.strip()] = value.strip()
    from ..core.pks import load_taxonomy

    load_taxonomy().validate_tags(out)
    return out


def _score(args: argparse.Namespace, settings: Settings) -> int:
    from .metrics.score import score_file

    metrics = _metrics(args)
    tags = _tags(args.tag)
    for path in args.files:  # every file is checked before the first line is printed
        if not path.is_file():
            raise InvalidRequest("file", f"{path} does not exist")
    learned = _learned(args, settings)
    for path in args.files:
        result = score_file(path, metrics, tags)
        data = {"file": str(path), **result.to_json()}
        if learned:
            from .learned import embedded_narrative, learned_scores

            narrative = embedded_narrative(path) if args.narrative is None else args.narrative
            data["learned"], data["learned_from"] = learned_scores(learned, path, narrative, result.tags)
        if args.json:
            print(json.dumps(data, ensure_ascii=False), flush=True)
        else:
            adh = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in data["adherence"].items() if v is not None)
            print(f"{path}: camera {data['camera.movement'] or data['camera.class']}"
                  f"{' ' + data['camera.direction'] if data['camera.direction'] else ''}, timing {data['style.timing']}, "
                  f"motion {data['motion_per_drawing']:.2f}% diag/drawing ({data['motion.intensity']}), "
                  f"dynamic {'yes' if data['dynamic_degree'] else 'no'}, flicker {data['flicker']:.2f}, "
                  f"consistency {data['consistency']:.3f}{'; follows: ' + adh if adh else ''}{_learned_text(data)}")
    return 0


def _learned_text(data: dict[str, Any]) -> str:
    parts = [f"{m}.{d} {v:.3f}" for m, dims in (data.get("learned") or {}).items() for d, v in dims.items()]
    return "; learned: " + ", ".join(parts) if parts else ""


def _merge(args: argparse.Namespace, settings: Settings) -> int:
    from .state import RunFolder

    folder = RunFolder.of(_eval_dir(settings), args.run)
    others = [RunFolder.of(_eval_dir(settings), o) for o in args.others]
    items = folder.merge(others)
    done = sum(1 for v in items.values() if v.get("status") == "done")
    print(f"merged {len(items)} items ({done} done) into {folder.root / 'results.json'}")
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from .report import build_report, render_markdown, write_report
    from .state import RunFolder

    folder = RunFolder.of(_eval_dir(settings), args.run)
    paths = write_report(folder, args.out)
    report = build_report(folder)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        sys.stdout.write(render_markdown(report))
        print(f"written: {', '.join(str(p) for p in paths)}")
    return 0


def _compare(args: argparse.Namespace, settings: Settings) -> int:
    from ..core.toolkit.files import write_json, write_text
    from .compare import compare, render_html, render_markdown

    if args.out is not None and args.out.suffix not in (".md", ".json", ".html", ".png"):
        raise InvalidRequest("--out", f"must end in .md, .json, .html or .png, got '{args.out.name}'")
    result = compare(_eval_dir(settings), args.a, args.b)
    if args.out is not None:
        if args.out.suffix == ".png":
            from .plots import plot_comparison

            plot_comparison(result, args.out)
        elif args.out.suffix == ".json":
            write_json(args.out, result, indent=1)
        else:
            write_text(args.out, render_html(result) if args.out.suffix == ".html" else render_markdown(result))
    print(json.dumps(result, ensure_ascii=False) if args.json else render_markdown(result), end="\n" if args.json else "")
    return 0


def _suite(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    from ..core.pks import load_taxonomy
    from ..core.toolkit.files import write_text
    from .builtin import builtin_suite

    if args.out.suffix not in (".yaml", ".yml"):
        raise InvalidRequest("--out", f"must end in .yaml or .yml, got '{args.out.name}'")
    class _Plain(yaml.SafeDumper):  # written out in full: the suite loader refuses anchors and aliases
        def ignore_aliases(self, data: Any) -> bool:
            return True

    text = yaml.dump(builtin_suite(load_taxonomy()), Dumper=_Plain, sort_keys=False, allow_unicode=True, width=100)
    write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0
