"""The rating service on a real studio: pairs, access control, scheduling, drafts, stats, exports."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from engine.core.errors import InvalidRequest
from engine.core.export import probe_video, read_embedded_settings
from engine.rating.service import RatingService
from engine.rating.types import DIMENSIONS, DeformationMark, JudgementForm, PermissionDenied, ServedPair, Vote
from engine.storage.clips import HistoryService
from support.rating import (ADMIN, N1, N3, PASSWORD, QUALITY, RATERS, Studio, Template, age_serving, full_form,
                                 prefer_better_model)



def _drain(service: RatingService, name: str, answer: Any = None) -> list[ServedPair]:
    rater = service.rater_by_name(name)
    served = []
    while (pair := service.next_pair(rater)) is not None:
        served.append(pair)
        service.submit(rater, pair.assignment_id, answer(service, pair) if answer else full_form())
    return served


def _rows(studio: Studio, sql: str) -> list[Any]:
    with studio.db.engine.connect() as conn:
        return list(conn.execute(text(sql)))


# -- pairs --------------------------------------------------------------------------------------
def test_pairs_from_history_share_rate_and_length(studio: Studio, template: Template) -> None:
    c = studio.clips
    assert len(template.report.created) == 5 and template.report.skipped == ()
    pairs = {(p.generation_a_id, p.generation_b_id): p for p in studio.service().list_pairs(studio.rater(ADMIN))}
    assert (c["n2-preview"], c["n2-preview-again"]) not in pairs  # the same request twice is not a comparison
    assert pairs[(c["n1-preview"], c["n3-preview"])].kind == "picked"
    for p in pairs.values():
        a, b = (probe_video(studio.settings.media_dir / clip.path) for clip in (p.playback_a, p.playback_b))
        assert (a.fps, a.num_frames, a.width, a.height) == (b.fps, b.num_frames, b.width, b.height) == (8, 8, 32, 32)
        with pytest.raises(InvalidRequest, match="holds no AniMatrix settings"):  # no metadata at all
            read_embedded_settings(studio.settings.media_dir / p.playback_a.path)
    anime = pairs[(c["n1-preview"], c["n1-animegen-t2v"])].playback_b  # 12 fps, 12 frames, 48 px in the source
    assert (anime.source_fps, anime.source_frames) == (12.0, 12)
    # One file per clip and spec: 7 clips with the same spec -> 7 playback files.
    assert len(list((studio.settings.media_dir / "rating").glob("*.mp4"))) == 7
    # A build that crashed between writing a file and its row left strays: old ones are swept.
    stale, fresh = (studio.settings.media_dir / "rating" / f"{name}.mp4" for name in ("stale", "fresh"))
    for stray in (stale, fresh):
        stray.write_bytes(b"half a build")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    again = studio.service().build_pairs(studio.rater(ADMIN))
    assert (again.created, again.existing) == ((), 5)
    assert not stale.exists() and fresh.exists()
    with pytest.raises(InvalidRequest, match="already a pair"):
        studio.service().pick_pair(studio.rater(ADMIN), c["n3-preview"], c["n1-preview"])


def test_a_paired_clip_cannot_be_deleted_from_the_history(studio: Studio) -> None:
    history = HistoryService(studio.db, studio.settings.media_dir)
    record = history.get(studio.clips["n1-wan2.1-t2v-1.3b"])
    with pytest.raises(InvalidRequest, match="rating pair.*judgements refer to it"):
        history.delete(record.id)
    assert history.video_path(record).is_file()  # the files came back with the refusal


# -- accounts and access control ------------------------------------------------------------------
def test_authentication(studio: Studio) -> None:
    service = studio.service()
    aki = service.authenticate("aki", PASSWORD)
    assert aki is not None and aki.name == "aki" and aki.role == "rater" and aki.experience_years == 2
    assert service.authenticate("aki", PASSWORD + "!") is None
    assert service.authenticate("nobody", PASSWORD) is None
    assert service.gradio_auth()("director", PASSWORD) and not service.gradio_auth()("director", "nope")
    hashes = _rows(studio, "SELECT password_salt, password_hash FROM raters")
    assert len({h.password_salt for h in hashes}) == len({h.password_hash for h in hashes}) == len(hashes) == 4
    with pytest.raises(InvalidRequest, match="already exists"):
        service.create_first_admin("second_boss", PASSWORD)
    with pytest.raises(InvalidRequest, match="^name"):
        service.add_rater(studio.rater(ADMIN), "AKI", PASSWORD)  # names are unique regardless of case
    with pytest.raises(PermissionDenied, match="current_password"):
        service.set_password(aki, aki.id, "a new password", current_password="wrong one")
    service.set_password(aki, aki.id, "a new password", current_password=PASSWORD)
    assert service.authenticate("aki", PASSWORD) is None and service.authenticate("aki", "a new password")
    # A higher scrypt cost re-hashes at the next login; the old hash keeps working until then.
    stronger = studio.service(kdf_n=2**15)
    assert stronger.authenticate("ben", PASSWORD) is not None
    assert _rows(studio, "SELECT kdf_n FROM raters WHERE name = 'ben'")[0].kdf_n == 2**15
    assert stronger.authenticate("ben", PASSWORD) is not None


def test_raters_only_see_and_change_their_own_judgements(studio: Studio, tmp_path: Path) -> None:
    service = studio.service(gold_share=0, repeat_share=0)
    aki, ben, admin = studio.rater("aki"), studio.rater("ben"), studio.rater(ADMIN)
    mine = service.next_pair(aki)
    assert mine is not None
    service.submit(aki, mine.assignment_id, full_form("A"))
    theirs = mine.assignment_id
    for attempt in (lambda: service.submit(ben, theirs, full_form("B")),
                    lambda: service.save_draft(ben, theirs, full_form("B")),
                    lambda: service.skip(ben, theirs),
                    lambda: service.open_assignment(ben, theirs),
                    lambda: service.judgements(ben, aki.id)):
        with pytest.raises(PermissionDenied, match="^(assignment|judgements):"):
            attempt()
    for admin_only in (lambda r: service.export(r, "trl", tmp_path / "x.parquet"), service.stats,
                       service.leaderboard, service.list_raters, service.build_pairs, service.list_pairs,
                       lambda r: service.set_gold(r, 1, {"visual_quality": "tie"}),
                       lambda r: service.pick_pair(r, studio.clips["n1-preview"], studio.clips["n2-wan"]),
                       lambda r: service.add_rater(r, "dan", PASSWORD),
                       lambda r: service.set_password(r, aki.id, "taken over!")):
        with pytest.raises(PermissionDenied, match="only an admin"):
            admin_only(ben)
    assert not (tmp_path / "x.parquet").exists()
    # A forged record does not help: the role is read from the database.
    with pytest.raises(PermissionDenied):
        service.stats(dataclasses.replace(ben, role="admin"))
    with pytest.raises(PermissionDenied):
        service.judgements(dataclasses.replace(ben, id=aki.id))
    # Raters see their own answers without the hidden details; admins see everyone's with them.
    (own,) = service.judgements(aki)
    assert own.votes["visual_quality"].choice == "A" and own.comparison_id is None and own.is_repeat is None
    assert service.judgements(ben) == []
    (seen,) = service.judgements(admin, aki.id)
    assert seen.comparison_id is not None and seen.is_repeat is False and seen.left_generation_id is not None
    # A disabled account is refused everywhere, including sign-in.
    service.set_active(admin, ben.id, False)
    assert service.authenticate("ben", PASSWORD) is None
    with pytest.raises(PermissionDenied, match="disabled"):
        service.next_pair(ben)
    with pytest.raises(InvalidRequest, match="no active admin"):
        service.set_active(admin, admin.id, False)


# -- scheduling ---------------------------------------------------------------------------------
def test_scheduling_never_serves_a_pair_twice_except_as_a_declared_repeat(studio: Studio) -> None:
    admin = studio.rater(ADMIN)
    service = studio.service(gold_share=0.3, repeat_share=0.4, repeat_min_gap=1)
    gold_pair = service.list_pairs(admin)[0]
    service.set_gold(admin, gold_pair.id, {"visual_quality": gold_pair.generation_a_id, "artistic_motion": "tie"})
    served = _drain(service, "aki")
    assert service.next_pair(studio.rater("aki")) is None
    assert "repeat" not in " ".join(f.name for f in dataclasses.fields(ServedPair))  # nothing gives it away
    rows = _rows(studio, "SELECT comparison_id, is_repeat, repeat_of_id, left_generation_id FROM assignments "
                         "WHERE rater_id = (SELECT id FROM raters WHERE name = 'aki') ORDER BY id")
    assert len(rows) == len(served)
    first = [r.comparison_id for r in rows if not r.is_repeat]
    assert len(first) == len(set(first)) == 6  # every pair once, the gold pair included (it was drawn)
    for r in rows:
        if r.is_repeat:  # a declared repeat points at the rater's own first serving of the same pair
            original = _rows(studio, f"SELECT comparison_id, is_repeat FROM assignments WHERE id = {r.repeat_of_id}")[0]
            assert original.comparison_id == r.comparison_id and not original.is_repeat
    assert any(r.is_repeat for r in rows)
    progress = service.progress(studio.rater("aki"))
    assert progress.finished and progress.done == len(served) and str(progress) == f"{len(served)} of {len(served)}"


def test_balancing_serves_the_least_judged_pairing_first(studio: Studio) -> None:
    service = studio.service(gold_share=0, repeat_share=0)
    _drain(service, "aki")  # aki judged all six pairs once
    # Judgements per model pairing now: preview-wan 3 (three pairs), preview-animegen 1,
    # wan-animegen 1, preview-preview 1 (the picked pair). Ben's first three pairs must be the
    # three single ones (each then has 2, still not more than preview-wan's 3), preview-wan last.
    ben, admin = studio.rater("ben"), studio.rater(ADMIN)
    pairings = []
    for _ in range(6):
        pair = service.next_pair(ben)
        service.submit(ben, pair.assignment_id, full_form())
        view = service.judgements(admin, ben.id)[-1]
        gens = service.repository.generations([view.left_generation_id, view.right_generation_id])
        pairings.append(tuple(sorted(g.model for g in gens.values())))
    assert set(pairings[:3]) == {("animegen-t2v", "preview"), ("animegen-t2v", "wan2.1-t2v-1.3b"),
                                 ("preview", "preview")}
    assert pairings[3:] == [("preview", "wan2.1-t2v-1.3b")] * 3


# -- drafts, submit, edit, skip -----------------------------------------------------------------
def test_draft_resume_submit_edit_and_skip(studio: Studio) -> None:
    service = studio.service(gold_share=0, repeat_share=0)
    aki = studio.rater("aki")
    pair = service.next_pair(aki)
    assert pair is not None and pair.draft == JudgementForm() and pair.status == "pending"
    assert pair.video_a.is_file() and pair.video_b.is_file() and pair.video_a != pair.video_b
    age_serving(studio.db, pair.assignment_id, 60)  # a minute on screen: the page's figures fit in it
    mark = DeformationMark("B", 2, 4, "smear", "intentional", "hair whip")
    draft = JudgementForm({"artistic_motion": Vote("B", 3, None, 5), "visual_quality": Vote(score_a=2)}, (mark,), 5.5, 2)
    assert str(service.save_draft(aki, pair.assignment_id, draft)) == "0 of 6"
    again = service.next_pair(aki)  # the unfinished pair comes back, with its draft, in the same screen terms
    assert again.assignment_id == pair.assignment_id and again.video_a == pair.video_a
    assert again.draft.votes == draft.votes and again.draft.deformations == (mark,)
    assert (again.time_spent_s, again.replays) == (5.5, 2)
    service.save_draft(aki, pair.assignment_id, dataclasses.replace(draft, elapsed_s=4.5, replays=1))
    with pytest.raises(InvalidRequest) as exc:
        service.submit(aki, pair.assignment_id, draft)
    assert exc.value.field == "votes.prompt_understanding.choice"
    tie_with_strength = JudgementForm(dict(full_form().votes, style_fidelity=Vote("tie", 2)))
    for bad, field in ((tie_with_strength, "votes.style_fidelity.strength"),
                       (full_form("C"), "votes.prompt_understanding.choice"),
                       (full_form(score_a=6), "votes.prompt_understanding.score_a"),
                       (dataclasses.replace(full_form(), deformations=(DeformationMark("A", 3, 8, "smear", "failure"),)),
                        "deformations[0].end_frame"),
                       (dataclasses.replace(full_form(), deformations=(DeformationMark("A", 1, 2, "wobble", "failure"),)),
                        "deformations[0].kind"),
                       (dataclasses.replace(full_form(), elapsed_s=-1.0), "elapsed_s")):
        with pytest.raises(InvalidRequest) as exc:
            service.submit(aki, pair.assignment_id, bad)
        assert exc.value.field == field
    answer = dataclasses.replace(full_form("A", style_fidelity="both_bad", character_consistency="tie"),
                                 deformations=(mark,), elapsed_s=20.0)
    assert str(service.submit(aki, pair.assignment_id, answer)) == "1 of 6"
    (stored,) = _rows(studio, "SELECT time_spent_s, replays, status, draft_json FROM assignments")
    assert (stored.time_spent_s, stored.replays, stored.status, stored.draft_json) == (30.0, 4, "submitted", None)
    with pytest.raises(InvalidRequest, match="submitted"):
        service.save_draft(aki, pair.assignment_id, draft)
    with pytest.raises(InvalidRequest, match="submitted"):
        service.skip(aki, pair.assignment_id)
    # Reopening shows the answer; it is final, so submitting again is refused and nothing changes.
    reopened = service.open_assignment(aki, pair.assignment_id)
    assert reopened.status == "submitted" and reopened.draft.votes["style_fidelity"].choice == "both_bad"
    assert reopened.draft.deformations == (mark,) and reopened.draft.votes["visual_quality"].score_a == 4
    with pytest.raises(InvalidRequest, match="final"):
        service.submit(aki, pair.assignment_id, full_form("B"))
    assert _rows(studio, "SELECT count(*) AS n FROM judgements")[0].n == 5
    assert _rows(studio, "SELECT count(*) AS n FROM deformation_labels")[0].n == 1
    # Skipping: the next pair is another one and the skipped one is not served again.
    nxt = service.next_pair(aki)
    service.skip(aki, nxt.assignment_id, "clip B does not play")
    rest = _drain(service, "aki")
    assert nxt.assignment_id not in {p.assignment_id for p in rest} and len(rest) == 4


def test_choices_are_stored_as_the_winning_generation(studio: Studio) -> None:
    service = studio.service(gold_share=0, repeat_share=0)
    aki, admin = studio.rater("aki"), studio.rater(ADMIN)
    pair = service.next_pair(aki)
    service.submit(aki, pair.assignment_id, full_form("A", visual_quality="B", style_fidelity="tie", score_a=5,
                                                      score_b=1))
    (view,) = service.judgements(admin, aki.id)
    left, right = view.left_generation_id, view.right_generation_id
    rows = {r.dimension: r for r in _rows(studio, "SELECT dimension, outcome, winner_generation_id, strength "
                                                  "FROM judgements")}
    assert (rows["prompt_understanding"].outcome, rows["prompt_understanding"].winner_generation_id) == ("winner", left)
    assert rows["visual_quality"].winner_generation_id == right and rows["prompt_understanding"].strength == 2
    assert (rows["style_fidelity"].outcome, rows["style_fidelity"].winner_generation_id) == ("tie", None)
    scores = {(r.generation_id, r.score) for r in _rows(studio, "SELECT generation_id, score FROM clip_scores")}
    assert scores == {(left, 5), (right, 1)}


# -- quality and leaderboard ----------------------------------------------------------------------
def test_stats_and_leaderboard_from_real_judgements(studio: Studio) -> None:
    admin = studio.rater(ADMIN)
    service = studio.service(gold_share=0.2, repeat_share=0.3, repeat_min_gap=1, fast_median_s=10.0,
                             bootstrap_rounds=30)
    gold_pair = next(p for p in service.list_pairs(admin) if p.kind == "same_seed")
    better = max((gold_pair.generation_a_id, gold_pair.generation_b_id),
                 key=lambda g: QUALITY[service.repository.generations([g])[g].model])
    service.set_gold(admin, gold_pair.id, {d: better for d in DIMENSIONS})
    for name in RATERS:
        # The server's clock decides: chika answers at once whatever her page claims; the others
        # had each pair on screen for 25 s.
        on_screen = 0.0 if name == "chika" else 25.0

        def answer(s: RatingService, p: ServedPair, on_screen: float = on_screen) -> Any:
            if on_screen:
                age_serving(studio.db, p.assignment_id, on_screen)
            return prefer_better_model(s, p, elapsed_s=600.0)
        _drain(service, name, answer)
    report = service.stats(admin)
    by_name = {r.name: r for r in report.raters}
    assert [r.name for r in report.flagged] == ["chika"]
    for name in RATERS:
        assert by_name[name].judged >= 6
        assert by_name[name].median_time_s == pytest.approx(0.0 if name == "chika" else 25.0, abs=3.0)
        assert by_name[name].gold_accuracy in (None, 1.0) and by_name[name].self_consistency in (None, 1.0)
    assert any(by_name[n].gold_votes for n in RATERS) and any(by_name[n].repeat_votes for n in RATERS)
    for dim in report.dimensions:  # everyone answers by the same rule: full agreement
        assert dim.items == 6 and dim.krippendorff_alpha == pytest.approx(1.0)
        assert dim.fleiss_kappa == pytest.approx(1.0) and all(c.kappa == pytest.approx(1.0) for c in dim.cohen)
    board = service.leaderboard(admin)
    for table in board.dimensions:
        assert [e.group for e in table.entries] == ["animegen-t2v", "wan2.1-t2v-1.3b", "preview"]
        assert all(e.ci_low <= e.score <= e.ci_high for e in table.entries)
    assert service.leaderboard(admin) == board  # seeded
    by_checkpoint = service.leaderboard(admin, group_key="variant", rounds=0)
    assert len(by_checkpoint.dimensions[0].entries) == 3 and by_checkpoint.rounds == 0


# -- exports ------------------------------------------------------------------------------------
def _load(kind: str, path: Path, cache: Path) -> list[dict[str, Any]]:
    from datasets import load_dataset

    builder = {".parquet": "parquet", ".jsonl": "json", ".csv": "csv"}[path.suffix]
    return list(load_dataset(builder, data_files=str(path), split="train", cache_dir=str(cache)))


def test_exports_load_back_and_match_the_database(studio: Studio, tmp_path: Path) -> None:
    admin = studio.rater(ADMIN)
    service = studio.service(gold_share=0.0, repeat_share=0.5, repeat_min_gap=0)
    gold_pair = service.list_pairs(admin)[1]
    service.set_gold(admin, gold_pair.id, {"visual_quality": "both_bad"})
    mark = DeformationMark("A", 1, 6, "face_melt", "failure", "eyes slide")

    def answer(s: RatingService, p: ServedPair) -> JudgementForm:
        form = prefer_better_model(s, p)
        votes = dict(form.votes, style_fidelity=Vote("both_bad"), character_consistency=Vote("tie"))
        return dataclasses.replace(form, votes=votes, deformations=(mark,))

    for name in RATERS[:2]:
        _drain(service, name, answer)
    repo = service.repository
    votes = [v for v in repo.votes() if not v.is_repeat and not v.is_gold_pair]
    gens = repo.generations({g for v in votes for g in (v.generation_a_id, v.generation_b_id)})
    same = [v for v in votes if gens[v.generation_a_id].narrative == gens[v.generation_b_id].narrative]
    assert len(same) < len(votes)  # the picked pair (two prompts) is in the data but not exported
    cache = tmp_path / "hf-cache"

    trl = service.export(admin, "trl", tmp_path / "prefs.parquet")
    rows = _load("trl", trl.path, cache)
    winners = [v for v in same if v.outcome == "winner"]
    assert trl.rows == len(rows) == len(winners) > 0
    for row, v in zip(rows, winners):
        assert row["chosen_generation_id"] == v.winner_generation_id and row["judgement_id"] == v.judgement_id
        assert row["chosen"] == gens[v.winner_generation_id].video_path  # relative to the media folder
        assert row["prompt"] == gens[v.winner_generation_id].narrative and row["dimension"] == v.dimension
        assert row["rejected_generation_id"] in (v.generation_a_id, v.generation_b_id)
        assert row["rejected_generation_id"] != row["chosen_generation_id"]
    assert {r["dimension"] for r in rows} <= {"prompt_understanding", "artistic_motion", "visual_quality"}

    pick = service.export(admin, "pickapic", tmp_path / "pickapic.jsonl")
    rows = _load("pickapic", pick.path, cache)
    kept = [v for v in same if v.outcome != "both_bad"]
    assert len(rows) == len(kept) and any(r["label_0"] == 0.5 == r["label_1"] for r in rows)
    for row, v in zip(rows, kept):
        assert (int(row["video_0_uid"]), int(row["video_1_uid"])) == (v.generation_a_id, v.generation_b_id)
        expected = (0.5, 0.5) if v.outcome == "tie" else (1.0, 0.0) if v.winner_generation_id == v.generation_a_id \
            else (0.0, 1.0)
        assert (row["label_0"], row["label_1"]) == expected and row["ranking_id"] == v.judgement_id
    assert len(_load("pickapic", service.export(admin, "pickapic", tmp_path / "pickapic.parquet").path, cache)) == len(rows)

    align = service.export(admin, "videoalign", tmp_path / "videoalign.csv")
    rows = _load("videoalign", align.path, cache)
    with open(align.path, newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:10] == ["path_A", "path_B", "prompt", "VQ", "MQ", "TA", "fps_A", "num_frames_A", "fps_B",
                           "num_frames_B"]
    assert len(rows) == len({v.assignment_id for v in same})
    for row in rows:
        assert row["VQ"] == row["visual_quality"] and row["MQ"] == row["artistic_motion"]
        assert row["style_fidelity"] == row["character_consistency"] == "same" and row["VQ"] in ("A", "B")
        better_a = QUALITY[gens[row["generation_A"]].model] > QUALITY[gens[row["generation_B"]].model]
        assert row["TA"] == ("A" if better_a else "B") and (studio.settings.media_dir / row["path_A"]).is_file()

    labels = service.export(admin, "deformations", tmp_path / "deformations.jsonl")
    rows = _load("deformations", labels.path, cache)
    first_servings = _rows(studio, "SELECT count(*) AS n FROM assignments WHERE is_repeat = 0 AND status = 'submitted'")
    assert len(rows) == first_servings[0].n == labels.rows
    for row in rows:
        assert (row["kind"], row["intent"], row["start_frame"], row["end_frame"]) == ("face_melt", "failure", 1, 6)
        assert row["note"] == "eyes slide" and row["fps"] == 8 and (studio.settings.media_dir / row["video"]).is_file()
        if row["source_fps"] == 12.0:  # the 12 fps clip: playback frame 6 is t = 0.75 s -> source frame 9
            assert (row["source_start_frame"], row["source_end_frame"]) == (1, 9)
        else:
            assert (row["source_start_frame"], row["source_end_frame"]) == (1, 6)
    json.loads(labels.path.read_text().splitlines()[0])
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "deformations.jsonl", "pickapic.jsonl", "pickapic.parquet", "prefs.parquet", "videoalign.csv"]  # no temp files


def test_bad_export_requests_name_the_field(studio: Studio, tmp_path: Path) -> None:
    service, admin = studio.service(), studio.rater(ADMIN)
    # A missing folder is created (`rating export --out new/dir/x.csv`), so it is not a bad request.
    for kind, out, field in (("trl", tmp_path / "x.csv", "out"), ("dpo", tmp_path / "x.parquet", "as"),
                             ("videoalign", tmp_path, "out")):
        with pytest.raises(InvalidRequest) as exc:
            service.export(admin, kind, out)
        assert exc.value.field == field
    assert N1 != N3  # the template's prompts differ (picked pair)


def test_reward_uncertainty_decides_which_pair_of_a_pairing_comes_first(studio: Studio) -> None:
    """With `prefer_uncertain`, the pair the reward model is least sure about is served first."""
    from engine.storage.repository import RewardRepository, RewardScoreInput

    c = studio.clips
    confident = {d: 0.0 for d in DIMENSIONS}
    strong = {d: 6.0 for d in DIMENSIONS}
    scores = {cid: confident for cid in c.values()}
    scores[c["n2-wan"]] = strong  # every pair with n2-wan is near-certain ...
    scores[c["n2-preview-again"]] = strong  # ... except n2-preview-again vs n2-wan: equal scores
    RewardRepository(studio.db).upsert("rm-test", [
        RewardScoreInput(gid, reward=0.0, p_failure=0.0, p_intentional=0.0, details={"dimensions": dims})
        for gid, dims in scores.items()])
    pair_ids = {frozenset((r.generation_a_id, r.generation_b_id)): r.id
                for r in studio.service().list_pairs(studio.rater(ADMIN))}
    uncertain = pair_ids[frozenset((c["n2-preview-again"], c["n2-wan"]))]
    certain = pair_ids[frozenset((c["n2-preview"], c["n2-wan"]))]

    service = studio.service(prefer_uncertain="rm-test", gold_share=0.0, repeat_share=0.0)
    rater = studio.rater(RATERS[0])
    order = []
    while (served := service.next_pair(rater)) is not None:
        order += [r.comparison_id for r in _rows(studio, f"SELECT comparison_id FROM assignments "
                                                          f"WHERE id = {served.assignment_id}")]
        service.submit(rater, served.assignment_id, full_form())
    assert order.index(uncertain) < order.index(certain)
