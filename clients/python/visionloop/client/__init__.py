"""VisionLoop client: ``DetectorClient`` for robots, ``LoopClient`` for the hub, channel helpers.

``AsyncDetectorClient`` is the asyncio twin of ``DetectorClient``; ``FrameStream`` (asyncio) and
``SyncFrameStream`` stream a camera at camera rate with bounded queues and reconnects.
Generated contracts live beside this package as ``visionloop.<service>.v1``.
"""

from visionloop.client.aio import AsyncDetectorClient
from visionloop.client.channel import ChannelConfig, create_aio_channel, create_channel
from visionloop.client.detector import DetectorClient, RetryPolicy, detect_options, robot_channel_config
from visionloop.client.images import to_image
from visionloop.client.loop import ImageItem, LoopClient
from visionloop.client.streaming import Backoff, FrameResult, FrameStream, StreamStats, SyncFrameStream

__all__ = [
    "AsyncDetectorClient",
    "Backoff",
    "ChannelConfig",
    "DetectorClient",
    "FrameResult",
    "FrameStream",
    "ImageItem",
    "LoopClient",
    "RetryPolicy",
    "StreamStats",
    "SyncFrameStream",
    "create_aio_channel",
    "create_channel",
    "detect_options",
    "robot_channel_config",
    "to_image",
]
