"""VisionLoop robot client: ``DetectorClient`` plus channel helpers.

Generated contracts live beside this package as ``visionloop.<service>.v1``.
"""

from visionloop.client.channel import ChannelConfig, create_aio_channel, create_channel
from visionloop.client.detector import DetectorClient, detect_options
from visionloop.client.images import to_image

__all__ = [
    "ChannelConfig",
    "DetectorClient",
    "create_aio_channel",
    "create_channel",
    "detect_options",
    "to_image",
]
