"""What one run of the loop is made of: the field, the sizes, the training and the upload filter.

The demo and the experiment share it, so the experiment measures the filter the demo runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visionloop.server.detector.upload_filter import FilterSettings

if TYPE_CHECKING:  # imported where used: the CLI reads the defaults here without loading PyTorch or OpenCV
    from visionloop.demo.scenes import RowScenes, Scenes
    from visionloop.server.trainer.reference.train import Hyperparameters

MIN_EPOCHS = 3  # of a continuation: each frame seen a few times, flipped differently
DETECTOR_SCORE_THRESHOLD = 0.3  # the reference model's model.json default: what robots get back
EVALUATION_SCORE_THRESHOLD = 0.05  # AP needs the low-scored detections too
# Detections the acquisition scores (SelectImages' score_threshold): below the robots' threshold, so
# that a thing the model barely sees (a rare weed it has hardly been shown) counts as the
# uncertainty it is. The demo and the experiment use the same.
ACQUISITION_SCORE_THRESHOLD = 0.1
# SelectImages' acquisitions by name (visionloop.server.annotator.client.ACQUISITIONS' keys).
ACQUISITIONS = ("balanced", "uncertainty", "random", "arrival")
# Label budgets the experiment compares, as shares of the frames the robots saw in a round.
BUDGETS = (0.05, 0.10, 0.20)
# The experiment's ways of spending them (``demo.experiment``), random first: the others are compared with it.
ARMS = ("random", "filter", "uncertainty", "acquisition")
# An arm no loop can run, for the experiment's upper bound: it reads every frame's labels and picks the
# frames the model gets most wrong. On demand (``--arm oracle``), not among the default arms.
ORACLE = "oracle"
EXPERIMENT_ARMS = (*ARMS, ORACLE)  # every arm the experiment can run, in its tables' order
# The experiment's held-out frames: more than the demo's, since its paired differences between arms are
# a few points and the rare category's AP rests on the thistles among them (about 1.7 per 6.7 frames).
EXPERIMENT_HELD_OUT = 500
# Random's draws per seed and budget in the experiment, averaged: the baseline is what random picks get
# on average, not one draw's luck with the rare frames.
RANDOM_DRAWS = 3
# Fields beyond the world presets (easy, standard, hard): name -> (share of rare frames, preset of
# most frames, preset of the rare ones). "mixed": most frames are routine, some come from hard
# conditions (dusk, dust, crowded rows), so frames differ in how much a model can learn from them.
MIXED: dict[str, tuple[float, str, str]] = {"mixed": (0.2, "easy", "hard")}
# Robots driving along rows (``synthetic.rows``): overlapping frames, routine ground, rare situations,
# and the light changing half way through the rounds.
ROWS = "rows"
FIELDS = ("easy", "standard", "hard", *MIXED, ROWS)
# The upload filter per field when the config names none: its environment defaults, but on the rows
# field a pre-filter for the label budget (what people label is chosen on the hub): a camera's
# uploads capped at 2 a second, and 1 frame in 10 sampled at random besides the uncertain ones, so
# the hub also sees what the model is blind to (a new light where it finds nothing to be unsure of).
UPLOAD_FILTERS: dict[str, FilterSettings] = {
    ROWS: FilterSettings(
        max_per_minute=120,
        max_per_hour=3600,
        random_probability=0.1,
        sample_max_per_minute=60,
        sample_max_per_hour=1800,
    )
}


@dataclass(frozen=True)
class LoopConfig:
    """Defaults sized for a 2-core machine: the whole demo well within 15 minutes."""

    preset: str = ROWS  # FIELDS; rows: robots driving along rows (standard: the world preset of that name)
    # A small robot camera: the preset's objects at full size, on fewer pixels than its 320x240.
    size: tuple[int, int] = (256, 192)
    seed: int = 0
    rounds: int = 4  # the first uploads bootstrap frames; the others stream through the filter
    robots: int = 4
    frames: int = 120  # per robot and round
    fps: float = 10.0  # per robot
    # Camera time from the end of one round's streams to the start of the next. Robots come back after
    # hours in a real loop; the filter's per-minute upload limit and its memory of recent observations
    # must have started afresh in the demo too. Simulated: the filter's clock moves on, nobody waits.
    round_gap: float = 60.0
    # Images people label per round, as a share of the frames the robots saw in it (at least one), and
    # how they are picked from what the upload filter sent (SelectImages' acquisition).
    budget: float = 0.1
    acquisition: str = "balanced"
    bootstrap: int = 32  # frames uploaded while there is no model yet
    # Never uploaded: the mAP of every round is measured on them. Enough that a round's gain is more
    # than the figure's own noise (a few hundredths on 100 frames).
    held_out: int = 200
    # Annotated frames the trainer holds out (tag test), never trained on: every training measures
    # its model and the deployed one on them, and the hub's promotion gate compares the two. Enough
    # that a better model rarely scores lower on them by chance.
    validation: int = 100
    # Passes over the bootstrap frames. Later trainings continue from the deployed model and make as
    # many image passes plus one more epoch over their larger sets (at least MIN_EPOCHS): the budget
    # grows with the data, or the model stops learning from what each round adds.
    epochs: int = 20
    resolution: int = 256  # the model input's longer side: the frames' own size, no rescaling
    width: int = 16  # model width (channels at stride 4)
    batch_size: int = 4  # small sets learn from many small steps
    learning_rate: float = 6e-3
    # The trainer's rare-category oversampling (Hyperparameters.repeat_threshold): a thistle in a few of
    # the labelled frames is learnt from them (thistle AP 0.30 -> 0.72 for random picks), not drowned.
    repeat_threshold: float = 1.0  # the reference trainer's default
    # The detector's upload filter; None: the field's (UPLOAD_FILTERS, else the environment defaults).
    upload: FilterSettings | None = None

    def __post_init__(self) -> None:
        if min(self.rounds, self.robots, self.frames, self.bootstrap, self.held_out, self.validation, self.epochs) < 1:
            raise ValueError("rounds, robots, frames, bootstrap, held_out, validation and epochs must be at least 1")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.preset not in FIELDS:
            raise ValueError(f"unknown field {self.preset!r}; use one of {', '.join(FIELDS)}")
        if self.round_gap < 0:
            raise ValueError(f"round_gap must not be negative, got {self.round_gap}")
        if not 0 < self.budget <= 1:
            raise ValueError(f"budget is a share of the robots' frames, in (0, 1]; got {self.budget}")
        if self.acquisition not in ACQUISITIONS:
            raise ValueError(f"unknown acquisition {self.acquisition!r}; use one of {', '.join(ACQUISITIONS)}")

    def scenes(self) -> Scenes | RowScenes:
        from visionloop.demo.scenes import RowScenes, Scenes
        from visionloop.testing.synthetic.rows import RowConfig

        if self.preset == ROWS:
            return RowScenes(RowConfig(width=self.size[0], height=self.size[1]), self.seed, self.shift_round)
        return Scenes.preset(self.preset, self.seed, self.size)

    def labels(self) -> int:
        """Images labelled in a round after the first: ``budget`` of the frames the robots saw."""
        return max(1, round(self.budget * self.robots * self.frames))

    @property
    def shift_round(self) -> int:
        """The first round under the changed light on the rows field: half way through the rounds."""
        return self.rounds // 2 + 1

    def epochs_for(self, images: int, continued: bool) -> int:
        """Epochs of a training on ``images`` frames: ``epochs`` x ``bootstrap`` image passes, and for a
        continuation one more epoch (at least ``MIN_EPOCHS``)."""
        passes = math.ceil(self.epochs * self.bootstrap / max(images, 1))
        return max(MIN_EPOCHS, passes + 1) if continued else passes

    def hyperparameters(self, images: int, continued: bool) -> Hyperparameters:
        """The training on ``images`` frames, from scratch or continuing from a model."""
        from visionloop.server.trainer.reference.train import Hyperparameters

        return Hyperparameters(
            resolution=self.resolution,
            epochs=self.epochs_for(images, continued),
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            width=self.width,
            seed=self.seed,
            repeat_threshold=self.repeat_threshold,
        )

    def training_spec(self, images: int, continued: bool) -> dict[str, Any]:
        """The hyperparameters of a training on ``images`` frames as the hub's training spec takes them."""
        hyper = self.hyperparameters(images, continued)
        return {
            "resolution": hyper.resolution,
            "epochs": hyper.epochs,
            "batch_size": hyper.batch_size,
            "learning_rate": hyper.learning_rate,
            "width": hyper.width,
            "seed": hyper.seed,
            "repeat_threshold": hyper.repeat_threshold,
        }

    @property
    def upload_filter(self) -> FilterSettings:
        return self.upload or UPLOAD_FILTERS.get(self.preset, FilterSettings())

    def detector_settings(self) -> dict[str, Any]:
        """The upload filter as detector settings (field names of ``DetectorSettings``)."""
        f = self.upload_filter
        return {
            "min_uncertain_threshold": f.min_uncertain,
            "max_uncertain_threshold": f.max_uncertain,
            "upload_similarity_memory_seconds": f.similarity_memory_seconds,
            "upload_similarity_iou": f.similarity_iou,
            "upload_point_radius_px": f.point_radius_px,
            "upload_max_detections": f.max_detections,
            "upload_random_probability": f.random_probability,
            "upload_close_to_threshold_margin": f.close_to_threshold_margin,
            "upload_sample_max_per_minute": f.sample_max_per_minute,
            "upload_sample_max_per_hour": f.sample_max_per_hour,
            "upload_max_per_minute": f.max_per_minute,
            "upload_max_per_hour": f.max_per_hour,
        }
