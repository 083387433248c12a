"""The frames of the demo's field: what each robot sees per round, the bootstrap, the trainer's
validation set and the held-out set.

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
from visionloop.testing.synthetic import world
from visionloop.testing.synthetic.seeding import jpeg
from visionloop.testing.synthetic.world import Annotation, Sample, WorldConfig

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


def _frame(sample: Sample) -> Frame:
    height, width = sample.image.shape[:2]
    return Frame(jpeg(sample), sample.annotations, width, height)
