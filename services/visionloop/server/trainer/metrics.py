"""The trainer's Prometheus metrics: what the trainer dashboard and the "training stuck" alert read."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from visionloop.common.v1 import training_pb2

STATE = Gauge(
    "visionloop_trainer_state",
    "1 for the state the current training is in (state label as in TrainingState, e.g. TRAINING_RUNNING).",
    ["state"],
)
PROGRESS = Gauge("visionloop_trainer_progress", "Progress of the current state, 0..1.")
EPOCH = Gauge("visionloop_trainer_epoch", "Last finished epoch of the current training.")
LOSS = Gauge("visionloop_trainer_loss", "Mean training loss of the last finished epoch.")
MAP50 = Gauge("visionloop_trainer_map50", "mAP@0.5 on the held-out images, last evaluation.")
STEP_ERRORS = Counter("visionloop_trainer_step_errors", "Failed attempts of training steps.", ["state", "critical"])
TRAININGS = Counter("visionloop_trainer_trainings", "Trainings this node ended, by phase.", ["phase"])
WORKER_UP = Gauge(
    "visionloop_trainer_worker_up",
    "1 while the worker that claims and runs trainings is alive; 0 after it died, until the supervisor restarts it.",
)
WORKER_CRASHES = Counter(
    "visionloop_trainer_worker_crashes", "Times the claim-and-train worker died and was restarted (see the log)."
)
LAST_PROGRESS = Gauge(
    "visionloop_trainer_last_progress_timestamp_seconds",
    "Unix time the current training last moved (state change or epoch); alerts fire when it stops moving.",
)

_STATES = [v.name.removeprefix("TRAINING_STATE_") for v in training_pb2.TrainingState.DESCRIPTOR.values]


def state_name(state: int) -> str:
    return training_pb2.TrainingState.Name(state).removeprefix("TRAINING_STATE_")


def show_state(state: int | None) -> None:
    """Set the one-hot state gauge (None: idle, every state 0)."""
    current = state_name(state) if state is not None else ""
    for name in _STATES:
        STATE.labels(name).set(1.0 if name == current else 0.0)
    LAST_PROGRESS.set_to_current_time()
