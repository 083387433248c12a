"""Why a conversion did not publish."""

from __future__ import annotations

from visionloop.converter.v1 import converter_service_pb2 as pb


class ConversionFailed(Exception):
    """A conversion failed; ``reason`` is what the hub records and a person reads.

    ``permanent`` marks input that can never convert (an unsafe zip, no model.json, an unknown
    variant): the hub then does not offer it again. ``parity`` carries the refused check, if any.
    """

    def __init__(self, reason: str, *, permanent: bool = False, parity: pb.ParityReport | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.parity = parity
