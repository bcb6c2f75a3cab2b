"""Text the UI shows about jobs and clips: settings tables, queue rows, captions (no Gradio)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Protocol, Sequence

from engine.core.errors import EngineError
from engine.core.pks import Taxonomy
from engine.core.presets import Preset
from engine.core.requests import GenerationRequest
from engine.core.registry import PREVIEW_ID, REGISTRY
# QueueRow from the engine, not app.services.jobs: services use these texts, so formatting stays below them.
from engine.runner import QueueRow

NOISE_NOTE = ("⚠ **Preview model:** its weights are random, so the clip is noise. It shows the studio works; "
              "download a real model for real animation.")
QUEUE_HEADERS: tuple[str, ...] = ("Pos", "Job", "Status", "Model", "Narrative")
# Plain symbols, not emoji: they render with the page's own font on every system.
STATUS_ICONS = {"queued": "…", "running": "▶", "done": "✓", "failed": "✗", "cancelled": "■"}



class ClipRecord(Protocol):
    """What these texts read of a history entry: a `GenerationRecord`, which the tabs get from
    `app.services.history_view` (the UI's texts never import storage)."""

    @property
    def id(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def narrative(self) -> str: ...
    @property
    def compiled_prompt(self) -> str | None: ...
    @property
    def timings(self) -> Mapping[str, float]: ...
    @property
    def peak_memory_bytes(self) -> int | None: ...
    @property
    def checkpoint(self) -> str | None: ...
    @property
    def engine_version(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def request(self) -> GenerationRequest: ...


def short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cell(text: Any) -> str:
    """Markdown-table-safe text: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


_MARKDOWN_SPECIALS = "\\`*_{}[]()#+-.!~"  # "|" is the table's: _cell escapes it


def plain(text: Any) -> str:
    """What a user wrote, shown as text: no HTML, no Markdown links or images (nothing loads from it)."""
    out = []
    for ch in str(text):
        if ch == "<":
            out.append("&lt;")
        elif ch == ">":
            out.append("&gt;")
        elif ch == "&":
            out.append("&amp;")
        elif ch in _MARKDOWN_SPECIALS:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


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


def settings_rows(record: ClipRecord, taxonomy: Taxonomy) -> list[tuple[str, str]]:
    """Every setting of a history entry as (name, value) pairs, in the order the form shows them."""
    try:
        req = record.request
    except EngineError as exc:  # a row written by a newer engine: show what can be read
        return [("Request", f"unreadable: {plain(exc)}"), ("Narrative", plain(record.narrative))]
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
        ("Narrative", plain(req.narrative)),
        ("Tags", "<br>".join(tag_lines)),  # one production variable per line
        ("Negative prompt", plain(req.negative_prompt) if req.negative_prompt else "—"),
        ("Seed", str(req.seed) if req.seed is not None else "random"),
        ("Size", f"{req.width} × {req.height} px" if req.width and req.height else "model default"),
        ("Frames", f"{req.num_frames} at {req.fps} fps{length}" if req.num_frames else "model default"),
        ("Steps", str(req.steps) if req.steps else "model default"),
        ("Guidance", f"{req.guidance:g}" if req.guidance is not None else "model default"),
        ("Memory profile", f"quantization {req.quantization} · offload {req.offload} · VAE tiling {tiling}"),
    ]
    if req.adapters:
        rows.append(("Adapters", "<br>".join(f"{plain(a.path)} · strength {a.strength:g}" for a in req.adapters)))
    if record.compiled_prompt:
        rows.append(("Compiled prompt", plain(record.compiled_prompt)))
    if record.timings:
        rows.append(("Timings", timings_line(record.timings)))
    if record.peak_memory_bytes:
        rows.append(("Peak memory", human_bytes(record.peak_memory_bytes)))
    checkpoint = f" · checkpoint {record.checkpoint}" if record.checkpoint else ""
    rows.append(("Engine", record.engine_version + checkpoint))
    return rows


def timings_line(timings: Any) -> str:
    """The stages' seconds, and what the total holds besides them (on a first job: importing the
    libraries and setting the model up), so the parts add up to the total."""
    stages = ("load_s", "encode_s", "denoise_s", "decode_s")
    parts = [f"{k[:-2]} {timings[k]:.1f} s" for k in stages if k in timings]
    if "total_s" in timings:
        rest = timings["total_s"] - sum(timings[k] for k in stages if k in timings)
        if rest >= 0.5:
            parts.append(f"set-up and saving {rest:.1f} s (longest on the first job: libraries and model load)")
        parts.append(f"total {timings['total_s']:.1f} s")
    return " · ".join(parts)


def settings_markdown(record: ClipRecord, taxonomy: Taxonomy) -> str:
    lines = ["| Setting | Value |", "|---|---|"]
    lines += [f"| {_cell(name)} | {_cell(value)} |" for name, value in settings_rows(record, taxonomy)]
    return "\n".join(lines)


def error_markdown(record: ClipRecord) -> str:
    """The reason a failed or cancelled entry ended ("" for the others)."""
    if record.status not in ("failed", "cancelled") or not record.error:
        return ""
    title = "Generation failed" if record.status == "failed" else "Cancelled"
    return f"**{title}:** {plain(record.error)}"


def caption(record: ClipRecord) -> str:
    return f"#{record.id} {STATUS_ICONS.get(record.status, '')} {short(record.narrative, 48)}"


def queue_table(rows: Sequence[QueueRow]) -> list[list[Any]]:
    # Another user's job shows only its place in line (engine.runner.JobRunner.queue).
    return [[("running" if r.position is None else str(r.position)), r.job_id if r.mine else "—",
             f"{STATUS_ICONS.get(r.status, '')} {r.status}" + (f" · {r.progress}" if r.progress else ""),
             r.model if r.mine else "",
             short(r.narrative, 80) if r.mine else "another user's job"] for r in rows]


def queue_summary(rows: Sequence[QueueRow]) -> str:
    running = sum(1 for r in rows if r.position is None)
    queued = len(rows) - running
    if not rows:
        return "The queue is empty."
    return f"{running} running · {queued} waiting"


# -- presets --------------------------------------------------------------------------------------
PRESET_HEADERS: tuple[str, ...] = ("Preset", "Description", "Tags")
SETTING_LABELS = {"model": "Model", "width": "Width", "height": "Height", "num_frames": "Frames", "fps": "FPS",
                  "steps": "Steps", "guidance": "Guidance", "seed": "Seed"}


def tag_labels(tags: Any, taxonomy: Taxonomy) -> list[str]:
    """Each tag value's label, in taxonomy order; ids of tags this taxonomy no longer knows."""
    out: list[str] = []
    for f in taxonomy.prompt_fields:
        for value_id in tags.get(f.id, ()):
            try:
                out.append(f.value(value_id).label)
            except EngineError:
                out.append(value_id)
    return out


def tag_label(taxonomy: Taxonomy, field_id: str, value_id: str) -> str:
    """"Camera · Movement: Whip pan", as the dropdowns read (the ids when the taxonomy lacks them)."""
    try:
        f = taxonomy.field(field_id)
        return f"{taxonomy.axis(f.axis).label} · {f.label}: {f.value(value_id).label}"
    except (EngineError, KeyError):
        return f"{field_id}={value_id}"


def contradiction_text(contradiction: Any, taxonomy: Taxonomy) -> str:
    """A contradiction between two tags, named with the dropdowns' own labels; a soft one says how to
    make the clip regardless."""
    c = contradiction
    a, b = tag_label(taxonomy, c.a_field, c.a_value), tag_label(taxonomy, c.b_field, c.b_value)
    if c.soft:
        return f"⚠ **{a}** rarely goes with **{b}**: {c.reason}. Tick *Generate anyway* to make it regardless."
    return f"✖ **{a}** contradicts **{b}**: {c.reason}. Change one of them to generate."


def tags_summary(preset: Preset, taxonomy: Taxonomy, limit: int = 70) -> str:
    labels = tag_labels(preset.tags, taxonomy)
    if not labels:
        return "no tags"
    text = ", ".join(labels)
    if len(text) <= limit:
        return text
    shown: list[str] = []
    for label in labels:
        if len(", ".join([*shown, label])) > limit - 12:
            break
        shown.append(label)
    return f"{', '.join(shown)} … +{len(labels) - len(shown)} more"


def preset_cell(preset: Preset) -> str:
    """The table's first cell (markdown): the name, and whether it is built-in or the user's."""
    # A preset file is anyone's words: the name is text, never HTML or a Markdown image.
    return f"**{_cell(plain(preset.name))}**\n_{'built-in' if preset.builtin else 'yours'}_"


def preset_rows(presets: Sequence[Preset], taxonomy: Taxonomy) -> list[list[str]]:
    # Three columns, not four: at phone width a fourth column squeezes every word onto its own line.
    return [[preset_cell(p), short(p.description, 110) or "—", tags_summary(p, taxonomy)] for p in presets]


def preset_summary(preset: Preset) -> str:
    """The selected preset's title, id, kind and description (markdown)."""
    kind = "built-in, read-only (duplicate it to edit a copy)" if preset.builtin else "your preset"
    # Imported presets are anyone's words: shown as text (the slug is [a-z0-9-] by construction).
    lines = [f"### {plain(preset.name)}", f"<small>`{preset.slug}` · {kind}</small>"]
    return "\n\n".join(lines + ([plain(preset.description)] if preset.description else []))


def preset_details(preset: Preset, taxonomy: Taxonomy) -> str:
    """What the selected preset sets, field by field (a markdown table)."""
    try:
        tag_lines = taxonomy.describe_tags(preset.tags)
    except EngineError:
        tag_lines = [f"{k} = {', '.join(v)}" for k, v in preset.tags.items()]
    rows = [("Tags", "<br>".join(plain(line) for line in tag_lines) or "none")]
    rows.append(("Narrative", plain(preset.narrative.strip()) or "— (keeps the one you wrote)"))
    rows.append(("Negative prompt", plain(preset.negative_prompt) or "—"))
    settings = [f"{SETTING_LABELS.get(k, k)} {plain(model_label(v) if k == 'model' else v)}"
                for k, v in preset.settings.items()]
    rows.append(("Settings", " · ".join(settings) or "— (keeps the Create tab's)"))
    lines = ["| Sets | Value |", "|---|---|"] + [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows]
    return "\n".join(lines)


# -- adapters -------------------------------------------------------------------------------------
ADAPTER_MERGE_NOTE = ("**HydraLoRA** adapters stay beside the model: their router mixes the heads differently for "
                      "every token, so they cannot be merged into the weights. A plain **LoRA** could be. "
                      "Strength 1 applies an adapter as trained, 0 turns it off, negative values push away from it.")


def adapters_note(count: int, model: str, roots: Sequence[Any], problems: int = 0) -> str:
    """One line above the adapter slots; where to put adapters is said only when none fit."""
    if count:
        found = f"{count} adapter{'s' if count != 1 else ''} fit{'s' if count == 1 else ''} {_short_model(model)}."
    else:
        models, training = roots
        found = (f"No adapter fits {_short_model(model)} yet. Copy LoRA / HydraLoRA files into `{models}`, or train "
                 f"one into `{training}` (`python -m engine train`, see docs/training.md).")
    skipped = f" {problems} unreadable file{'s' if problems != 1 else ''} skipped (see the log)." if problems else ""
    return found + skipped


def adapters_title(count: int) -> str:
    return "Adapters (HydraLoRA / LoRA)" + (f" · {count} available" if count else "")


def _short_model(model: str) -> str:
    """"Preview" rather than "Preview (built-in, random weights: output is noise)"."""
    return model_label(model).split(" (")[0]


# -- Best of N ------------------------------------------------------------------------------------
# Short column titles for the reward model's production dimensions (the rating form's wording).
DIMENSION_SHORT: dict[str, str] = {
    "prompt_understanding": "Prompt", "artistic_motion": "Motion", "style_fidelity": "Style",
    "visual_quality": "Quality", "character_consistency": "Character",
}
INTENTIONAL_NOTE_AT = 0.5  # P(intentional deformation) from which the table says so (never a penalty)


def dimension_short(dimension: str) -> str:
    return DIMENSION_SHORT.get(dimension, dimension.replace("_", " ").capitalize())


def reward_missing_note(folder: Any) -> str:
    """What the Best of N box says while no reward model is on this machine: how to get one."""
    return (f"**No reward model yet**, so Best of N is off. Rate clips in the Rate tab, export the ratings "
            f"(`python -m engine rating export --as pickapic --out pairs.jsonl`), then train one: "
            f"`python -m engine reward train --pairs pairs.jsonl --out {folder}/NAME` (see docs/reward.md). "
            f"Any folder written there is listed here after **Rescan**.")


def reward_found_note(count: int, folder: Any) -> str:
    models = f"{count} reward model{'s' if count != 1 else ''}"
    return (f"{models} in `{folder}`. Seeds are the form's seed (or a random one) and the next N − 1; every "
            "candidate is kept in the History with its scores.")


def _score(clip: Any) -> Any:
    return clip.score


def candidate_note(score: Any) -> str:
    """One table cell: a probable collapse is a warning; an intentional deformation is only noted."""
    if score.warnings:
        segments = len(score.warnings)
        return (f"⚠ possible collapse: P(failure) {score.p_failure:.2f} "
                f"({segments} segment{'s' if segments != 1 else ''})")
    if score.p_intentional >= INTENTIONAL_NOTE_AT:
        return f"intentional deformation (P {score.p_intentional:.2f}), not penalised"
    return "—"


def best_of_n_headers(dimensions: Sequence[str]) -> list[str]:
    return ["Rank", "Entry", "Seed", "Reward", *(dimension_short(d) for d in dimensions), "P(failure)", "Notes"]


def best_of_n_dimensions(ranked: Sequence[Any]) -> list[str]:
    """The dimensions the reward model scored, in its order (the first candidate's)."""
    return list(_score(ranked[0]).dimensions) if ranked else []


def best_of_n_rows(ranked: Sequence[Any]) -> list[list[Any]]:
    """One row per `ScoredClip`, best first: rank, history id, seed, combined reward, scores, notes."""
    dims = best_of_n_dimensions(ranked)
    rows = []
    for clip in ranked:
        s = clip.score
        rows.append([clip.rank, clip.history_id, clip.seed, round(s.reward, 3),
                     *(round(float(s.dimensions.get(d, float("nan"))), 2) for d in dims),
                     round(s.p_failure, 2), candidate_note(s)])
    return rows


def best_of_n_caption(clip: Any) -> str:
    """Short enough for a thumbnail; the seed and the scores are in the table."""
    flag = " · ⚠" if clip.score.warnings else ""
    return f"{clip.rank}. #{clip.history_id} · {clip.score.reward:+.3f}{flag}"


def best_of_n_details(ranked: Sequence[Any]) -> str:
    """The reward model's warnings, per candidate (markdown; '' when there are none)."""
    lines = []
    for clip in ranked:
        lines += [f"- **#{clip.history_id}** (rank {clip.rank}): {_cell(w)}" for w in clip.score.warnings]
    if not lines:
        return ""
    return "**Reward-model warnings** (a deliberate smear or squash is not one):\n" + "\n".join(lines)


def best_of_n_status(ranked: Sequence[Any], seconds: float | None = None) -> str:
    if not ranked:
        return "Best of N produced no candidate."
    best = ranked[0]
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    return (f"✓ Best of {len(ranked)} done{took}: **#{best.history_id}** (seed {best.seed}) ranks first with "
            f"reward {best.score.reward:+.3f} and plays here; the ranking is under the form. All {len(ranked)} "
            "are in the History with their scores.")


def candidate_status(rank: int, total: int, history_id: int, seed: int, reward: float) -> str:
    return f"Showing candidate {rank} of {total}: #{history_id} (seed {seed}), reward {reward:+.3f}."


# -- stored reward scores (History details) --------------------------------------------------------
def reward_score_rows(records: Sequence[Any]) -> list[tuple[str, str]]:
    """One details-table row per reward model that scored the clip (`RewardScoreRecord`s, newest
    first): the combined reward, P(failure) and the score per production dimension."""
    rows = []
    for rec in records:
        details = rec.details if isinstance(rec.details, dict) else {}
        dims = details.get("dimensions") if isinstance(details.get("dimensions"), dict) else {}
        parts = [f"reward {rec.reward:+.3f}", f"P(failure) {rec.p_failure:.2f}"]
        parts += [f"{dimension_short(d)} {float(v):+.2f}" for d, v in dims.items()
                  if isinstance(v, (int, float))]
        if rec.p_intentional >= INTENTIONAL_NOTE_AT:
            parts.append(f"intentional deformation (P {rec.p_intentional:.2f}), not penalised")
        rows.append((f"Reward · {rec.model_key}", " · ".join(parts)))
    return rows


def details_markdown(record: ClipRecord, taxonomy: Taxonomy, reward_records: Sequence[Any] = ()) -> str:
    """`settings_markdown` plus the stored reward scores of the entry, when there are any."""
    lines = [settings_markdown(record, taxonomy)]
    lines += [f"| {_cell(name)} | {_cell(value)} |" for name, value in reward_score_rows(reward_records)]
    return "\n".join(lines)
