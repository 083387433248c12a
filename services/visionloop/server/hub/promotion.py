"""The promotion gate: which new versions a follow-latest deployment target may deploy.

The loop must never replace a model by a worse one on its own. Every new version gets a
decision when it is published, kept with it as a ``Promotion`` record and never revised:

- the project's first version is promoted: there is nothing to compare it with;
- a version with held-out metrics is compared with the newest promoted version (the one a
  follow-latest target deploys) on the *same* images: the figure its trainer measured for that
  version on the new held-out images (``ModelMetrics.baselines``: a trainer re-evaluates the model
  it continued from), else that version's own metrics when they were measured on the same images
  (the same ``held_out_digest``). It is promoted when its mAP@0.5 is not below that figure by
  more than the tolerance (``VISIONLOOP_PROMOTION_TOLERANCE``), and held otherwise. Without a
  fair comparison it is held: figures from different images say nothing about which is better;
- a version a training published without metrics (it had no held-out images) is held; a version
  uploaded by hand without metrics is promoted as uploaded: whoever uploads it vouches for it.

A held version stays published: pinning deploys any version.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from visionloop.common.v1 import model_pb2
from visionloop.server.hub.db import schema
from visionloop.server.hub.versions import latest_model

PROMOTED = model_pb2.PROMOTION_STATE_PROMOTED
HELD = model_pb2.PROMOTION_STATE_HELD
_EPSILON = 1e-9  # equal figures pass whatever the float rounding of their serialization


def decide(
    session: Session, project: schema.Project, candidate: model_pb2.ModelInfo, tolerance: float, now: datetime
) -> model_pb2.Promotion:
    """The gate's decision on ``candidate``, a version of ``project`` about to be recorded."""
    decision = model_pb2.Promotion(tolerance=tolerance)
    decision.decide_time.FromDatetime(now)
    measured = has_metrics(candidate)
    if measured:
        decision.map50 = candidate.metrics.map50
    champion = latest_model(session, project, promoted=True)
    if champion is None:
        return _decided(decision, PROMOTED, "the project's first promoted version: there is nothing to compare it with")
    name = f"{champion.version} (the newest promoted version)"
    decision.compared_version = champion.version
    if not measured:
        if candidate.training_id:
            return _decided(
                decision,
                HELD,
                f"training {candidate.training_id} published it without held-out metrics (it had no held-out "
                f"images), so it cannot be compared with {name}; pin it to deploy it",
            )
        return _decided(decision, PROMOTED, "uploaded without held-out metrics: promoted as uploaded, without a gate")
    metrics = candidate.metrics
    compared = _figure_for(champion, metrics)
    if compared is None:
        others = [b.version for b in metrics.baselines]
        also = f" (its trainer measured {', '.join(others)})" if others else ""
        return _decided(
            decision,
            HELD,
            f"not compared: {name} was not measured on this version's {metrics.image_count} held-out images{also}; "
            f"pin it to deploy it, or train from {champion.version}",
        )
    decision.compared_map50 = compared
    decision.image_count = metrics.image_count
    versus = f"{compared:.3f} of {name} on the same {metrics.image_count} held-out images"
    margin = f"by more than the tolerance {tolerance:.3f}"
    if metrics.map50 >= compared - tolerance - _EPSILON:
        return _decided(decision, PROMOTED, f"mAP@0.5 {metrics.map50:.3f} is not below {versus} {margin}")
    return _decided(
        decision, HELD, f"mAP@0.5 {metrics.map50:.3f} is below {versus} {margin}; pin it to deploy it anyway"
    )


def has_metrics(info: model_pb2.ModelInfo) -> bool:
    """Whether a version comes with an evaluation (an empty ``metrics`` object is none)."""
    return info.HasField("metrics") and info.metrics.ByteSize() > 0


def _figure_for(champion: schema.Model, metrics: model_pb2.ModelMetrics) -> float | None:
    """The champion's mAP@0.5 on the images ``metrics`` were measured on, when known."""
    for baseline in metrics.baselines:
        if baseline.version == champion.version:
            return baseline.map50
    if metrics.held_out_digest and champion.metrics is not None:
        own = model_pb2.ModelMetrics.FromString(champion.metrics)
        if own.held_out_digest == metrics.held_out_digest:
            return own.map50
    return None


def _decided(decision: model_pb2.Promotion, state: int, reason: str) -> model_pb2.Promotion:
    decision.state = state  # type: ignore[assignment]
    decision.reason = reason
    return decision


def promotion_of(model: schema.Model) -> model_pb2.Promotion:
    """A version's recorded decision; versions from before the gate have only their state."""
    if model.promotion is not None:
        return model_pb2.Promotion.FromString(model.promotion)
    return model_pb2.Promotion(state=PROMOTED if model.promoted else HELD)
