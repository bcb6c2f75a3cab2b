"""Shared set-up of the rating tests (no tests here): a studio with real clips, pairs and raters.

Tiny clips are written with numpy + `engine.core.export.write_mp4` and recorded through the real
`HistoryService`; the pairs are built by the real service (which re-encodes the playback
files). That costs a few seconds, so it is done once per session into a template folder and
each test gets its own copy of it (database file and media folder together).
"""
from __future__ import annotations

import random
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from engine.core.export import write_mp4
from engine.rating.service import RatingService
from engine.rating.types import DIMENSIONS, JudgementForm, PairBuildReport, RatingConfig, Vote
from engine.reward.queue import uncertainty_priority
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.storage.db import Database, open_database
from engine.storage.clips import HistoryService, MediaFiles
from engine.storage.repository import Rater, RewardRepository

ADMIN, RATERS = "director", ("aki", "ben", "chika")
PASSWORD = "correct horse battery"
TAGS = {"camera.movement": "pan", "style.school": "cel_90s"}
N1, N2, N3 = "a girl spins and her skirt flares", "a cat leaps between rooftops", "an explosion, impact frames"
MODELS = ("preview", "wan2.1-t2v-1.3b", "animegen-t2v")
QUALITY = {"preview": 0, "wan2.1-t2v-1.3b": 1, "animegen-t2v": 2}  # the order the fake raters prefer


@dataclass(frozen=True)
class Template:
    data_dir: Path
    clips: dict[str, int]  # name -> history id
    report: PairBuildReport
    picked_pair: int


def _clip(request: GenerationRequest, shade: int) -> Any:
    def write(folder: Path) -> MediaFiles:
        rng = np.random.default_rng(shade)
        frames = rng.integers(0, 60, (request.num_frames, request.height, request.width, 3), dtype=np.uint8)
        frames[..., shade % 3] += np.uint8(120)  # a clip's own colour, so files differ visibly
        path = write_mp4(frames, request.fps, folder / "clip.mp4", {"request": request.to_dict()})
        return MediaFiles(video=path)
    return write


def _request(narrative: str, model: str, *, seed: int = 7, fps: int = 8, frames: int = 8, width: int = 32,
             steps: int = 4) -> GenerationRequest:
    return GenerationRequest(narrative=narrative, model=model, tags=TAGS, seed=seed, width=width, height=32,
                             num_frames=frames, fps=fps, steps=steps)


def make_settings(data_dir: Path) -> Settings:
    s = Settings(data_dir=data_dir, default_model="preview", device="cpu")
    s.ensure_dirs()
    return s


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    settings = make_settings(tmp_path_factory.mktemp("rating-template") / "data")
    return build_template(settings)


def build_template(settings: Settings) -> Template:
    """The rating data set (clips, raters, pairs) in `settings`' database and media folder."""
    db = open_database(settings.database_target)
    history = HistoryService(db, settings.media_dir)
    clips: dict[str, int] = {}
    # N1: three models; animegen's clip is 12 fps, 12 frames, 48 px wide (playback must even it out).
    for n, model in enumerate(MODELS):
        extra = dict(fps=12, frames=12, width=48) if model == "animegen-t2v" else {}
        rec = history.record_finished(_request(N1, model, **extra), None, _clip(_request(N1, model, **extra), n))
        clips[f"n1-{model}"] = rec.id
    # N2: the same preview request twice (never paired together) and one wan clip.
    for name, model, shade in (("n2-preview", "preview", 3), ("n2-preview-again", "preview", 4),
                               ("n2-wan", "wan2.1-t2v-1.3b", 5)):
        clips[name] = history.record_finished(_request(N2, model), None, _clip(_request(N2, model), shade)).id
    clips["n3-preview"] = history.record_finished(_request(N3, "preview", seed=9), None,
                                                  _clip(_request(N3, "preview", seed=9), 6)).id
    service = RatingService(db, settings.media_dir)
    admin = service.create_first_admin(ADMIN, PASSWORD, experience="animation director", experience_years=15)
    for n, name in enumerate(RATERS):
        service.add_rater(admin, name, PASSWORD, experience="key animator", experience_years=n + 2)
    report = service.build_pairs(admin)
    picked = service.pick_pair(admin, clips["n1-preview"], clips["n3-preview"]).id
    db.dispose()
    return Template(settings.data_dir, clips, report, picked)


@dataclass
class Studio:
    settings: Settings
    db: Database
    clips: dict[str, int]
    picked_pair: int

    def service(self, **config: Any) -> RatingService:
        return RatingService(self.db, self.settings.media_dir, RatingConfig(**config), rng=random.Random(1234),
                             priority_of=lambda key: uncertainty_priority(RewardRepository(self.db), key))

    def rater(self, name: str) -> Rater:
        return self.service().rater_by_name(name)


@pytest.fixture
def studio(template: Template, tmp_path: Path) -> Iterator[Studio]:
    data_dir = tmp_path / "data"
    shutil.copytree(template.data_dir, data_dir)
    settings = make_settings(data_dir)
    db = open_database(settings.database)
    yield Studio(settings, db, dict(template.clips), template.picked_pair)
    db.dispose()


@pytest.fixture
def postgres_studio(postgres_url: str, tmp_path: Path) -> Iterator[Studio]:
    """The same rating data set, built afresh on a PostgreSQL database (skipped without a server)."""
    from dataclasses import replace

    settings = replace(make_settings(tmp_path / "data"), database_url=postgres_url)
    built = build_template(settings)
    db = open_database(settings.database_target)
    yield Studio(settings, db, dict(built.clips), built.picked_pair)
    db.dispose()


def full_form(choice: str = "A", *, strength: int | None = 2, score_a: int | None = 4, score_b: int | None = 2,
              elapsed_s: float = 30.0, replays: int = 1, **per_dimension: str) -> JudgementForm:
    """A complete answer: `choice` on every dimension unless given per dimension."""
    votes = {}
    for dim in DIMENSIONS:
        c = per_dimension.get(dim, choice)
        votes[dim] = Vote(c, strength if c in ("A", "B") else None, score_a, score_b)
    return JudgementForm(votes, (), elapsed_s, replays)


def prefer_better_model(service: RatingService, pair: Any, *, elapsed_s: float = 30.0) -> JudgementForm:
    """What a consistent rater answers: the clip from the better model wins, equal models tie."""
    admin = service.rater_by_name(ADMIN)
    view = next(v for v in service.judgements(admin, service.repository.get_assignment(pair.assignment_id).rater_id)
                if v.assignment_id == pair.assignment_id)
    gens = service.repository.generations([view.left_generation_id, view.right_generation_id])
    left, right = QUALITY[gens[view.left_generation_id].model], QUALITY[gens[view.right_generation_id].model]
    choice = "A" if left > right else "B" if right > left else "tie"
    return full_form(choice, elapsed_s=elapsed_s)


def age_serving(db: Database, assignment_id: int, seconds: float) -> None:
    """Move a serving's `served_at` back by `seconds`, as if it had been on screen that long: the
    server measures time from serving, and a test should not sleep for it."""
    from datetime import timedelta

    from sqlalchemy import update

    from engine.storage.models import Assignment

    with db.engine.begin() as conn:
        served = conn.execute(Assignment.__table__.select().where(Assignment.id == assignment_id)).one().served_at
        conn.execute(update(Assignment).where(Assignment.id == assignment_id)
                     .values(served_at=served - timedelta(seconds=seconds)))


# -- a served studio with `--auth raters` (security and browser tests) -----------------------------
@dataclass
class RaterServer:
    """A studio launched as `python app.py --auth raters` would be, with real clips (each mp4
    carrying its request, as generated clips do), pairs, an admin and two raters."""

    services: Any
    url: str
    clips: dict[str, int]  # "<narrative key>-<model>" -> history id
    app: Any = None  # the launched StudioApp (its FastAPI app: app.blocks.server_app)

    @property
    def service(self) -> RatingService:
        return self.services.rating  # type: ignore[no-any-return]

    def record(self, key: str, narrative: str, model: str, frames: int, shade: int) -> int:
        request = GenerationRequest(narrative=narrative, model=model, tags=TAGS, seed=11, width=48, height=32,
                                    num_frames=frames, fps=8, steps=4)
        rec = self.services.studio.history.record_finished(request, None, _ball_clip(request, shade))
        self.clips[f"{key}-{model}"] = rec.id
        return int(rec.id)

    def login(self, name: str) -> Any:
        """A gradio_client logged in to the studio as `name` (the studio's own /login)."""
        from gradio_client import Client

        return Client(self.url, auth=(name, PASSWORD), verbose=False)


def _ball_clip(request: GenerationRequest, shade: int) -> Any:
    """A ball crossing the frame (every frame differs; the shade tells the models apart)."""
    def write(folder: Path) -> MediaFiles:
        h, w, n = request.height, request.width, request.num_frames
        y, x = np.mgrid[0:h, 0:w]
        out = np.empty((n, h, w, 3), np.uint8)
        for f in range(n):
            frame = np.stack([np.full((h, w), 40 + 50 * shade), 60 + y * 3, 120 + x], -1)
            frame[(x - (4 + f * (w - 8) / max(n - 1, 1))) ** 2 + (y - h / 2) ** 2 < 25] = (250, 250, 60)
            out[f] = np.clip(frame, 0, 255)
        return MediaFiles(video=write_mp4(out, request.fps, folder / "clip.mp4", {"request": request.to_dict()}))
    return write


@contextmanager
def rater_server(root: Path, narratives: dict[str, tuple[str, int]] | None = None,
                 models: tuple[str, ...] = MODELS, *, auth: bool = True) -> Iterator[RaterServer]:
    """`narratives`: key -> (narrative, frames); each gets one clip per model, then pairs.
    `auth=False` serves it without a studio login (raters sign in on the Rate tab)."""
    from app.services.context import StudioServices
    from app.services.identity import Identity
    from app.ui import build_app
    from support.app import free_port

    settings = make_settings(root / "data")
    services = StudioServices.create(settings, start_worker=False, identity=Identity(mode="raters" if auth else "none"))
    server = RaterServer(services, "", {})
    for key, (narrative, frames) in (narratives or {"n1": (N1, 9)}).items():
        for shade, model in enumerate(models):
            server.record(key, narrative, model, frames, shade)
    admin = services.rating.create_first_admin(ADMIN, PASSWORD, experience="animation director")
    for name in RATERS:
        services.rating.add_rater(admin, name, PASSWORD, experience="key animator")
    services.rating.build_pairs(admin)
    app = build_app(services)
    server.app = app
    try:
        _, server.url, _ = app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                                      quiet=True, **({"auth": "raters"} if auth else {}))
        yield server
    finally:
        app.close()


def add_pair_groups(studio: "Studio", count: int) -> int:
    """`count` more narratives, each made by the three models (three pairs a narrative), paired by
    the real service; returns how many pairs the studio has now."""
    history = HistoryService(studio.db, studio.settings.media_dir)
    for n in range(count):
        narrative = f"crowd scene {n}: a festival at night"
        for m, model in enumerate(MODELS):
            request = _request(narrative, model)
            history.record_finished(request, None, _clip(request, 10 + 3 * n + m))
    service = studio.service()
    admin = service.rater_by_name(ADMIN)
    service.build_pairs(admin)
    return len(service.list_pairs(admin))
