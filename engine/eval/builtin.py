"""The built-in prompt suite: 48 prompts that cover every axis and every value of the measured
fields, plus "long" variants of 12 of them with 150+ words of distracting narrative.

Prompt k takes the k-th value (cycling) of `camera.movement` (17 values), `style.timing` (5) and
`motion.intensity` (5, offset so the three fields do not move in lock-step), and a style school,
palette, shot size, performance and effect from the taxonomy, so Style, Motion, Camera and VFX
all appear. A combination the taxonomy forbids (a declared contradiction) moves the performance
or effect on to the next value. The long variants keep the tags and bury the short narrative in
scene description that names no camera, timing or speed, to measure instruction dilution.
"""
from __future__ import annotations

from typing import Any

from ..core.pks import Taxonomy

BASE_PROMPTS = 48
LONG_EVERY = 4  # every 4th prompt also gets a long variant: 12 of 48

_SUBJECTS = (
    "a girl with a red scarf", "an old fisherman", "a young swordsman", "a small robot", "a fox spirit",
    "a schoolboy on a bicycle", "a witch in a wide hat", "a tired office worker", "two sisters",
    "a pilot in a flight suit", "a cat on a windowsill", "a street musician",
)
_ACTIONS = (
    "crosses a rooftop at dusk", "waits at a rainy bus stop", "runs along the river bank",
    "looks out over a neon city", "walks through a field of sunflowers", "stands on a cliff above the sea",
    "climbs the stairs of a shrine", "reads a letter by the window", "rides a train through the mountains",
    "stops in a crowded market", "turns around in an empty classroom", "steps out of a spaceship hangar",
)
_FILLER = (
    "The air smells of salt and old paper, and somewhere a radio plays a song nobody remembers the name of. "
    "On the wall hang posters for a festival that ended years ago, their corners curling in the damp. A "
    "vending machine hums beside a bicycle with a flat tyre, and pigeons argue over the crumbs of a melon bun. "
    "Far away a ferry sounds its horn twice. The shop across the street sells umbrellas, goldfish and "
    "batteries, and its owner is asleep behind the counter with a newspaper over her face. Laundry flaps on "
    "a balcony, blue and white and yellow, and a child's drawing of a whale is taped inside a window. The "
    "clouds are the colour of weak tea. Everything here has been repaired at least once: the fence, the "
    "sign above the bakery, the stone lantern by the gate, the paper screen with a patch shaped like a "
    "moon. A bell rings at the school on the hill, a dog answers it, and the smell of grilled fish drifts "
    "from an open kitchen where someone is humming while they cook rice for a family of five.",
    "Inside the station the clocks disagree by a minute, and the timetable lists trains to towns that have "
    "changed their names. A poster promises hot springs and red maple leaves. The floor is tiled in green "
    "and cream, worn pale where thousands of shoes have turned toward the ticket gates. A boy counts coins "
    "for a carton of milk, a woman folds a paper crane while she waits, and an old man feeds a sparrow "
    "from his palm. Beyond the glass, snow has settled on the vending machines and on the roofs of parked "
    "taxis. A noodle stall breathes steam into the cold, its curtain printed with a laughing octopus. "
    "Somebody has left a red umbrella hooked on the railing, and a lost glove sits on a bench as if saving "
    "a seat. The announcements are gentle and slow, and nobody listens to them. A calendar from last year "
    "still shows March, with a cherry tree and a line of handwriting nobody can read anymore, in blue ink.",
)


def _first_ok(tax: Taxonomy, tags: dict[str, Any], field: str, values: tuple[str, ...], start: int) -> dict[str, Any]:
    """`tags` with `field` set to the first value from `start` on that no contradiction forbids."""
    for shift in range(len(values)):
        value = values[(start + shift) % len(values)]
        trial = {**tags, field: [value] if tax.field(field).multi else value}
        try:
            tax.validate_tags(trial)
        except ValueError:
            continue
        if not tax.find_contradictions(trial):  # soft ones too: the suite asks for what is usual
            return trial
    return tags


def builtin_prompts(tax: Taxonomy) -> list[dict[str, Any]]:
    """The suite's prompts as suite-file mappings (id, narrative, tags; long ones name their base)."""
    def ids(field: str) -> tuple[str, ...]:
        return tax.field(field).value_ids

    movement, timing, intensity = ids("camera.movement"), ids("style.timing"), ids("motion.intensity")
    out: list[dict[str, Any]] = []
    for k in range(BASE_PROMPTS):
        tags: dict[str, Any] = {
            "camera.movement": movement[k % len(movement)],
            "style.timing": timing[k % len(timing)],
            "motion.intensity": intensity[(k // len(timing) + k) % len(intensity)],
            "style.school": ids("style.school")[k % len(ids("style.school"))],
            "style.palette": ids("style.palette")[(3 * k) % len(ids("style.palette"))],
            "camera.shot_size": ids("camera.shot_size")[(5 * k) % len(ids("camera.shot_size"))],
        }
        tags = _first_ok(tax, tags, "motion.performance", ids("motion.performance"), 7 * k)
        tags = _first_ok(tax, tags, "vfx.effects", ids("vfx.effects"), 11 * k)
        tax.validate_tags(tags)  # the suite must be valid; a taxonomy change that breaks it shows here
        # (subject, action) never repeats within the 48, so no two prompts share a narrative
        narrative = f"{_SUBJECTS[k % len(_SUBJECTS)].capitalize()} {_ACTIONS[(5 * k + k // 12) % len(_ACTIONS)]}."
        pid = f"p{k:02d}-{tags['camera.movement'].replace('_', '-')}"
        out.append({"id": pid, "narrative": narrative, "tags": tags})
        if k % LONG_EVERY == 0:
            filler = _FILLER[(k // LONG_EVERY) % len(_FILLER)]
            out.append({"id": f"{pid}-long", "narrative": f"{narrative} {filler}", "tags": dict(tags), "base": pid})
    return out


DEFAULT_GENERATION: dict[str, Any] = {"width": 64, "height": 64, "num_frames": 17, "steps": 2}
DEFAULT_SYSTEMS: list[dict[str, Any]] = [
    {"id": "preview-tags", "model": "preview", "tags_in_prompt": True},
    {"id": "preview-no-tags", "model": "preview", "use_tags": False},
]


def builtin_suite(tax: Taxonomy) -> dict[str, Any]:
    """The whole built-in suite as a suite-file mapping: 60 prompts, seed 0, two preview systems."""
    return {"name": "builtin", "seeds": [0], "generation": dict(DEFAULT_GENERATION),
            "prompts": builtin_prompts(tax), "systems": [dict(s) for s in DEFAULT_SYSTEMS]}


__all__ = ["BASE_PROMPTS", "DEFAULT_GENERATION", "DEFAULT_SYSTEMS", "builtin_prompts", "builtin_suite"]
