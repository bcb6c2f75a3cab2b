"""Issue 36 (smaller findings): a pair's two served copies were rendered in the pair's stored
order, so the copy written first (visible in its Last-Modified) named the stored "a" side. They
are now rendered in a random order and carry one timestamp."""
from __future__ import annotations

from support.rating import Studio, studio, template  # noqa: F401


def test_a_pairs_two_copies_carry_one_timestamp(studio: Studio) -> None:  # noqa: F811
    """Both copies of every serving have the same modification time, whichever was rendered first."""
    service = studio.service(gold_share=0, repeat_share=0)
    for rater in ("aki", "ben", "chika"):
        served = service.next_pair(studio.rater(rater))
        a, b = (served.video_a.stat().st_mtime_ns, served.video_b.stat().st_mtime_ns)
        assert a == b, (a, b)
