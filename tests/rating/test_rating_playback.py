"""Blind playback by construction: each serving's own copies, no metadata, random names, swept
when finished; migration 0006 over servings made before it (issue 18, finding 1)."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import av
import numpy as np
import pytest
from alembic import command

from engine.core.export import read_frames
from engine.rating.playback import SERVED_DIR, ServedCopies
from engine.storage.db import alembic_config, open_database

from support.rating import ADMIN, MODELS, N1, RATERS, Studio, full_form

# What an mp4 may say about itself: the container brand and the track's generic handler and language.
STRUCTURAL_TAGS = {"major_brand", "minor_version", "compatible_brands", "handler_name", "language"}


def file_tags(path: Path) -> dict[str, str]:
    """Every tag PyAV (FFmpeg's demuxer, what ffprobe prints) reads from the file and its streams."""
    with av.open(str(path)) as container:
        tags = dict(container.metadata)
        for stream in container.streams:
            tags.update({f"stream.{k}": v for k, v in stream.metadata.items()})
    return tags


def assert_bare(path: Path, *secrets: str) -> None:
    tags = file_tags(path)
    assert {k.removeprefix("stream.") for k in tags} <= STRUCTURAL_TAGS, tags
    assert tags.get("stream.handler_name", "VideoHandler") == "VideoHandler"
    raw = path.read_bytes()
    for text in ("x264", "Lavf", "Lavc", "animatrix", "request", *secrets):
        assert text.encode() not in raw, f"{path.name} contains {text!r}"


def _all_served(studio: Studio) -> list[tuple[int, int, str]]:
    raw = sqlite3.connect(studio.settings.database)
    try:
        return list(raw.execute("SELECT assignment_id, generation_id, path FROM served_clips"))
    finally:
        raw.close()


def test_each_serving_gets_its_own_bare_copies(studio: Studio) -> None:
    service = studio.service(gold_share=0, repeat_share=0)
    media = studio.settings.media_dir
    originals = {p.read_bytes() for p in media.rglob("*.mp4") if "rating" not in p.relative_to(media).parts}
    seen: dict[tuple[str, int], Path] = {}  # (rater, generation) -> copy
    for name in RATERS[:2]:
        rater = studio.rater(name)
        for _ in range(3):
            pair = service.next_pair(rater)
            assert pair is not None
            view = next(v for v in service.judgements(studio.rater(ADMIN), rater.id)
                        if v.assignment_id == pair.assignment_id)
            for gid, path in ((view.left_generation_id, pair.video_a), (view.right_generation_id, pair.video_b)):
                assert path.is_relative_to(media / SERVED_DIR) and path.is_file()
                assert len(path.stem) >= 32 and path.read_bytes() not in originals
                assert_bare(path, N1, *MODELS)
                key = (name, gid)
                assert key not in seen or seen[key] != path, "a clip kept its file across pairs"
                seen[key] = path
            assert len(read_frames(pair.video_a)) == pair.num_frames == len(read_frames(pair.video_b))
            assert service.next_pair(rater).video_a == pair.video_a  # the same serving keeps its copies
            service.submit(rater, pair.assignment_id, full_form())
    rows = _all_served(studio)
    assert len({r[2] for r in rows}) == len(rows) == 12  # 2 raters x 3 pairs x 2 clips, no name twice
    names = [Path(r[2]).stem for r in rows]
    assert not any(str(gid) == n or n.startswith(f"{gid}-") for gid in studio.clips.values() for n in names)


def test_a_serving_from_before_0006_gets_copies_and_finished_ones_are_swept(studio: Studio) -> None:
    service = studio.service(gold_share=0, repeat_share=0)
    aki = studio.rater("aki")
    pair = service.next_pair(aki)
    raw = sqlite3.connect(studio.settings.database)
    raw.execute("DELETE FROM served_clips")  # as a serving made before this revision: no copies
    raw.commit()
    raw.close()
    again = service.open_assignment(aki, pair.assignment_id)
    assert again.video_a.is_file() and again.video_a != pair.video_a
    service.submit(aki, pair.assignment_id, full_form())
    copies = ServedCopies(service.repository, studio.settings.media_dir, keep_s=0.0)
    stray = studio.settings.media_dir / SERVED_DIR / "stray.mp4"
    stray.write_bytes(b"left by a crash")
    # The finished serving's two copies, the two its row no longer names, and the stray file.
    assert copies.sweep(every_s=0.0) == 5
    assert not again.video_a.exists() and not pair.video_a.exists() and not stray.exists()
    reopened = service.open_assignment(aki, pair.assignment_id)  # editing later: new copies
    assert reopened.video_a.is_file() and reopened.video_a != again.video_a


def test_migration_0006_keeps_old_servings_and_times_them_from_their_timestamps(studio: Studio) -> None:
    service = studio.service(gold_share=0, repeat_share=0)
    aki = studio.rater("aki")
    done = service.next_pair(aki)
    service.submit(aki, done.assignment_id, full_form())
    pending = service.next_pair(aki)
    studio.db.dispose()
    url = f"sqlite:///{studio.settings.database}"
    command.downgrade(alembic_config(url), "0005")
    raw = sqlite3.connect(studio.settings.database)
    served = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=5)
    raw.execute("UPDATE assignments SET served_at = ?, submitted_at = ? WHERE id = ?",
                (served.isoformat(" "), (served + timedelta(seconds=42)).isoformat(" "), done.assignment_id))
    raw.commit()
    raw.close()
    db = open_database(studio.settings.database)  # start-up migrates to the head revision
    try:
        raw = sqlite3.connect(studio.settings.database)
        times = dict(raw.execute("SELECT id, server_time_s FROM assignments"))
        raw.close()
        assert times[done.assignment_id] == pytest.approx(42.0, abs=0.01) and times[pending.assignment_id] == 0.0
        studio.db = db
        service = studio.service()
        resumed = service.next_pair(aki)  # the pending serving carries on, with fresh copies
        assert resumed.assignment_id == pending.assignment_id and resumed.video_a.is_file()
        assert np.array_equal(read_frames(resumed.video_a).shape, read_frames(pending.video_a).shape)
    finally:
        db.dispose()
