"""The admin sub-tab's handlers: each runs as the acting account (`AdminHandlers.act`) and returns
the values of the outputs named in its docstring or in `rating_admin.wire`, in that order."""
from __future__ import annotations

import time
from typing import Any, Callable

import gradio as gr

from engine.core.errors import EngineError
from engine.rating.exports import SUFFIXES
from engine.rating.types import DIMENSIONS, PermissionDenied

from ..adapters import parse_id
from ..feedback import unchanged, warn
from ..formatting import model_label
from ..services.context import StudioServices
from ..services.downloads import new_download
from ..services.jobs import GPU_LOCK, gpu_function
from ..services.rating_view import DIMENSION_TITLES, rating_message, session_rater
from .rating_admin_tables import (BOARD_HEADERS, NO_REWARD, REWARD_BOARD_HEADERS, agreement_rows, board_rows,
                                  quality_rows, rater_rows, reward_agreement_rows, reward_board_rows, reward_choices)

TITLE = "Rating admin"
EXPORT_SUFFIX = {"trl": ".parquet", "pickapic": ".parquet", "videoalign": ".csv", "deformations": ".jsonl"}


class Refused(Exception):
    """Input the panel cannot act on; `act` shows it as a warning and leaves the outputs alone."""


def scoring_seconds(_name: str, ids: list[int]) -> int:
    """ZeroGPU's quota for scoring the rated clips."""
    return int(min(60 + 3 * len(ids), 900))


class AdminHandlers:
    """The panel's handlers over the rating service; wrap each in `act` to register it."""

    def __init__(self, services: StudioServices) -> None:
        self.services = services
        self.service = services.rating
        self.run_scoring = gpu_function(self.score_on_gpu, scoring_seconds)

    def act(self, fn: Callable[..., Any], outputs: int = 1) -> Callable[..., Any]:
        """Run `fn(admin, *args)` as the acting account (`session_rater`: the studio login when it
        is a rater account, else this session's sign-in).

        Bad input (an existing name, a pair that does not exist, a missing pick) is a warning
        toast and every output keeps its value (`gr.skip()`): a raised error would turn the
        tables and fields into red "Error" boxes (an API caller gets an error either way). A
        refusal (not an admin) is always an error; the panel is not shown to non-admins.
        """
        service = self.service

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

    # -- accounts --------------------------------------------------------------------------------
    def accounts(self, admin: Any) -> list[Any]:
        """The account table and the account picker."""
        raters = self.service.list_raters(admin)
        choices = [(f"{r.name} (#{r.id}, {r.role}{'' if r.active else ', disabled'})", r.id) for r in raters]
        return [rater_rows(raters), gr.update(choices=choices)]

    def overview(self, admin: Any) -> list[Any]:
        """The account table, the account picker and the pair table."""
        return [*self.accounts(admin), self.pair_rows(admin)]

    def add_rater(self, admin: Any, name: str, role: str, experience: str, years: float | None,
                  password: str) -> list[Any]:
        """The accounts, then the form emptied: name, experience, years, password."""
        made = self.service.add_rater(admin, (name or "").strip(), password or "", role=role or "rater",
                                      experience=experience or "",
                                      experience_years=None if years is None else int(years))
        gr.Info(f"Account '{made.name}' ({made.role}) created.")
        return [*self.accounts(admin), "", "", None, ""]

    def change(self, what: str) -> Callable[..., Any]:
        """Disable, enable, make admin or make rater (`what`) the picked account; the accounts after."""
        def handler(admin: Any, target: Any) -> list[Any]:
            if target is None:
                raise Refused("Pick an account first.")
            rater_id = int(target)
            if rater_id == admin.id and what in ("disable", "rater"):
                raise Refused("You cannot disable or demote your own account here (ask another admin).")
            if what in ("disable", "enable"):
                done = self.service.set_active(admin, rater_id, what == "enable")
            else:
                done = self.service.set_role(admin, rater_id, what)
            gr.Info(f"'{done.name}' is now {'active' if done.active else 'disabled'}, {done.role}.")
            return self.accounts(admin)
        handler.__name__ = f"rater_{what}"
        return handler

    def set_password(self, admin: Any, target: Any, password: str) -> str:
        if target is None:
            raise Refused("Pick an account first.")
        self.service.set_password(admin, int(target), password or "")
        gr.Info("Password changed.")
        return ""

    # -- pairs -----------------------------------------------------------------------------------
    def pair_rows(self, admin: Any) -> list[list[Any]]:
        pairs = self.service.list_pairs(admin)
        gens = self.service.repository.generations({g for p in pairs for g in (p.generation_a_id, p.generation_b_id)})

        def clip(gid: int) -> str:
            g = gens.get(gid)
            return f"#{gid} {model_label(g.model)}" if g is not None else f"#{gid}"

        return [[p.id, p.kind, clip(p.generation_a_id), clip(p.generation_b_id),
                 ", ".join(DIMENSION_TITLES.get(d, d) for d in p.gold) if p.is_gold else "",
                 p.created_at.strftime("%Y-%m-%d %H:%M")] for p in pairs]

    def build_pairs(self, admin: Any) -> list[Any]:
        """The build report and the pair table."""
        report = self.service.build_pairs(admin)
        lines = [f"**{len(report.created)} new pair{'s' if len(report.created) != 1 else ''}**, "
                 f"{report.existing} already there."]
        lines += [f"- skipped {s}" for s in report.skipped[:20]]
        if len(report.skipped) > 20:
            lines.append(f"- … and {len(report.skipped) - 20} more")
        return ["\n".join(lines), self.pair_rows(admin)]

    def pick(self, admin: Any, first: str | None, second: str | None, any_prompt: bool = False) -> list[Any]:
        """The build report and the pair table."""
        a, b = parse_id(first), parse_id(second)
        if a is None or b is None:
            raise Refused("Give two history numbers (the # in the History tab).")
        if a == b:  # said in the form's words; the service's message names its own fields
            raise Refused(f"History # (second): pick another clip than #{a}; a clip is not paired with itself.")
        gens = self.service.repository.generations({a, b})
        if not any_prompt and a in gens and b in gens and (
                gens[a].narrative != gens[b].narrative or dict(gens[a].tags) != dict(gens[b].tags)):
            # A rater judges how one prompt was made two ways; two prompts is a choice made on purpose.
            raise Refused(f"History # (second): #{b} has another narrative or other tags than #{a}; tick "
                          "'Different prompts allowed' to pair them anyway.")
        made = self.service.pick_pair(admin, a, b)
        return [f"Pair **{made.id}** made from history #{a} and #{b}.", self.pair_rows(admin)]

    def set_gold(self, admin: Any, pair_text: str | None, *answers: str) -> list[list[Any]]:
        pair_id = parse_id(pair_text)
        if pair_id is None:
            raise Refused("Type the pair number (the Pair column).")
        pair = next((p for p in self.service.list_pairs(admin) if p.id == pair_id), None)
        if pair is None:
            raise Refused(f"There is no pair {pair_id}.")
        side = {"first": pair.generation_a_id, "second": pair.generation_b_id}
        given = {d: side.get(a, a) for d, a in zip(DIMENSIONS, answers) if a}
        self.service.set_gold(admin, pair.id, given)
        gr.Info(f"Pair {pair.id} is a gold pair on {len(given)} dimension{'s' if len(given) != 1 else ''}.")
        return self.pair_rows(admin)

    def clear_gold(self, admin: Any, pair_text: str | None) -> list[list[Any]]:
        pair_id = parse_id(pair_text)
        if pair_id is None:
            raise Refused("Type the pair number (the Pair column).")
        self.service.clear_gold(admin, pair_id)
        return self.pair_rows(admin)

    # -- exports, quality, leaderboard -----------------------------------------------------------
    def export(self, admin: Any, kind: str) -> str:
        if kind not in SUFFIXES:
            raise Refused(f"Pick one of: {', '.join(SUFFIXES)}.")
        out = new_download(self.services.settings,
                           f"animatrix-{kind}-{time.strftime('%Y%m%d-%H%M%S')}{EXPORT_SUFFIX[kind]}")
        result = self.service.export(admin, kind, out)
        gr.Info(f"{result.rows} row{'s' if result.rows != 1 else ''} written to {result.path.name}.")
        return str(result.path)

    def stats(self, admin: Any) -> list[Any]:
        """The agreement table, the quality table and the note under them."""
        report = self.service.stats(admin)
        flagged = ", ".join(r.name for r in report.flagged)
        note = (f"Median time under {report.fast_median_s:.0f} s per pair is flagged as too fast"
                + (f": **{flagged}**." if flagged else "; nobody is."))
        return [agreement_rows(report), quality_rows(report), note]

    def score_on_gpu(self, reward_name: str, ids: list[int]) -> tuple[str, dict[int, dict[str, Any]], int]:
        """Under the GPU lock: load the reward model, score the clips it has not scored yet (stored).
        Plain arguments and results (ZeroGPU runs it in another process)."""
        GPU_LOCK.acquire()
        try:
            scorer = self.services.reward_scorer(reward_name)
            missing = len(ids) - len(scorer.stored(ids))
            scores = scorer.score(ids)
        except (OSError, RuntimeError, ValueError) as exc:
            raise gr.Error(f"Reward model '{reward_name}': {exc}", title=TITLE) from None
        finally:
            GPU_LOCK.release()
        return scorer.model_key, {gid: s.to_dict() for gid, s in scores.items()}, missing

    def leaderboard(self, admin: Any, group: str, reward_name: str | None) -> list[Any]:
        """The board, the reward agreement table (hidden without a reward model) and the note."""
        board = self.service.leaderboard(admin, group_key=group or "model")  # refuses non-admins first
        if not reward_name:
            return [{"headers": BOARD_HEADERS, "data": board_rows(board)}, gr.update(value=[], visible=False), ""]
        from engine.rating.leaderboard import group_key_function
        from engine.reward.leaderboard import build_reward_leaderboard
        from engine.reward.types import RewardScore

        if reward_name not in {e.name for e in self.services.reward_models()}:
            raise Refused(f"Reward model: '{reward_name}' is not a checkpoint in {self.services.reward_dir}; "
                          "rescan by reopening this tab.")
        votes = self.service.repository.votes()
        gens = self.service.repository.generations({g for v in votes for g in (v.generation_a_id, v.generation_b_id)})
        ids = sorted(gid for gid, g in gens.items() if g.status == "done" and g.video_path)
        if GPU_LOCK.locked():
            gr.Info("Waiting for the GPU to score the rated clips with the reward model…")
        model_key, raw, scored_now = self.run_scoring(reward_name, ids)
        scores = {int(gid): RewardScore.from_dict(d) for gid, d in raw.items()}
        reward = build_reward_leaderboard(board, votes, gens, scores, group_key_function(board.group_key), model_key)
        note = (f"Reward model `{model_key}`: {len(scores)} rated clip{'s' if len(scores) != 1 else ''} "
                f"scored ({scored_now} just now, the rest stored). Reward score: mean r_d of the group's rated "
                "clips (the combined reward on the overall rows, beside the mean Bradley-Terry score); Spearman "
                "needs 3+ groups.")
        return [{"headers": REWARD_BOARD_HEADERS, "data": reward_board_rows(board, reward)},
                gr.update(value=reward_agreement_rows(reward), visible=True), note]

    def reward_picker(self, value: str | None) -> Any:
        choices = reward_choices(self.services)
        return gr.update(choices=choices, value=value if value in {c[1] for c in choices} else NO_REWARD)
