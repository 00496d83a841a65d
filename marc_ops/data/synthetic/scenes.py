"""What a shot shows: a background colour, 1-4 moving shapes, maybe a word; and how to say it.

The vocabulary is small and systematic on purpose (10 backgrounds, 6 shape colours, 3 shapes,
counts 1-4, 20 words) so that a tiny model can learn it, and the description of a scene is a
fixed function of its content so that a tiny image-text model can learn frames ↔ text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from marc_ops.config.synthetic import DEFAULT_SHAPE_RADIUS, RGB

SHAPE_COLOURS: dict[str, RGB] = {
    "red": (230, 24, 24),
    "green": (24, 206, 40),
    "blue": (24, 48, 236),
    "yellow": (255, 232, 0),
    "white": (250, 250, 250),
    "black": (12, 12, 12),
}
SHAPE_KINDS: tuple[str, ...] = ("circle", "square", "triangle")
WORDS: tuple[str, ...] = tuple(
    "KIWI LIME PEAR PLUM FISH BIRD STAR MOON SHIP TREE LAMP BOOK DOOR ROSE CAKE BELL COIN DRUM FROG KITE".split()
)
MAX_SHAPES = 4
_COUNT_WORDS = ("no", "a", "two", "three", "four")


def plural(kind: str, count: int) -> str:
    return kind if count == 1 else f"{kind}s"


def count_phrase(count: int, noun: str) -> str:
    """``count_phrase(2, "blue square")`` → ``"two blue squares"``."""
    return f"{_COUNT_WORDS[count]} {plural(noun, count)}"


def join_phrases(parts: list[str]) -> str:
    """``["a", "b", "c"]`` → ``"a, b and c"``."""
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


@dataclass(frozen=True)
class MovingShape:
    """A shape that moves in a straight line at constant speed and bounces off the frame edges.

    Positions and the radius are in pixels, velocities in pixels per second.
    """

    kind: str
    colour: str
    radius: float
    x0: float
    y0: float
    vx: float
    vy: float

    def centre(self, t: float, width: int, height: int) -> tuple[float, float]:
        """Centre at time ``t`` seconds (negative times work: a dissolve shows a shot before it starts)."""
        return (
            _bounce(self.x0 + self.vx * t, self.radius, width - self.radius),
            _bounce(self.y0 + self.vy * t, self.radius, height - self.radius),
        )


def _bounce(value: float, low: float, high: float) -> float:
    """Reflect ``value`` into [low, high] as a ball bouncing between two walls would be."""
    span = high - low
    folded = (value - low) % (2 * span)
    return low + (folded if folded <= span else 2 * span - folded)


@dataclass(frozen=True)
class Scene:
    """The content of one shot (or one image). ``text_anchor`` places the word: (0, 0) top left, (1, 1) bottom right."""

    background: str
    shapes: tuple[MovingShape, ...]
    text: str | None = None
    text_anchor: tuple[float, float] = (0.5, 0.5)

    def count(self, kind: str) -> int:
        return sum(shape.kind == kind for shape in self.shapes)

    def kinds(self) -> set[str]:
        return {shape.kind for shape in self.shapes}

    def shape_groups(self) -> list[tuple[str, str, int]]:
        """(kind, colour, count) in the vocabulary's order: circles before squares, red before green."""
        counts = Counter((shape.kind, shape.colour) for shape in self.shapes)
        order = sorted(counts, key=lambda kc: (SHAPE_KINDS.index(kc[0]), list(SHAPE_COLOURS).index(kc[1])))
        return [(kind, colour, counts[kind, colour]) for kind, colour in order]

    def shapes_phrase(self) -> str:
        """``"a red circle and two blue squares"``."""
        return join_phrases([count_phrase(n, f"{colour} {kind}") for kind, colour, n in self.shape_groups()])

    def description(self) -> str:
        """``"a red circle and two blue squares on a yellow background, text 'KIWI'"``."""
        text = f", text '{self.text}'" if self.text else ""
        article = "an" if self.background[0] in "aeiou" else "a"
        return f"{self.shapes_phrase()} on {article} {self.background} background{text}"

    def to_json(self) -> dict[str, Any]:
        return {
            "background": self.background,
            "shapes": [{"kind": s.kind, "colour": s.colour} for s in self.shapes],
            "text": self.text,
            "description": self.description(),
        }


ShapeSpec = tuple[str, str]  # (kind, colour)


def shape_colours_on(background: str) -> list[str]:
    """Shape colours that stand out on ``background`` (never the background's own colour)."""
    return [colour for colour in SHAPE_COLOURS if colour != background]


def random_specs(
    rng: np.random.Generator, background: str, count: int, kinds: tuple[str, ...] = SHAPE_KINDS
) -> list[ShapeSpec]:
    colours = shape_colours_on(background)
    return [(str(rng.choice(kinds)), str(rng.choice(colours))) for _ in range(count)]


def place_shapes(
    rng: np.random.Generator,
    specs: list[ShapeSpec],
    width: int,
    height: int,
    radius: tuple[float, float] = DEFAULT_SHAPE_RADIUS,
) -> tuple[MovingShape, ...]:
    """Give each (kind, colour) a size (``radius``: smallest and largest, fractions of ``height``), a start
    inside the frame and a velocity."""
    shapes = []
    for kind, colour in specs:
        radius_px = float(rng.uniform(*radius) * height)
        speed = float(rng.uniform(0.12, 0.35) * width)
        angle = float(rng.uniform(0.0, 2.0 * np.pi))
        shapes.append(
            MovingShape(
                kind=kind,
                colour=colour,
                radius=radius_px,
                x0=float(rng.uniform(radius_px, width - radius_px)),
                y0=float(rng.uniform(radius_px, height - radius_px)),
                vx=speed * float(np.cos(angle)),
                vy=speed * float(np.sin(angle)),
            )
        )
    return tuple(shapes)
