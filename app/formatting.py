"""Text the UI shows about jobs and clips: settings tables, queue rows, captions (no Gradio)."""
from __future__ import annotations

from typing import Any, Sequence

from engine.errors import EngineError
from engine.pks import Taxonomy
from engine.registry import PREVIEW_ID, REGISTRY
from engine.storage.history import GenerationRecord

from .services.jobs import QueueRow

NOISE_NOTE = ("⚠ **Preview model:** its weights are random, so the clip is noise. It shows the studio works; "
              "download a real model for real animation.")
QUEUE_HEADERS: tuple[str, ...] = ("Pos", "Job", "Status", "Model", "Narrative")
# Plain symbols, not emoji: they render with the page's own font on every system.
STATUS_ICONS = {"queued": "…", "running": "▶", "done": "✓", "failed": "✗", "cancelled": "■"}


def short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cell(text: Any) -> str:
    """Markdown-table-safe text: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def model_label(model: str) -> str:
    spec = REGISTRY.get(model)
    return spec.label if spec is not None else model


def is_preview(model: str) -> bool:
    return model == PREVIEW_ID


def human_bytes(n: int | None) -> str:
    if not n:
        return "—"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def settings_rows(record: GenerationRecord, taxonomy: Taxonomy) -> list[tuple[str, str]]:
    """Every setting of a history entry as (name, value) pairs, in the order the form shows them."""
    try:
        req = record.request
    except EngineError as exc:  # a row written by a newer engine: show what can be read
        return [("Request", f"unreadable: {exc}"), ("Narrative", record.narrative)]
    try:
        tag_lines = taxonomy.describe_tags(req.tags) or ["none"]
    except EngineError:  # tags from another taxonomy version: show the raw ids
        tag_lines = [f"{k}={', '.join(v)}" for k, v in req.tags.items()] or ["none"]
    seconds = (req.num_frames / req.fps) if req.num_frames and req.fps else None
    length = f" ({seconds:.1f} s)" if seconds else ""
    tiling = "auto" if req.vae_tiling is None else ("on" if req.vae_tiling else "off")
    rows = [
        ("Entry", f"#{record.id} · {STATUS_ICONS.get(record.status, '')} {record.status}"),
        ("Created", record.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("Model", f"{model_label(req.model)} (`{req.model}`)"),
        ("Narrative", req.narrative),
        ("Tags", "<br>".join(tag_lines)),  # one production variable per line
        ("Negative prompt", req.negative_prompt or "—"),
        ("Seed", str(req.seed) if req.seed is not None else "random"),
        ("Size", f"{req.width} × {req.height} px" if req.width and req.height else "model default"),
        ("Frames", f"{req.num_frames} at {req.fps} fps{length}" if req.num_frames else "model default"),
        ("Steps", str(req.steps) if req.steps else "model default"),
        ("Guidance", f"{req.guidance:g}" if req.guidance is not None else "model default"),
        ("Memory profile", f"quantization {req.quantization} · offload {req.offload} · VAE tiling {tiling}"),
    ]
    if record.compiled_prompt:
        rows.append(("Compiled prompt", record.compiled_prompt))
    if record.timings:
        order = ("load_s", "encode_s", "denoise_s", "decode_s", "total_s")
        parts = [f"{k[:-2]} {record.timings[k]:.1f} s" for k in order if k in record.timings]
        rows.append(("Timings", " · ".join(parts)))
    if record.peak_memory_bytes:
        rows.append(("Peak memory", human_bytes(record.peak_memory_bytes)))
    checkpoint = f" · checkpoint {record.checkpoint}" if record.checkpoint else ""
    rows.append(("Engine", record.engine_version + checkpoint))
    return rows


def settings_markdown(record: GenerationRecord, taxonomy: Taxonomy) -> str:
    lines = ["| Setting | Value |", "|---|---|"]
    lines += [f"| {_cell(name)} | {_cell(value)} |" for name, value in settings_rows(record, taxonomy)]
    return "\n".join(lines)


def error_markdown(record: GenerationRecord) -> str:
    """The reason a failed or cancelled entry ended ("" for the others)."""
    if record.status not in ("failed", "cancelled") or not record.error:
        return ""
    title = "Generation failed" if record.status == "failed" else "Cancelled"
    return f"**{title}:** {record.error}"


def caption(record: GenerationRecord) -> str:
    return f"#{record.id} {STATUS_ICONS.get(record.status, '')} {short(record.narrative, 48)}"


def queue_table(rows: Sequence[QueueRow]) -> list[list[Any]]:
    return [[("running" if r.position is None else str(r.position)), r.job_id,
             f"{STATUS_ICONS.get(r.status, '')} {r.status}", r.model, short(r.narrative, 80)] for r in rows]


def queue_summary(rows: Sequence[QueueRow]) -> str:
    running = sum(1 for r in rows if r.position is None)
    queued = len(rows) - running
    if not rows:
        return "The queue is empty."
    return f"{running} running · {queued} waiting"
