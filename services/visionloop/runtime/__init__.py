"""The runtime every VisionLoop service shares: server bootstrap, config, logging, auth, metrics, shutdown."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("visionloop")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+local"
