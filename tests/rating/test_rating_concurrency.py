"""Several rater processes voting at once (multiprocessing, spawn) lose no judgement and never
get a pair twice; two processes signed in as the same rater share one queue."""
from __future__ import annotations

import multiprocessing as mp
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from engine.core.errors import InvalidRequest
from engine.rating.service import RatingService
from engine.rating.types import RatingConfig
from engine.storage.db import open_database
from support.rating import ADMIN, PASSWORD, Studio, add_pair_groups, full_form



def _open(target: str) -> Any:
    return open_database(target if target.startswith("postgresql") else Path(target))


def _vote_until_done(db_path: str, media_dir: str, name: str, seed: int, barrier: Any, results: Any) -> None:
    db = _open(db_path)
    try:
        config = RatingConfig(gold_share=0.2, repeat_share=0.3, repeat_min_gap=1)
        service = RatingService(db, Path(media_dir), config, rng=random.Random(seed))
        rater = service.authenticate(name, PASSWORD)
        assert rater is not None
        barrier.wait(timeout=120)
        submitted = []
        while (pair := service.next_pair(rater)) is not None:
            choice = "AB"[(pair.assignment_id + seed) % 2]
            try:
                service.submit(rater, pair.assignment_id, full_form(choice, elapsed_s=1.0 + seed))
            except InvalidRequest as exc:  # the same rater's other tab submitted it first: final, so refused
                assert "already submitted" in exc.reason, exc
                continue
            submitted.append(pair.assignment_id)
        results.put((name, submitted))
    finally:
        db.dispose()


def _vote_n(db_path: str, media_dir: str, name: str, seed: int, servings: int, barrier: Any, results: Any) -> None:
    db = _open(db_path)
    try:
        service = RatingService(db, Path(media_dir), RatingConfig(repeat_share=0.2, repeat_min_gap=2),
                                rng=random.Random(seed))
        rater = service.authenticate(name, PASSWORD)
        assert rater is not None
        barrier.wait(timeout=120)
        submitted = []
        while len(submitted) < servings and (pair := service.next_pair(rater)) is not None:
            service.submit(rater, pair.assignment_id, full_form("AB"[(pair.assignment_id + seed) % 2]))
            submitted.append(pair.assignment_id)
        results.put((name, submitted))
    finally:
        db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_studio(request: pytest.FixtureRequest) -> Studio:
    """The rating studio on a SQLite file, and on a PostgreSQL server (skipped without one)."""
    return request.getfixturevalue("postgres_studio" if request.param == "postgresql" else "studio")


def test_concurrent_raters_lose_no_judgement(any_studio: Studio) -> None:
    studio = any_studio
    admin = studio.service().rater_by_name("director")
    first = studio.service().list_pairs(admin)[0]
    studio.service().set_gold(admin, first.id, {"visual_quality": first.generation_a_id})
    studio.db.dispose()
    workers = ["aki", "aki", "ben"]  # aki signed in twice (say, two tabs served by two studio processes)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(len(workers)), ctx.Queue()
    procs = [ctx.Process(target=_vote_until_done, args=(str(studio.settings.database_target), str(studio.settings.media_dir),
                                                        name, n, barrier, results))
             for n, name in enumerate(workers)]
    for p in procs:
        p.start()
    reported = [results.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * len(workers)

    db = _open(str(studio.settings.database_target))
    try:
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT a.id, r.name, a.comparison_id, a.is_repeat, a.status, "
                                     "(SELECT count(*) FROM judgements j WHERE j.assignment_id = a.id) AS n "
                                     "FROM assignments a JOIN raters r ON r.id = a.rater_id")).all()
            total = conn.execute(text("SELECT count(*) FROM judgements")).scalar()
    finally:
        db.dispose()
    assert rows and all(r.status == "submitted" and r.n == 5 for r in rows)  # every serving complete
    assert total == 5 * len(rows)
    for name in ("aki", "ben"):
        firsts = Counter(r.comparison_id for r in rows if r.name == name and not r.is_repeat)
        assert len(firsts) == 6 and set(firsts.values()) == {1}  # each pair once, plus declared repeats only
    every_reported = {aid for _, ids in reported for aid in ids}
    assert every_reported == {r.id for r in rows}  # nothing reported as submitted is missing


def test_eight_raters_fifty_judgements_each_lose_nothing(any_studio: Studio) -> None:
    """Eight rater processes at once, each giving 50 judgements (10 pairs × 5 dimensions): every
    one is stored once, none is lost, and no rater is served a pair twice except a declared repeat."""
    studio = any_studio
    assert add_pair_groups(studio, 4) >= 12
    service = studio.service()
    admin = service.rater_by_name(ADMIN)
    names = [f"rater{n}" for n in range(8)]
    for name in names:
        service.add_rater(admin, name, PASSWORD)
    studio.db.dispose()
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(len(names)), ctx.Queue()
    target, media = str(studio.settings.database_target), str(studio.settings.media_dir)
    procs = [ctx.Process(target=_vote_n, args=(target, media, name, n, 10, barrier, results))
             for n, name in enumerate(names)]
    for p in procs:
        p.start()
    reported = dict(results.get(timeout=600) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * len(names)
    assert all(len(ids) == 10 for ids in reported.values())  # each rater got its 10 pairs

    db = _open(target)
    try:
        with db.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT a.id, r.name, a.comparison_id, a.is_repeat, a.status, "
                "(SELECT count(*) FROM judgements j WHERE j.assignment_id = a.id) AS n "
                "FROM assignments a JOIN raters r ON r.id = a.rater_id WHERE r.name LIKE 'rater%'")).all()
            total = conn.execute(text("SELECT count(*) FROM judgements j JOIN assignments a ON a.id = j.assignment_id "
                                      "JOIN raters r ON r.id = a.rater_id WHERE r.name LIKE 'rater%'")).scalar()
            twice = conn.execute(text("SELECT count(*) FROM (SELECT assignment_id, dimension FROM judgements "
                                      "GROUP BY assignment_id, dimension HAVING count(*) > 1) d")).scalar()
    finally:
        db.dispose()
    assert total == 8 * 50 and twice == 0  # 0 lost, 0 duplicated
    submitted = [r for r in rows if r.status == "submitted"]
    assert len(submitted) == 80 and all(r.n == 5 for r in submitted)
    assert {r.id for r in submitted} == {aid for ids in reported.values() for aid in ids}
    for name in names:
        firsts = Counter(r.comparison_id for r in rows if r.name == name and not r.is_repeat)
        assert set(firsts.values()) == {1}, name  # a pair twice only as a declared repeat
