"""Migration 0002 and the rating tables: upgrade over existing 0001 data, ORM = schema, constraints."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from engine.core.export import write_mp4
from engine.rating.service import RatingService
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.storage.db import Database, alembic_config, current_revision, head_revision, open_database
from engine.storage.clips import HistoryService, MediaFiles
from engine.storage.models import Base

RATING_TABLES = {"raters", "playback_clips", "comparisons", "gold_answers", "assignments", "judgements",
                 "clip_scores", "deformation_labels"}


def _tables(path: Path) -> set[str]:
    raw = sqlite3.connect(path)
    try:
        return {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        raw.close()


def _writer(model_shade: int) -> object:
    def write(folder: Path) -> MediaFiles:
        frames = np.full((6, 16, 16, 3), 40 * model_shade, dtype=np.uint8)
        return MediaFiles(video=write_mp4(frames, 6, folder / "clip.mp4"))
    return write


def test_migration_upgrades_a_database_holding_0001_data(settings: Settings) -> None:
    url = f"sqlite:///{settings.database}"
    # Clips written by today's code, then the schema taken back to 0001 (a studio from before rating
    # existed): what remains is exactly a 0001 database holding history rows.
    command.upgrade(alembic_config(url), "head")
    old = Database(settings.database, create_engine(url), 30.0)
    history = HistoryService(old, settings.media_dir)
    ids = [history.record_finished(GenerationRequest(narrative="old clip", model=m, seed=3, num_frames=6, fps=6,
                                                     width=16, height=16), None, _writer(n)).id
           for n, m in enumerate(("preview", "wan2.1-t2v-1.3b"))]
    old.dispose()
    command.downgrade(alembic_config(url), "0001")
    assert "raters" not in _tables(settings.database)

    db = open_database(settings.database)  # start-up migrates to the head revision
    try:
        assert current_revision(db) == head_revision() is not None
        assert RATING_TABLES <= _tables(settings.database)
        history = HistoryService(db, settings.media_dir)
        assert [history.get(i).model for i in ids] == ["preview", "wan2.1-t2v-1.3b"]
        # The old clips can be rated right away.
        service = RatingService(db, settings.media_dir)
        admin = service.create_first_admin("director", "a long password")
        report = service.build_pairs(admin)
        assert len(report.created) == 1 and report.skipped == ()
    finally:
        db.dispose()
    command.downgrade(alembic_config(url), "0001")  # and back: history rows survive
    assert not RATING_TABLES & _tables(settings.database)
    raw = sqlite3.connect(settings.database)
    try:
        assert raw.execute("SELECT count(*) FROM generations").fetchone()[0] == 2
    finally:
        raw.close()


def test_models_match_the_migrated_schema(settings: Settings) -> None:
    db = open_database(settings.database)
    try:
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
            insp = inspect(conn)
            for table in Base.metadata.sorted_tables:
                reflected = {c["name"]: c["nullable"] for c in insp.get_columns(table.name)}
                assert reflected == {c.name: c.nullable for c in table.columns}, table.name
                assert {u["name"] for u in insp.get_unique_constraints(table.name)} == {
                    c.name for c in table.constraints if c.__class__.__name__ == "UniqueConstraint"}, table.name
    finally:
        db.dispose()


def test_repository_package_keeps_the_old_imports() -> None:
    from engine.storage import GenerationRecord, HistoryPage, HistoryRepository
    from engine.storage.repository import GenerationRecord as G2, HistoryPage as P2, HistoryRepository as R2
    from engine.storage.repository import MAX_PAGE_SIZE, RatingRepository

    assert (GenerationRecord, HistoryPage, HistoryRepository) == (G2, P2, R2)
    assert MAX_PAGE_SIZE == 500 and RatingRepository.__module__ == "engine.storage.repository.rating"


@pytest.fixture
def seeded(settings: Settings) -> sqlite3.Connection:
    """A migrated database with two done clips, two raters, one pair and one serving (raw rows)."""
    open_database(settings.database).dispose()
    raw = sqlite3.connect(settings.database, isolation_level=None)
    raw.execute("PRAGMA foreign_keys = ON")
    for gid in (1, 2):
        raw.execute("INSERT INTO generations (id, created_at, status, model, narrative, tags_json, request_json, "
                    "timings_json, engine_version, source, video_path) VALUES (?, '2025-01-01', 'done', 'm', 'n', "
                    "'{}', '{}', '{}', '0', 'cli', ?)", (gid, f"{gid}.mp4"))
    for rid, name in ((1, "aki"), (2, "ben")):
        raw.execute("INSERT INTO raters (id, name, role, experience, kdf, kdf_n, kdf_r, kdf_p, password_salt, "
                    "password_hash, active, created_at) VALUES (?, ?, 'rater', '', 'scrypt', 1024, 8, 1, x'00', "
                    "x'00', 1, '2025-01-01')", (rid, name))
    for pid, gid in ((1, 1), (2, 2)):
        raw.execute("INSERT INTO playback_clips (id, generation_id, path, fps, num_frames, width, height, source_fps, "
                    "source_frames, created_at) VALUES (?, ?, ?, 8, 8, 32, 32, 8.0, 8, '2025-01-01')",
                    (pid, gid, f"rating/{pid}.mp4"))
    raw.execute("INSERT INTO comparisons (id, generation_a_id, generation_b_id, playback_a_id, playback_b_id, kind, "
                "created_at) VALUES (1, 1, 2, 1, 2, 'same_seed', '2025-01-01')")
    raw.execute("INSERT INTO assignments (id, comparison_id, rater_id, left_generation_id, is_repeat, status, "
                "served_at, updated_at, time_spent_s, replays) VALUES (1, 1, 1, 2, 0, 'submitted', '2025-01-01', "
                "'2025-01-01', 12.5, 1)")
    yield raw
    raw.close()


_JUDGEMENT = ("INSERT INTO judgements (assignment_id, comparison_id, rater_id, is_repeat, dimension, outcome, "
              "winner_generation_id, strength, created_at) VALUES (1, 1, ?, ?, ?, ?, ?, ?, '2025-01-01')")


def test_one_judgement_per_comparison_rater_and_dimension(seeded: sqlite3.Connection) -> None:
    seeded.execute(_JUDGEMENT, (1, 0, "visual_quality", "winner", 2, 3))
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        seeded.execute(_JUDGEMENT, (1, 0, "visual_quality", "tie", None, None))
    seeded.execute(_JUDGEMENT, (1, 1, "visual_quality", "tie", None, None))  # the one declared repeat
    seeded.execute(_JUDGEMENT, (2, 0, "visual_quality", "tie", None, None))  # another rater
    seeded.execute(_JUDGEMENT, (1, 0, "style_fidelity", "both_bad", None, None))  # another dimension


@pytest.mark.parametrize("row", [
    (1, 0, "visual_quality", "winner", None, None),  # a winner without a generation
    (1, 0, "visual_quality", "tie", 1, None),  # a tie with a winner
    (1, 0, "visual_quality", "tie", None, 2),  # strength only goes with a winner
    (1, 0, "visual_quality", "winner", 1, 4),  # strength is 1..3
    (1, 0, "motion", "tie", None, None),  # not a dimension
    (1, 0, "visual_quality", "winner", 99, None),  # no such generation (foreign key)
])
def test_judgement_checks(seeded: sqlite3.Connection, row: tuple) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        seeded.execute(_JUDGEMENT, row)


def test_pair_and_serving_constraints(seeded: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="ordered"):  # pairs are stored a < b
        seeded.execute("INSERT INTO comparisons (generation_a_id, generation_b_id, playback_a_id, playback_b_id, "
                       "kind, created_at) VALUES (2, 1, 2, 1, 'picked', '2025-01-01')")
    serve = ("INSERT INTO assignments (comparison_id, rater_id, left_generation_id, is_repeat, repeat_of_id, status, "
             "served_at, updated_at, time_spent_s, replays) VALUES (1, 1, 1, ?, ?, 'pending', '2025-01-01', "
             "'2025-01-01', 0, 0)")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):  # the same pair twice to one rater
        seeded.execute(serve, (0, None))
    with pytest.raises(sqlite3.IntegrityError, match="repeat_has_original"):
        seeded.execute(serve, (1, None))
    seeded.execute(serve, (1, 1))  # a declared repeat of serving 1 is fine, once
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        seeded.execute(serve, (1, 1))
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):  # rated clips cannot vanish
        seeded.execute("DELETE FROM generations WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError, match="frame_range"):
        seeded.execute("INSERT INTO deformation_labels (assignment_id, generation_id, kind, intent, start_frame, "
                       "end_frame, created_at) VALUES (1, 1, 'smear', 'intentional', 5, 4, '2025-01-01')")


def test_sqlalchemy_sees_the_same_constraints(seeded: sqlite3.Connection, settings: Settings) -> None:
    seeded.execute(_JUDGEMENT, (1, 0, "visual_quality", "winner", 2, 3))
    db = open_database(settings.database)
    try:
        with pytest.raises(IntegrityError, match="ck_clip_scores_score"):
            with db.engine.begin() as conn:
                conn.execute(text("INSERT INTO clip_scores (judgement_id, generation_id, score) VALUES (1, 1, 6)"))
    finally:
        db.dispose()
