"""`python -m engine`: generate clips, read history and inspect files from the command line.

Bad input exits 2 with one line naming the problem; nothing is written in that case.
"""
from __future__ import annotations

import argparse
import re
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from . import catalog_cli, model_commands
from .generate_flags import add_generate_parser, flag_values, given_tags, parse_tag as _tag
from . import worker as worker_cli
from .core.errors import EngineError, GenerationCancelled, InvalidRequest
from .core.request_schema import merge_settings
from .core.quantization import CACHEABLE_MODES
from .core.settings import Settings
from .core.toolkit.numbers import check_number

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage dump) and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m engine", description="AniMatrix Studio engine")
    p.add_argument("--data-dir", type=Path, help="where the history database and clips live (env ANIMATRIX_DATA_DIR)")
    p.add_argument("--device", type=_device, metavar="{auto,cpu,cuda,cuda:N,mps}",
                   help="device to run on (default auto); cuda:N uses GPU N only")
    p.add_argument("--database-url", help="a shared PostgreSQL database (env ANIMATRIX_DATABASE_URL)")
    p.add_argument("--media-dir", type=Path, help="where clips live, e.g. a mount every worker shares (env "
                   "ANIMATRIX_MEDIA_DIR; default DATA_DIR/media)")
    p.add_argument("--debug", action="store_true", help="show the full traceback of unexpected errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    add_generate_parser(sub)  # every flag with its help, range and default

    h = sub.add_parser("history", help="list, show or delete past generations")
    hs = h.add_subparsers(dest="action", required=True, parser_class=_Parser)
    hl = hs.add_parser("list", help="past generations, newest first")
    hl.add_argument("--status", choices=("queued", "running", "done", "failed", "cancelled"),
                    help="only entries in this state (default: all)")
    hl.add_argument("--model", help="only clips of this model id")
    hl.add_argument("--text", help="only entries whose narrative contains this text")
    hl.add_argument("--tag", type=_tag, metavar="FIELD=VALUE", help="only clips with this tag")
    hl.add_argument("--limit", type=int, default=20, help="how many entries (default 20)")
    hl.add_argument("--offset", type=int, default=0, help="skip this many of the newest first (default 0)")
    hl.add_argument("--json", action="store_true", help="print as JSON")
    for name, what in (("show", "one entry's settings, timings and clip"), ("delete", "one entry and its clip")):
        sp = hs.add_parser(name, help=what)
        sp.add_argument("id", type=int, help="the entry's number (history list)")
        sp.add_argument("--json", action="store_true", help="print as JSON") if name == "show" else None

    i = sub.add_parser("info", help="print the generation settings embedded in an mp4")
    i.add_argument("file", type=Path, help="an mp4 the studio made")

    m = sub.add_parser("models", help="list the models and whether their weights are here")
    m.add_argument("--json", action="store_true", help="print as JSON")
    qz = sub.add_parser("quantize", help="write a model's quantized cache once (later loads skip full precision)")
    qz.add_argument("model", help="a registry model id (python -m engine models)")
    qz.add_argument("--quantization", required=True, choices=CACHEABLE_MODES, help="the mode to cache")
    d = sub.add_parser("download", help="download a model's weights into the hub cache")
    d.add_argument("model", help="a registry model id (python -m engine models)")
    worker_cli.add_parser(sub)

    from .curation.cli import add_parser as add_curate_parser

    add_curate_parser(sub)
    from .rating import cli as rating_cli

    rating_cli.add_parser(sub)
    from .training.cli import add_parser as add_train_parser

    add_train_parser(sub)
    from .reward import cli as reward_cli

    reward_cli.add_parser(sub)
    from .training.onpolicy import add_parser as add_loop_parser

    add_loop_parser(sub)
    from .eval import cli as eval_cli

    eval_cli.add_parser(sub)
    catalog_cli.add_parser(sub)  # tags, presets
    from .world import cli as world_cli

    world_cli.add_parser(sub)
    from .queue_cli import add_parser as add_queue_parser

    add_queue_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    quiet_libraries()
    args = build_parser().parse_args(hoist_global_flags(sys.argv[1:] if argv is None else argv))
    try:
        if args.device and args.device.startswith("cuda:"):
            worker_cli.pin_gpu(int(args.device[5:]), "--device")
            args.device = "cuda"
        settings = Settings.from_env().with_overrides(data_dir=args.data_dir, device=args.device,
                                                      database_url=args.database_url, media_root=args.media_dir)
        fresh = args.data_dir is None and not os.environ.get("ANIMATRIX_DATA_DIR") and not settings.data_dir.exists()
        handler = {"generate": _generate, "history": _history, "info": _info, "models": model_commands.models,
                   "download": model_commands.download, "quantize": model_commands.quantize,
                   "worker": worker_cli.run, **dict.fromkeys(_SUBSYSTEMS, _subsystem)}[args.command]
        code = handler(args, settings)
        _say_where(settings, fresh=fresh and code == 0)  # after the command: an error stays one line
        return code
    except GenerationCancelled as exc:
        print(f"cancelled: {exc}", file=sys.stderr)
        return 130
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one readable line unless --debug
        if args.debug:
            raise
        print(f"unexpected error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return 1


def _device(value: str) -> str:
    if value in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d{1,3}", value):
        return value
    raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda, cuda:N or mps, got {value!r}")


_GLOBAL_FLAGS = {"--data-dir": 1, "--device": 1, "--database-url": 1, "--media-dir": 1, "--debug": 0}  # takes a value


# Library lines that read like failures but are not (a CPU machine has no CUDA kernels or Triton).
_LIBRARY_NOISE = {
    "torchao": "Failed to load",  # torchao's CUDA-only .so files
    "torchao.kernel.intmm": "Detected no triton",
    "torch.utils._pytree": "is an Enum subclass",  # torchao registering its enums with an older API
    "diffusers.quantizers.torchao.torchao_quantizer": "Unable to import `torchao` Tensor objects",
}


class _LibraryNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        words = _LIBRARY_NOISE.get(record.name)
        return not (words and words in str(record.msg))


def quiet_libraries() -> None:
    """Drop the lines in `_LIBRARY_NOISE` (before torchao is imported, which logs them)."""
    noise = _LibraryNoise()
    for name in _LIBRARY_NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _LibraryNoise) for f in logger.filters):
            logger.addFilter(noise)


def hoist_global_flags(argv: Sequence[str]) -> list[str]:
    """ARGS with the global flags (--data-dir, --device, --debug) moved in front of the command, so
    they may stand anywhere (`generate --data-dir X ...`); everything after `--` stays as it is."""
    rest = list(argv)
    head: list[str] = []
    i = 0
    while i < len(rest) and rest[i] != "--":
        flag, eq, _value = rest[i].partition("=")
        if flag in _GLOBAL_FLAGS:
            takes_value = _GLOBAL_FLAGS[flag] and not eq
            head += rest[i:i + 1 + takes_value]
            del rest[i:i + 1 + takes_value]
        else:
            i += 1
    return [*head, *rest]


def _say_where(settings: Settings, *, fresh: bool) -> None:  # once, when a command created the default folder
    if fresh and settings.data_dir.exists():
        print(f"note: keeping the history, clips and models in {settings.data_dir} (created now; choose another "
              "with --data-dir or ANIMATRIX_DATA_DIR)", file=sys.stderr)


def main_for(command: str, argv: Sequence[str] | None = None) -> int:
    """`python -m engine.<package> ARGS` as `python -m engine [global flags] COMMAND ARGS`.

    The stand-alone entries of the sub-packages share this one parser and error handling; the
    global flags (--data-dir, --device, --debug) may stand anywhere in ARGS.
    """
    return main([command, *(sys.argv[1:] if argv is None else argv)])


# -- generate ---------------------------------------------------------------------------------
def _request_from_args(args: argparse.Namespace, settings: Settings, studio: Any) -> Any:
    from .core.export import read_embedded_settings
    from .core.requests import GenerationRequest

    base: dict[str, Any] = {}
    if args.from_file is not None and args.from_history is not None:
        raise InvalidRequest("--from", "use either --from FILE or --from-history ID, not both")
    if args.from_file is not None:
        embedded = read_embedded_settings(args.from_file)
        if "request" not in embedded:
            raise InvalidRequest("--from", f"{args.from_file} holds settings but no request")
        base = dict(embedded["request"])
    elif args.from_history is not None:
        base = studio.history.get(args.from_history).request.to_dict()
    preset: dict[str, Any] = {}
    if args.preset:
        from .core.presets import PresetLibrary, builtin_presets_dir
        from .core.pks import load_taxonomy

        preset = PresetLibrary(builtin_presets_dir(), settings.presets_dir, load_taxonomy()).find(
            args.preset).to_request_overrides()
    base = merge_settings(base, preset=preset, overrides=flag_values(args, skip=_OWN_MERGE), tags=given_tags(args.tags))
    _speed_overrides(args, base)
    if args.adapters:
        base["adapters"] = args.adapters
    base.setdefault("model", settings.default_model)
    if "narrative" not in base:
        raise InvalidRequest("--narrative", "is required (or start from --from, --from-history or --preset)")
    request = GenerationRequest.from_dict(base)
    if args.from_file is not None and not args.allow_local_models:
        from .core.sources import SOURCE_FIELDS, confine_clip_request

        typed = {name: getattr(args, name) for name in SOURCE_FIELDS}  # what the user typed is theirs to choose
        confine_clip_request(request, embedded["request"], typed, settings.data_dir)
    return request


# Merged on their own: tags per field, adapters as a whole, and the speed profile before its parts.
_OWN_MERGE = ("tags", "adapters", "speed", "cache", "compile_blocks")


def _speed_overrides(args: argparse.Namespace, base: dict[str, Any]) -> None:
    """--speed picks a profile afresh (a reproduced clip's cache gives way); --cache/--compile set parts."""
    if args.speed is not None:
        base["speed"] = args.speed
        for key in ("cache", "cache_threshold", "compile_blocks"):
            base.pop(key, None)
    if args.cache is not None:
        base["cache"], base["cache_threshold"] = args.cache
    if args.compile_blocks is not None:
        base["compile_blocks"] = args.compile_blocks


def _check_out_path(out: Path | None) -> None:
    if out is None:
        return
    if out.suffix.lower() != ".mp4":
        raise InvalidRequest("--out", f"must end in .mp4, got '{out.name}'")
    parent = out.expanduser().resolve().parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())  # missing folders are made after the job
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise InvalidRequest("--out", f"cannot write under {existing} (not a writable folder)")


class _ProgressLine:
    """One self-rewriting progress line on stderr; `close` ends it so later messages start clean."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._open = False

    def __call__(self, p: Any) -> None:
        if p.stage == "denoising":
            filled = int(24 * p.step / max(p.total, 1))
            line = f"[{'#' * filled}{'.' * (24 - filled)}] {p.describe()}"
        else:
            line = p.describe()
        self._stream.write(f"\r{line:<72}")
        self._stream.flush()
        self._open = True

    def close(self) -> None:
        if self._open:
            self._stream.write("\n")
            self._open = False


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from .runner import JobRunner
    from .studio import Studio

    _check_out_path(args.out)
    if (args.best_of is None) != (args.reward_model is None):
        raise InvalidRequest("--best-of", "and --reward-model go together: N candidates ranked by that reward model")
    if args.best_of is not None:
        return _best_of(args, settings)
    if args.parallel not in (None, "none") and "LOCAL_RANK" in os.environ:  # under torchrun: one clip, N ranks
        from . import parallel_generate

        studio, request = parallel_generate.open_studio_and_request(
            settings, lambda s: _request_from_args(args, settings, s))
        if parallel_generate.is_helper():
            return parallel_generate.help_rank_zero(studio, request)
    else:
        studio = Studio(settings)
        request = None
    line = _ProgressLine(sys.stderr)
    try:
        request = request or _request_from_args(args, settings, studio)
        extra = tuple(fmt for fmt, on in (("webp", args.webp), ("gif", args.gif)) if on)
        record = JobRunner(studio).generate(request, progress=line, source="cli", extra_formats=extra)
    finally:
        line.close()
        studio.close()
    video = studio.history.video_path(record)
    assert video is not None  # a done record always has its video
    if args.out is not None:
        args.out.expanduser().parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(video, args.out)
        video = args.out
    noise = " (preview model: random weights, the output is noise)" if record.model == "preview" else ""
    if args.json:
        print(json.dumps({"id": record.id, "video": str(video), "seed": record.seed, "model": record.model}))
    else:
        print(f"wrote {video}{noise}")
        print(f"history id {record.id} (seed {record.seed})")
    return 0


def _best_of(args: argparse.Namespace, settings: Settings) -> int:
    from .reward.cli import rank_best_of_n
    from .studio import Studio

    for flag, on in (("--out", args.out is not None), ("--webp", args.webp), ("--gif", args.gif)):
        if on:
            raise InvalidRequest(flag, "does not go with --best-of: every candidate is in the history, best first")
    studio = Studio(settings)
    try:
        request = _request_from_args(args, settings, studio)  # --preset, --from, --tag ... as for one clip
    finally:
        studio.close()
    return rank_best_of_n(request, args.best_of, args.reward_model, settings, as_json=args.json)


# -- history / info / models --------------------------------------------------------------------
def _history(args: argparse.Namespace, settings: Settings) -> int:
    from .studio import Studio

    studio = Studio(settings)
    try:
        if args.action == "list":
            check_number("--limit", args.limit, whole=True, low=1, high=500)
            if args.offset < 0:
                raise InvalidRequest("--offset", f"must be 0 or more, got {args.offset}")
            tag = f"{args.tag[0]}={args.tag[1]}" if args.tag else None
            page = studio.history.list(text=args.text, tag=tag, model=args.model, status=args.status,
                                       limit=args.limit, offset=args.offset)
            if args.json:
                print(json.dumps([_record_dict(r) for r in page.items]))
                return 0
            for r in page.items:
                when = r.created_at.strftime("%Y-%m-%d %H:%M")
                print(f"{r.id:>5}  {when}  {r.status:<9}  {r.model:<16}  {_short(r.narrative, 60)}")
            print(f"{len(page.items)} of {page.total} shown")
        elif args.action == "show":
            r = studio.history.get(args.id)
            data = _record_dict(r)
            data["video"] = str(studio.history.video_path(r)) if r.video_path else None
            print(json.dumps(data, indent=None if args.json else 2, ensure_ascii=False, default=str))
        else:
            studio.history.delete(args.id)
            print(f"deleted history entry {args.id} and its files")
    finally:
        studio.close()
    return 0


def _record_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id, "status": r.status, "model": r.model, "narrative": r.narrative, "seed": r.seed,
        "created_at": r.created_at.isoformat(), "compiled_prompt": r.compiled_prompt, "error": r.error,
        "request": r.request.to_dict(), "timings": r.timings, "peak_memory_bytes": r.peak_memory_bytes,
    }


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _info(args: argparse.Namespace, settings: Settings) -> int:
    from .core.export import probe_video, read_embedded_settings

    embedded = read_embedded_settings(args.file)
    info = probe_video(args.file)
    print(json.dumps({"file": str(args.file), "video": {"frames": info.num_frames, "width": info.width,
                      "height": info.height, "fps": info.fps}, "settings": embedded}, indent=2, ensure_ascii=False))
    return 0


# Subcommands whose handler (`run(args, settings)`) lives in its subsystem, imported only when it runs.
_SUBSYSTEMS = {"curate": ".curation.cli", "rating": ".rating.cli", "train": ".training.cli",
               "loop": ".training.onpolicy", "reward": ".reward.cli", "eval": ".eval.cli",
               "tags": ".catalog_cli", "presets": ".catalog_cli", "world": ".world.cli",
               "queue": ".queue_cli"}


def _subsystem(args: argparse.Namespace, settings: Settings) -> int:
    import importlib

    code: int = importlib.import_module(_SUBSYSTEMS[args.command], __package__).run(args, settings)
    return code
