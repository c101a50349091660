"""wmbench: which transformer backbone makes the best world model? An IRIS harness with pluggable seams."""

from importlib import metadata

try:
    __version__ = metadata.version("wmbench")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
