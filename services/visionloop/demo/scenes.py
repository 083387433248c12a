"""The frames of the demo's field: what each robot sees per round, the bootstrap, the trainer's
validation set and the held-out set.

Two kinds of field: ``Scenes``, the world presets, where every frame is an independent draw, and
``RowScenes``, robots driving along rows (``synthetic.rows``): consecutive frames overlap, most
ground is routine, rare situations come now and then, and the light changes part way through.

Every frame is a pure function of the demo seed, the stream it belongs to and its index, so the
demo and the experiment see the same frames for the same seed and any frame can be rebuilt.
Streams never overlap: the held-out frames are never streamed, uploaded or trained on.
Robots send JPEG (what cameras send), and learning and scoring use what the JPEG decodes to.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from visionloop.demo.config import MIXED
from visionloop.lib import images
from visionloop.lib.training_data import Annotation, Sample
from visionloop.testing.synthetic import rows, world
from visionloop.testing.synthetic.rows import RowConfig
from visionloop.testing.synthetic.seeding import jpeg
from visionloop.testing.synthetic.world import WorldConfig

_HELD_OUT, _BOOTSTRAP, _VALIDATION, _ROBOTS = 0, 1, 2, 10
_RARE = 7  # seeds the draw of a mixed field's frame kind, apart from the frame's own streams
_STREAMS = 1000  # streams per demo seed: robot ids stay below 990


@dataclass(frozen=True)
class Frame:
    """One camera frame as sent (JPEG) and what it holds; ``image_id`` is the hub's id for it (sha256)."""

    data: bytes
    annotations: tuple[Annotation, ...]
    width: int
    height: int
    situations: frozenset[str] = frozenset()  # what a row frame shows (``synthetic.rows.SITUATIONS``)

    @property
    def image_id(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def decoded(self) -> np.ndarray:
        """HxWx3 BGR pixels, as the detector and the trainer see them."""
        return images.decode(self.data, images.DEFAULT_LIMITS)

    def sample(self) -> Sample:
        return Sample(self.decoded(), self.annotations, 0)


@dataclass(frozen=True)
class Scenes:
    """The field of demo ``seed``: frames of ``config``, or a ``rare_share`` of them of ``rare``."""

    config: WorldConfig
    seed: int = 0
    rare: WorldConfig | None = None
    rare_share: float = 0.0

    @classmethod
    def preset(cls, name: str, seed: int = 0, size: tuple[int, int] | None = None) -> Scenes:
        """The field ``name`` (``config.FIELDS``), at ``size`` (width, height) instead of 320x240 if given."""
        share, common, rare = MIXED.get(name, (0.0, name, name))

        def sized(config: WorldConfig) -> WorldConfig:
            return config if size is None else dataclasses.replace(config, width=size[0], height=size[1])

        return cls(sized(world.preset(common)), seed, sized(world.preset(rare)) if share else None, share)

    @property
    def categories(self) -> Sequence[tuple[str, str]]:
        return world.categories(self.config)

    def _frames(self, stream: int, start: int, count: int) -> list[Frame]:
        if self.seed < 0:
            raise ValueError(f"the seed must not be negative, got {self.seed}")
        base = self.seed * _STREAMS + stream
        return [_frame(world.generate(base, index, self._config(base, index))) for index in range(start, start + count)]

    def _config(self, base: int, index: int) -> WorldConfig:
        if self.rare is None or np.random.default_rng([base, index, _RARE]).random() >= self.rare_share:
            return self.config
        return self.rare

    def held_out(self, count: int) -> list[Frame]:
        return self._frames(_HELD_OUT, 0, count)

    def validation(self, count: int) -> list[Frame]:
        """Annotated frames the trainer holds out (tag ``test``): what the promotion gate compares models on."""
        return self._frames(_VALIDATION, 0, count)

    def bootstrap(self, count: int) -> list[Frame]:
        """Frames robots upload before there is a model to filter with."""
        return self._frames(_BOOTSTRAP, 0, count)

    def robot(self, robot: int, round_: int, count: int) -> list[Frame]:
        """What robot ``robot`` sees in round ``round_`` (1-based), ``count`` frames per round."""
        if not 0 <= robot < _STREAMS - _ROBOTS:
            raise ValueError(f"robot must be in [0, {_STREAMS - _ROBOTS}), got {robot}")
        return self._frames(_ROBOTS + robot, (round_ - 1) * count, count)


def _frame(sample: Sample, situations: frozenset[str] = frozenset()) -> Frame:
    height, width = sample.image.shape[:2]
    return Frame(jpeg(sample), sample.annotations, width, height, situations)


# The held-out rows in twenty frames: which ground event each is made to show (None: only what the
# row happens to hold), and which three in ten are under the changed light. Rare situations get
# more frames than their share of the robots' frames (about 1 in 14 shows a thistle), as a test set
# does that has to say how the model copes with them; routine ground keeps the largest share.
_HELD_OUT_EVENTS: tuple[str | None, ...] = (
    (None,) * 8 + (rows.PATCH,) * 3 + (rows.THISTLE,) * 3 + (rows.STRAW,) * 3 + (rows.BUMP,) * 3
)
_HELD_OUT_SHIFTED = (1, 4, 7)  # of every ten frames


@dataclass(frozen=True)
class RowScenes:
    """Robots driving along the rows of field ``seed`` (``synthetic.rows``), the light changing from
    round ``shift_round`` on (never when None)."""

    config: RowConfig = dataclasses.field(default_factory=RowConfig)
    seed: int = 0
    shift_round: int | None = None

    @property
    def categories(self) -> Sequence[tuple[str, str]]:
        return rows.categories()

    def _drive(self, stream: int, index: int) -> int:
        if self.seed < 0:
            raise ValueError(f"the seed must not be negative, got {self.seed}")
        return stream * 100_000 + index

    def held_out(self, count: int) -> list[Frame]:
        """Frames of held-out rows, each far from the others, in the proportions of ``_HELD_OUT_EVENTS``."""
        return self._spread(_HELD_OUT, count)

    def validation(self, count: int) -> list[Frame]:
        """Annotated frames the trainer holds out (tag ``test``), other rows in the held-out proportions:
        what the promotion gate compares models on."""
        return self._spread(_VALIDATION, count)

    def _spread(self, stream: int, count: int) -> list[Frame]:
        frames = []
        for index in range(count):
            event = _HELD_OUT_EVENTS[index % len(_HELD_OUT_EVENTS)]
            shifted = index % 10 in _HELD_OUT_SHIFTED and self.shift_round is not None
            drive = self._drive(stream, index)
            (frame,) = rows.drive(self.seed, drive, 1, self.config, shifted=shifted, force=[event] if event else [])
            frames.append(_frame(frame.sample, frame.situations))
        return frames

    def bootstrap(self, count: int) -> list[Frame]:
        """A frame every frame height along a first drive: what robots upload before there is a model."""
        found = rows.drive(self.seed, self._drive(_BOOTSTRAP, 0), count, self.config, spacing=self.config.height)
        return [_frame(f.sample, f.situations) for f in found]

    def robot(self, robot: int, round_: int, count: int) -> list[Frame]:
        """What robot ``robot`` sees in round ``round_`` (1-based): ``count`` frames of a drive along its row."""
        if not 0 <= robot < _STREAMS - _ROBOTS:
            raise ValueError(f"robot must be in [0, {_STREAMS - _ROBOTS}), got {robot}")
        shifted = self.shift_round is not None and round_ >= self.shift_round
        found = rows.drive(self.seed, self._drive(_ROBOTS + robot, round_), count, self.config, shifted=shifted)
        return [_frame(f.sample, f.situations) for f in found]
