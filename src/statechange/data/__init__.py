"""Data side: the ChangeIt-format dataset index, 1-fps decoding, the frame cache, augmentation and
the synthetic ChangeIt-format video generator."""

from __future__ import annotations

__all__ = ["decode_video"]


def __getattr__(name: str):  # imported on first use, so importing statechange.data.index does not load FFmpeg
    if name == "decode_video":
        from statechange.data.decode import decode_video

        return decode_video
    raise AttributeError(f"module 'statechange.data' has no attribute {name!r}")
