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

from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.rating.types import DIMENSIONS, EXPORT_KINDS, GROUP_KEYS

from ..services.context import StudioServices
from ..services.rating_view import DIMENSION_TITLES
from . import rating_settings
from .rating_admin_handlers import TITLE, AdminHandlers, Refused
from .rating_admin_tables import (AGREEMENT_HEADERS, BOARD_HEADERS, DIM_HEADERS, NO_REWARD, OVERALL_TITLE,
                                  PAIR_HEADERS, QUALITY_HEADERS, RATER_HEADERS, REWARD_BOARD_HEADERS,
                                  agreement_rows, board_rows, quality_rows, rater_rows, reward_agreement_rows,
                                  reward_board_rows, reward_choices)

__all__ = ["AGREEMENT_HEADERS", "BOARD_HEADERS", "NO_REWARD", "OVERALL_TITLE", "REWARD_BOARD_HEADERS", "TITLE",
           "AdminPanel", "Refused", "agreement_rows", "board_rows", "build", "quality_rows", "rater_rows",
           "reward_agreement_rows", "reward_board_rows", "reward_choices", "wire"]

GOLD_OPTIONS = [("— (no answer)", ""), ("First clip wins", "first"), ("Second clip wins", "second"),
                ("Tie", "tie"), ("Both bad", "both_bad")]
EXPORT_LABELS = {"trl": "TRL preference pairs (parquet)", "pickapic": "Pick-a-Pic v2 layout (parquet)",
                 "videoalign": "VideoAlign / VideoReward CSV", "deformations": "Deformation labels (JSON Lines)"}


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



def _build_raters() -> dict[str, Any]:
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
    return dict(raters=raters, new_name=new_name, new_role=new_role, new_experience=new_experience,
                new_years=new_years, new_password=new_password, add=add, target=target, disable=disable,
                enable=enable, make_admin=make_admin, make_rater=make_rater, reset_password=reset_password,
                set_password=set_password)


def _build_pairs() -> dict[str, Any]:
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
    return dict(build_pairs=build_pairs, pick_a=pick_a, pick_b=pick_b, pick_any=pick_any, pick=pick,
                build_report=build_report, pairs=pairs, gold_pair=gold_pair, gold=gold, set_gold=set_gold,
                clear_gold=clear_gold)


def _build_reports(services: StudioServices) -> dict[str, Any]:
    """Export, rater quality and the leaderboard."""
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
    return dict(export_kind=export_kind, export=export, export_file=export_file, stats_refresh=stats_refresh,
                agreement=agreement, quality=quality, quality_note=quality_note, group_key=group_key,
                board_refresh=board_refresh, board=board, board_reward=board_reward, board_agreement=board_agreement,
                board_note=board_note)


def build(services: StudioServices) -> AdminPanel:
    gr.Markdown("Admin tools. Raters never see this tab, and the service refuses these actions to anyone who is "
                "not an active admin.", elem_classes=["muted"])
    raters = _build_raters()
    pairs = _build_pairs()
    reports = _build_reports(services)
    settings = rating_settings.build(services.rating.config)
    return AdminPanel(settings=settings, **raters, **pairs, **reports)


def _wire_accounts(p: AdminPanel, h: AdminHandlers, session: gr.State, admin_tab: gr.Tab) -> None:
    act = h.act
    admin_tab.select(act(h.overview, len(p.account_outputs()) + 1), inputs=session,
                     outputs=[*p.account_outputs(), p.pairs], show_progress="hidden", api_name="rating_overview")
    p.add.click(act(h.add_rater, len(p.account_outputs()) + 4),
                inputs=[session, p.new_name, p.new_role, p.new_experience, p.new_years, p.new_password],
                outputs=[*p.account_outputs(), p.new_name, p.new_experience, p.new_years, p.new_password],
                api_name="rating_add_rater")
    for button, what in ((p.disable, "disable"), (p.enable, "enable"), (p.make_admin, "admin"),
                         (p.make_rater, "rater")):
        button.click(act(h.change(what), len(p.account_outputs())), inputs=[session, p.target],
                     outputs=p.account_outputs(), api_name=f"rating_rater_{what}")
    p.set_password.click(act(h.set_password), inputs=[session, p.target, p.reset_password], outputs=p.reset_password,
                         api_name="rating_set_password")


def _wire_pairs_and_reports(p: AdminPanel, h: AdminHandlers, session: gr.State, admin_tab: gr.Tab) -> None:
    act = h.act
    p.build_pairs.click(act(h.build_pairs, 2), inputs=session, outputs=[p.build_report, p.pairs],
                        api_name="rating_build_pairs")
    p.pick.click(act(h.pick, 2), inputs=[session, p.pick_a, p.pick_b, *([p.pick_any] if p.pick_any else [])],
                 outputs=[p.build_report, p.pairs],
                 api_name="rating_pick_pair")
    p.set_gold.click(act(h.set_gold), inputs=[session, p.gold_pair, *p.gold], outputs=p.pairs,
                     api_name="rating_set_gold")
    p.clear_gold.click(act(h.clear_gold), inputs=[session, p.gold_pair], outputs=p.pairs,
                       api_name="rating_clear_gold")
    p.export.click(act(h.export), inputs=[session, p.export_kind], outputs=p.export_file, api_name="rating_export")
    p.stats_refresh.click(act(h.stats, 3), inputs=session, outputs=[p.agreement, p.quality, p.quality_note],
                          api_name="rating_stats")
    p.board_refresh.click(act(h.leaderboard, 3), inputs=[session, p.group_key, p.board_reward],
                          outputs=[p.board, p.board_agreement, p.board_note], api_name="rating_leaderboard")
    admin_tab.select(h.reward_picker, inputs=p.board_reward, outputs=p.board_reward, show_progress="hidden",
                     api_visibility="private")


def wire(panel: AdminPanel, services: StudioServices, *, session: gr.State, admin_tab: gr.Tab) -> None:
    h = AdminHandlers(services)
    if panel.settings is not None:
        rating_settings.wire(panel.settings, services, h.act, session)
    _wire_accounts(panel, h, session, admin_tab)
    _wire_pairs_and_reports(panel, h, session, admin_tab)
