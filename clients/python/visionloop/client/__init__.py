"""VisionLoop client: ``DetectorClient`` for robots, ``LoopClient`` for the hub, channel helpers.

Generated contracts live beside this package as ``visionloop.<service>.v1``.
"""

from visionloop.client.channel import ChannelConfig, create_aio_channel, create_channel
from visionloop.client.detector import DetectorClient, detect_options
from visionloop.client.images import to_image
from visionloop.client.loop import ImageItem, LoopClient

__all__ = [
    "ChannelConfig",
    "DetectorClient",
    "ImageItem",
    "LoopClient",
    "create_aio_channel",
    "create_channel",
    "detect_options",
    "to_image",
]
