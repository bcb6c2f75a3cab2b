"""Rate tab, admin sub-tab: accounts, pairs and gold answers, exports, rater quality, leaderboard.

The leaderboard can put a reward model (a checkpoint in ``<models>/reward``) beside the animators:
its mean score per group next to the Bradley-Terry score, and how well the two agree
(`engine.reward.leaderboard.build_reward_leaderboard`). Rated clips it has not scored yet are
scored first, under the GPU lock, and the scores are stored.

The sub-tab is shown to admins only, but that is courtesy: every handler acts as the logged-in
(or signed-in) rater and the service checks, against the database, that the account is an active
admin (`PermissionDenied` is an error, for API callers). Bad input is a warning toast that leaves
every table and field as it was (`act`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import gradio as gr

from engine.core.errors import EngineError
from engine.rating.exports import SUFFIXES
from engine.rating.leaderboard import Leaderboard
from engine.rating.stats import QualityReport
from engine.rating.types import DIMENSIONS, EXPORT_KINDS, GROUP_KEYS, PermissionDenied

from ..adapters import parse_id
from ..feedback import unchanged, warn
from ..formatting import model_label
from ..services.context import StudioServices
from ..services.downloads import new_download
from ..services.jobs import GPU_LOCK, gpu_function
from ..services.rating_view import DIMENSION_TITLES, rating_message, session_rater
from . import rating_settings

TITLE = "Rating admin"


class Refused(Exception):
    """Input the panel cannot act on; `act` shows it as a warning and leaves the outputs alone."""
RATER_HEADERS = ["#", "Name", "Role", "Experience", "Years", "Active", "Created"]
PAIR_HEADERS = ["Pair", "Kind", "First clip", "Second clip", "Gold", "Created"]
DIM_HEADERS = ["Dimension", "Pairs with ≥2 raters", "Fleiss κ", "Krippendorff α", "Cohen κ (mean of rater pairs)"]
QUALITY_HEADERS = ["Rater", "Judged", "Gold votes", "Gold accuracy", "Repeats", "Self-consistency",
                   "Median time", "Too fast"]
BOARD_HEADERS = ["Dimension", "Rank", "Group", "Score", "95% CI", "W–T–L", "Mean 1–5", "Judgements"]
REWARD_BOARD_HEADERS = [*BOARD_HEADERS, "Reward score", "Scored clips"]
AGREEMENT_HEADERS = ["Dimension", "Spearman ρ (groups)", "Pairwise agreement (groups)", "Verdict agreement",
                     "Verdicts"]
NO_REWARD = ""  # the reward picker's "animators only" value
OVERALL_TITLE = "Overall (combined reward)"
GOLD_OPTIONS = [("— (no answer)", ""), ("First clip wins", "first"), ("Second clip wins", "second"),
                ("Tie", "tie"), ("Both bad", "both_bad")]
EXPORT_LABELS = {"trl": "TRL preference pairs (parquet)", "pickapic": "Pick-a-Pic v2 layout (parquet)",
                 "videoalign": "VideoAlign / VideoReward CSV", "deformations": "Deformation labels (JSON Lines)"}
EXPORT_SUFFIX = {"trl": ".parquet", "pickapic": ".parquet", "videoalign": ".csv", "deformations": ".jsonl"}


@dataclass
class AdminPanel:
    raters: gr.Dataframe
    new_name: gr.Textbox
    new_role: gr.Radio
    new_experience: gr.Textbox
    new_years: gr.Number
    new_password: gr.Textbox
    add: gr.Button
    target: gr.Dropdown
    disable: gr.Button
    enable: gr.Button
    make_admin: gr.Button
    make_rater: gr.Button
    reset_password: gr.Textbox
    set_password: gr.Button
    build_pairs: gr.Button
    build_report: gr.Markdown
    pick_a: gr.Textbox
    pick_b: gr.Textbox
    pick: gr.Button
    pairs: gr.Dataframe
    gold_pair: gr.Textbox
    gold: list[gr.Dropdown]  # DIMENSIONS order
    set_gold: gr.Button
    clear_gold: gr.Button
    export_kind: gr.Radio
    export: gr.Button
    export_file: gr.File
    stats_refresh: gr.Button
    agreement: gr.Dataframe
    quality: gr.Dataframe
    quality_note: gr.Markdown
    group_key: gr.Dropdown
    board_refresh: gr.Button
    board: gr.Dataframe
    board_reward: gr.Dropdown
    board_agreement: gr.Dataframe
    board_note: gr.Markdown
    settings: rating_settings.SettingsPanel | None = None  # "Rating settings" (uncertainty first, shares)
    pick_any: gr.Checkbox | None = None  # "Pair these two" across prompts, asked for explicitly

    def account_outputs(self) -> list[Any]:
        return [self.raters, self.target]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def reward_choices(services: StudioServices) -> list[tuple[str, str]]:
    """The leaderboard's reward picker: animators only, then the checkpoints in ``<models>/reward``."""
    return [("— none (animators only)", NO_REWARD), *((e.label, e.name) for e in services.reward_models())]


def build(services: StudioServices) -> AdminPanel:
    gr.Markdown("Admin tools. Raters never see this tab, and the service refuses these actions to anyone who is "
                "not an active admin.", elem_classes=["muted"])
    with gr.Accordion("Raters", open=True, elem_id="rate-admin-raters"):
        raters = gr.Dataframe(headers=RATER_HEADERS, value=[], interactive=False, wrap=True, max_height=300,
                              show_label=False, elem_id="rate-admin-rater-table")
        with gr.Row(elem_classes=["amx-bottom-row"]):
            new_name = gr.Textbox(label="Name", max_lines=1, min_width=140, elem_id="rate-admin-new-name")
            new_role = gr.Radio(["rater", "admin"], value="rater", label="Role", min_width=150,
                                elem_id="rate-admin-new-role")
            new_experience = gr.Textbox(label="Experience", placeholder="e.g. key animator, TV", max_lines=1,
                                        min_width=160, elem_id="rate-admin-new-experience")
            new_years = gr.Number(None, label="Years", placeholder="optional", precision=0, minimum=0, maximum=80,
                                  min_width=80,
                                  elem_id="rate-admin-new-years")
            new_password = gr.Textbox(label="Password (8+ characters)", type="password", max_lines=1, min_width=160,
                                      elem_id="rate-admin-new-password")
        add = gr.Button("Add rater", variant="primary", size="sm", elem_id="rate-admin-add")
        with gr.Row(elem_classes=["amx-bottom-row"]):
            target = gr.Dropdown([], value=None, label="Account", min_width=180, elem_id="rate-admin-target")
            disable = gr.Button("Disable", size="sm", variant="stop", min_width=90, elem_id="rate-admin-disable")
            enable = gr.Button("Enable", size="sm", min_width=90, elem_id="rate-admin-enable")
            make_admin = gr.Button("Make admin", size="sm", min_width=100, elem_id="rate-admin-make-admin")
            make_rater = gr.Button("Make rater", size="sm", min_width=100, elem_id="rate-admin-make-rater")
        with gr.Row(elem_classes=["amx-bottom-row"]):
            reset_password = gr.Textbox(label="New password for the account", type="password", max_lines=1,
                                        min_width=200, elem_id="rate-admin-reset-password")
            set_password = gr.Button("Set password", size="sm", min_width=120, elem_id="rate-admin-set-password")
    with gr.Accordion("Pairs and gold answers", open=True, elem_id="rate-admin-pairs"):
        with gr.Row(elem_classes=["amx-bottom-row"]):
            build_pairs = gr.Button("Build pairs from history", variant="primary", size="sm", min_width=200,
                                    elem_id="rate-admin-build")
            pick_a = gr.Textbox(label="History # (first)", placeholder="e.g. 12", max_lines=1, min_width=110,
                               elem_id="rate-admin-pick-a")
            pick_b = gr.Textbox(label="History # (second)", placeholder="e.g. 15", max_lines=1, min_width=110,
                               elem_id="rate-admin-pick-b")
            pick_any = gr.Checkbox(False, label="Different prompts allowed", min_width=130, elem_id="rate-admin-pick-any")
            pick = gr.Button("Pair these two", size="sm", min_width=130, elem_id="rate-admin-pick")
        build_report = gr.Markdown("Pairs are clips with the same narrative, tags and seed made by different "
                                   "models or settings. Building renders the playback copies, which takes a moment.",
                                   elem_classes=["muted"], elem_id="rate-admin-build-report")
        pairs = gr.Dataframe(headers=PAIR_HEADERS, value=[], interactive=False, wrap=True, max_height=300,
                             show_label=False, elem_id="rate-admin-pair-table")
        with gr.Row(elem_classes=["amx-bottom-row"]):
            gold_pair = gr.Textbox(label="Pair", placeholder="Pair #", max_lines=1, min_width=90,
                                  elem_id="rate-admin-gold-pair")
            gold = [gr.Dropdown(GOLD_OPTIONS, value="", label=DIMENSION_TITLES[d], min_width=150,
                                elem_id=f"rate-admin-gold-{d}") for d in DIMENSIONS]
        with gr.Row():
            set_gold = gr.Button("Mark as gold", size="sm", variant="primary", elem_id="rate-admin-set-gold")
            clear_gold = gr.Button("Clear gold", size="sm", elem_id="rate-admin-clear-gold")
    with gr.Accordion("Export judgements", open=False, elem_id="rate-admin-export"):
        with gr.Row(elem_classes=["amx-bottom-row"]):
            export_kind = gr.Radio([(EXPORT_LABELS[k], k) for k in EXPORT_KINDS], value="trl", label="Format",
                                   scale=3, elem_id="rate-admin-export-kind")
            export = gr.Button("Export", size="sm", variant="primary", scale=1, min_width=100,
                               elem_id="rate-admin-export-go")
        export_file = gr.File(label="Download", interactive=False, elem_id="rate-admin-export-file")
    with gr.Accordion("Rater quality", open=False, elem_id="rate-admin-stats"):
        with gr.Row():
            stats_refresh = gr.Button("Compute", size="sm", scale=0, min_width=140, elem_id="rate-admin-stats-go")
        agreement = gr.Dataframe(headers=DIM_HEADERS, value=[], interactive=False, wrap=True, show_label=False,
                                 elem_id="rate-admin-agreement")
        quality = gr.Dataframe(headers=QUALITY_HEADERS, value=[], interactive=False, wrap=True, show_label=False,
                               elem_id="rate-admin-quality")
        quality_note = gr.Markdown("", elem_classes=["muted"], elem_id="rate-admin-quality-note")
    with gr.Accordion("Leaderboard", open=False, elem_id="rate-admin-board"):
        with gr.Row(elem_classes=["amx-bottom-row"]):
            group_key = gr.Dropdown(list(GROUP_KEYS), value="model", label="Compare", min_width=160, scale=1,
                                    elem_id="rate-admin-group")
            board_reward = gr.Dropdown(reward_choices(services), value=NO_REWARD, label="Reward model (optional)",
                                       allow_custom_value=True,  # checkpoints trained after start-up; checked
                                       min_width=200, scale=2, elem_id="rate-admin-board-reward",
                                       info="scores the rated clips it has not scored yet")
            board_refresh = gr.Button("Compute", size="sm", scale=0, min_width=140, elem_id="rate-admin-board-go")
        board = gr.Dataframe(headers=BOARD_HEADERS, value=[], interactive=False, wrap=True, show_label=False,
                             max_height=480, elem_id="rate-admin-board-table")
        board_agreement = gr.Dataframe(headers=AGREEMENT_HEADERS, value=[], interactive=False, wrap=True,
                                       show_label=False, visible=False, elem_id="rate-admin-board-agreement")
        board_note = gr.Markdown("", elem_classes=["muted"], elem_id="rate-admin-board-note")
    settings = rating_settings.build(services.rating.config)
    return AdminPanel(raters, new_name, new_role, new_experience, new_years, new_password, add, target, disable,
                      enable, make_admin, make_rater, reset_password, set_password, build_pairs, build_report,
                      pick_a, pick_b, pick, pairs, gold_pair, gold, set_gold, clear_gold, export_kind, export,
                      export_file, stats_refresh, agreement, quality, quality_note, group_key, board_refresh, board,
                      board_reward, board_agreement, board_note, settings, pick_any)


# -- tables (plain data, testable without a browser) ----------------------------------------------
def rater_rows(raters: Sequence[Any]) -> list[list[Any]]:
    return [[r.id, r.name, r.role, r.experience or "", "" if r.experience_years is None else r.experience_years,
             "yes" if r.active else "disabled", r.created_at.strftime("%Y-%m-%d")] for r in raters]


def agreement_rows(report: QualityReport) -> list[list[Any]]:
    rows = []
    for d in report.dimensions:
        kappas = [c.kappa for c in d.cohen if c.kappa is not None]
        rows.append([DIMENSION_TITLES.get(d.dimension, d.dimension), d.items, _fmt(d.fleiss_kappa),
                     _fmt(d.krippendorff_alpha), _fmt(sum(kappas) / len(kappas)) if kappas else "—"])
    return rows


def quality_rows(report: QualityReport) -> list[list[Any]]:
    return [[r.name, r.judged, r.gold_votes, _pct(r.gold_accuracy), r.repeat_votes, _pct(r.self_consistency),
             "—" if r.median_time_s is None else f"{r.median_time_s:.0f} s", "⚠ too fast" if r.too_fast else ""]
            for r in report.raters]


def board_rows(board: Leaderboard) -> list[list[Any]]:
    if not any(table.entries for table in board.dimensions):
        return [["—", "", "no judgements yet", "", "", "", "", 0]]
    rows = []
    for table in board.dimensions:
        for rank, e in enumerate(table.entries, 1):
            rows.append([DIMENSION_TITLES.get(table.dimension, table.dimension), rank, e.group, f"{e.score:+.2f}",
                         f"{e.ci_low:+.2f} … {e.ci_high:+.2f}", f"{e.wins}–{e.ties}–{e.losses}",
                         "—" if e.mean_score is None else f"{e.mean_score:.2f} ({e.scored})", table.judgements])
    return rows


def reward_board_rows(board: Leaderboard, reward: Any) -> list[list[Any]]:
    """`board_rows` with the reward model's mean score and scored clips per group (`reward` is a
    `RewardLeaderboard`), then the combined reward against the mean human score over dimensions."""
    if not any(table.entries for table in board.dimensions):
        return [[*row, "—", 0] for row in board_rows(board)]
    by_cell = {(d.dimension, r.group): r for d in reward.dimensions for r in d.rows}
    rows = []
    for table in board.dimensions:
        for rank, e in enumerate(table.entries, 1):
            r = by_cell.get((table.dimension, e.group))
            mean = None if r is None else r.reward_mean
            rows.append([DIMENSION_TITLES.get(table.dimension, table.dimension), rank, e.group, f"{e.score:+.2f}",
                         f"{e.ci_low:+.2f} … {e.ci_high:+.2f}", f"{e.wins}–{e.ties}–{e.losses}",
                         "—" if e.mean_score is None else f"{e.mean_score:.2f} ({e.scored})", table.judgements,
                         _fmt(mean, 3) if mean is None else f"{mean:+.3f}", 0 if r is None else r.clips])
    overall = next((d for d in reward.dimensions if d.dimension == "overall"), None)
    for rank, r in enumerate(overall.rows if overall is not None else (), 1):
        rows.append([OVERALL_TITLE, rank, r.group, "—" if r.human_score is None else f"{r.human_score:+.2f}",
                     "", "", "", "", "—" if r.reward_mean is None else f"{r.reward_mean:+.3f}", r.clips])
    return rows


def reward_agreement_rows(reward: Any) -> list[list[Any]]:
    """Per dimension: Spearman and pairwise agreement of the groups' rankings, and verdict agreement."""
    return [[OVERALL_TITLE if d.dimension == "overall" else DIMENSION_TITLES.get(d.dimension, d.dimension),
             _fmt(d.spearman), _pct(d.pairwise_agreement), _pct(d.verdict_agreement), d.verdicts]
            for d in reward.dimensions]


def wire(panel: AdminPanel, services: StudioServices, *, session: gr.State, admin_tab: gr.Tab) -> None:
    service = services.rating

    def act(fn: Callable[..., Any], outputs: int = 1) -> Callable[..., Any]:
        """Run `fn(admin, *args)` as the acting account (`session_rater`: the studio login when it
        is a rater account, else this session's sign-in).

        Bad input (an existing name, a pair that does not exist, a missing pick) is a warning
        toast and every output keeps its value (`gr.skip()`): a raised error would turn the
        tables and fields into red "Error" boxes (an API caller gets an error either way). A
        refusal (not an admin) is always an error; the panel is not shown to non-admins.
        """
        def handler(request: gr.Request, state: Any, *args: Any) -> Any:
            try:
                return fn(session_rater(service, state, request), *args)
            except PermissionDenied as exc:
                raise gr.Error(rating_message(exc), title=TITLE) from None
            except (EngineError, Refused) as exc:
                # A toast for the page; for an API caller (no toasts, no form) an error (app.feedback).
                warn(rating_message(exc) if isinstance(exc, EngineError) else str(exc), TITLE)
                return unchanged(outputs)
        handler.__name__ = fn.__name__
        return handler

    def accounts(admin: Any) -> list[Any]:
        raters = service.list_raters(admin)
        choices = [(f"{r.name} (#{r.id}, {r.role}{'' if r.active else ', disabled'})", r.id) for r in raters]
        return [rater_rows(raters), gr.update(choices=choices)]

    def pair_rows(admin: Any) -> list[list[Any]]:
        pairs = service.list_pairs(admin)
        gens = service.repository.generations({g for p in pairs for g in (p.generation_a_id, p.generation_b_id)})

        def clip(gid: int) -> str:
            g = gens.get(gid)
            return f"#{gid} {model_label(g.model)}" if g is not None else f"#{gid}"

        return [[p.id, p.kind, clip(p.generation_a_id), clip(p.generation_b_id),
                 ", ".join(DIMENSION_TITLES.get(d, d) for d in p.gold) if p.is_gold else "",
                 p.created_at.strftime("%Y-%m-%d %H:%M")] for p in pairs]

    def overview(admin: Any) -> list[Any]:
        return [*accounts(admin), pair_rows(admin)]

    def add_rater(admin: Any, name: str, role: str, experience: str, years: float | None, password: str) -> list[Any]:
        made = service.add_rater(admin, (name or "").strip(), password or "", role=role or "rater",
                                 experience=experience or "", experience_years=None if years is None else int(years))
        gr.Info(f"Account '{made.name}' ({made.role}) created.")
        return [*accounts(admin), "", "", None, ""]

    def change(what: str) -> Callable[..., Any]:
        def handler(admin: Any, target: Any) -> list[Any]:
            if target is None:
                raise Refused("Pick an account first.")
            rater_id = int(target)
            if rater_id == admin.id and what in ("disable", "rater"):
                raise Refused("You cannot disable or demote your own account here (ask another admin).")
            if what in ("disable", "enable"):
                done = service.set_active(admin, rater_id, what == "enable")
            else:
                done = service.set_role(admin, rater_id, what)
            gr.Info(f"'{done.name}' is now {'active' if done.active else 'disabled'}, {done.role}.")
            return accounts(admin)
        handler.__name__ = f"rater_{what}"
        return handler

    def set_password(admin: Any, target: Any, password: str) -> str:
        if target is None:
            raise Refused("Pick an account first.")
        service.set_password(admin, int(target), password or "")
        gr.Info("Password changed.")
        return ""

    def build_pairs(admin: Any) -> list[Any]:
        report = service.build_pairs(admin)
        lines = [f"**{len(report.created)} new pair{'s' if len(report.created) != 1 else ''}**, "
                 f"{report.existing} already there."]
        lines += [f"- skipped {s}" for s in report.skipped[:20]]
        if len(report.skipped) > 20:
            lines.append(f"- … and {len(report.skipped) - 20} more")
        return ["\n".join(lines), pair_rows(admin)]

    def pick(admin: Any, first: str | None, second: str | None, any_prompt: bool = False) -> list[Any]:
        a, b = parse_id(first), parse_id(second)
        if a is None or b is None:
            raise Refused("Give two history numbers (the # in the History tab).")
        if a == b:  # said in the form's words; the service's message names its own fields
            raise Refused(f"History # (second): pick another clip than #{a}; a clip is not paired with itself.")
        gens = service.repository.generations({a, b})
        if not any_prompt and a in gens and b in gens and (
                gens[a].narrative != gens[b].narrative or dict(gens[a].tags) != dict(gens[b].tags)):
            # A rater judges how one prompt was made two ways; two prompts is a choice made on purpose.
            raise Refused(f"History # (second): #{b} has another narrative or other tags than #{a}; tick "
                          "'Different prompts allowed' to pair them anyway.")
        made = service.pick_pair(admin, a, b)
        return [f"Pair **{made.id}** made from history #{a} and #{b}.", pair_rows(admin)]

    def set_gold(admin: Any, pair_text: str | None, *answers: str) -> list[list[Any]]:
        pair_id = parse_id(pair_text)
        if pair_id is None:
            raise Refused("Type the pair number (the Pair column).")
        pair = next((p for p in service.list_pairs(admin) if p.id == pair_id), None)
        if pair is None:
            raise Refused(f"There is no pair {pair_id}.")
        side = {"first": pair.generation_a_id, "second": pair.generation_b_id}
        given = {d: side.get(a, a) for d, a in zip(DIMENSIONS, answers) if a}
        service.set_gold(admin, pair.id, given)
        gr.Info(f"Pair {pair.id} is a gold pair on {len(given)} dimension{'s' if len(given) != 1 else ''}.")
        return pair_rows(admin)

    def clear_gold(admin: Any, pair_text: str | None) -> list[list[Any]]:
        pair_id = parse_id(pair_text)
        if pair_id is None:
            raise Refused("Type the pair number (the Pair column).")
        service.clear_gold(admin, pair_id)
        return pair_rows(admin)

    def export(admin: Any, kind: str) -> str:
        if kind not in SUFFIXES:
            raise Refused(f"Pick one of: {', '.join(SUFFIXES)}.")
        out = new_download(services.settings, f"animatrix-{kind}-{time.strftime('%Y%m%d-%H%M%S')}{EXPORT_SUFFIX[kind]}")
        result = service.export(admin, kind, out)
        gr.Info(f"{result.rows} row{'s' if result.rows != 1 else ''} written to {result.path.name}.")
        return str(result.path)

    def stats(admin: Any) -> list[Any]:
        report = service.stats(admin)
        flagged = ", ".join(r.name for r in report.flagged)
        note = (f"Median time under {report.fast_median_s:.0f} s per pair is flagged as too fast"
                + (f": **{flagged}**." if flagged else "; nobody is."))
        return [agreement_rows(report), quality_rows(report), note]

    def score_on_gpu(reward_name: str, ids: list[int]) -> tuple[str, dict[int, dict[str, Any]], int]:
        """Under the GPU lock: load the reward model, score the clips it has not scored yet (stored).
        Plain arguments and results (ZeroGPU runs it in another process)."""
        GPU_LOCK.acquire()
        try:
            scorer = services.reward_scorer(reward_name)
            missing = len(ids) - len(scorer.stored(ids))
            scores = scorer.score(ids)
        except (OSError, RuntimeError, ValueError) as exc:
            raise gr.Error(f"Reward model '{reward_name}': {exc}", title=TITLE) from None
        finally:
            GPU_LOCK.release()
        return scorer.model_key, {gid: s.to_dict() for gid, s in scores.items()}, missing

    run_scoring = gpu_function(score_on_gpu, lambda _name, ids: int(min(60 + 3 * len(ids), 900)))

    def leaderboard(admin: Any, group: str, reward_name: str | None) -> list[Any]:
        board = service.leaderboard(admin, group_key=group or "model")  # refuses non-admins first
        if not reward_name:
            return [{"headers": BOARD_HEADERS, "data": board_rows(board)}, gr.update(value=[], visible=False), ""]
        from engine.rating.leaderboard import group_key_function
        from engine.reward.leaderboard import build_reward_leaderboard
        from engine.reward.types import RewardScore

        if reward_name not in {e.name for e in services.reward_models()}:
            raise Refused(f"Reward model: '{reward_name}' is not a checkpoint in {services.reward_dir}; rescan by "
                           "reopening this tab.")
        votes = service.repository.votes()
        gens = service.repository.generations({g for v in votes for g in (v.generation_a_id, v.generation_b_id)})
        ids = sorted(gid for gid, g in gens.items() if g.status == "done" and g.video_path)
        if GPU_LOCK.locked():
            gr.Info("Waiting for the GPU to score the rated clips with the reward model…")
        model_key, raw, scored_now = run_scoring(reward_name, ids)
        scores = {int(gid): RewardScore.from_dict(d) for gid, d in raw.items()}
        reward = build_reward_leaderboard(board, votes, gens, scores, group_key_function(board.group_key), model_key)
        note = (f"Reward model `{model_key}`: {len(scores)} rated clip{'s' if len(scores) != 1 else ''} "
                f"scored ({scored_now} just now, the rest stored). Reward score: mean r_d of the group's rated "
                "clips (the combined reward on the overall rows, beside the mean Bradley-Terry score); Spearman "
                "needs 3+ groups.")
        return [{"headers": REWARD_BOARD_HEADERS, "data": reward_board_rows(board, reward)},
                gr.update(value=reward_agreement_rows(reward), visible=True), note]

    def reward_picker(value: str | None) -> Any:
        choices = reward_choices(services)
        return gr.update(choices=choices, value=value if value in {c[1] for c in choices} else NO_REWARD)

    p = panel
    if p.settings is not None:
        rating_settings.wire(p.settings, services, act, session)
    admin_tab.select(act(overview, len(p.account_outputs()) + 1), inputs=session, outputs=[*p.account_outputs(), p.pairs], show_progress="hidden",
                     api_name="rating_overview")
    p.add.click(act(add_rater, len(p.account_outputs()) + 4), inputs=[session, p.new_name, p.new_role, p.new_experience, p.new_years,
                                        p.new_password],
                outputs=[*p.account_outputs(), p.new_name, p.new_experience, p.new_years, p.new_password],
                api_name="rating_add_rater")
    for button, what in ((p.disable, "disable"), (p.enable, "enable"), (p.make_admin, "admin"),
                         (p.make_rater, "rater")):
        button.click(act(change(what), len(p.account_outputs())), inputs=[session, p.target], outputs=p.account_outputs(),
                     api_name=f"rating_rater_{what}")
    p.set_password.click(act(set_password), inputs=[session, p.target, p.reset_password], outputs=p.reset_password,
                         api_name="rating_set_password")
    p.build_pairs.click(act(build_pairs, 2), inputs=session, outputs=[p.build_report, p.pairs],
                        api_name="rating_build_pairs")
    p.pick.click(act(pick, 2), inputs=[session, p.pick_a, p.pick_b, *([p.pick_any] if p.pick_any else [])],
                 outputs=[p.build_report, p.pairs],
                 api_name="rating_pick_pair")
    p.set_gold.click(act(set_gold), inputs=[session, p.gold_pair, *p.gold], outputs=p.pairs, api_name="rating_set_gold")
    p.clear_gold.click(act(clear_gold), inputs=[session, p.gold_pair], outputs=p.pairs, api_name="rating_clear_gold")
    p.export.click(act(export), inputs=[session, p.export_kind], outputs=p.export_file, api_name="rating_export")
    p.stats_refresh.click(act(stats, 3), inputs=session, outputs=[p.agreement, p.quality, p.quality_note],
                          api_name="rating_stats")
    p.board_refresh.click(act(leaderboard, 3), inputs=[session, p.group_key, p.board_reward],
                          outputs=[p.board, p.board_agreement, p.board_note], api_name="rating_leaderboard")
    admin_tab.select(reward_picker, inputs=p.board_reward, outputs=p.board_reward, show_progress="hidden",
                     api_visibility="private")
