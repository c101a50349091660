"""Recording: segments of play saved under ``media/recordings/`` as a video of the views (mp4, GIF without
ffmpeg) and an ``.npz`` of the frames, actions and rewards."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wmbench import files
from wmbench.media import save_video
from wmbench.play.session import Frame


@dataclass
class Segment:
    views: list[np.ndarray] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)

    def add(self, view: np.ndarray, frame: Frame) -> None:
        self.views.append(view)
        self.frames.append(frame.frame)
        self.actions.append(-1 if frame.action is None else frame.action)
        self.rewards.append(frame.reward)


class Recorder:
    """Saves segments as ``<mode>-<time>-<n>.mp4`` and ``.npz`` in ``folder``; ``saved`` lists what it wrote."""

    def __init__(self, folder: Path, mode: str, fps: int):
        self.folder, self.mode, self.fps = folder, mode, fps
        self.segment: Segment | None = None
        self.saved: list[Path] = []

    def toggle(self) -> None:
        if self.segment is None:
            self.segment = Segment()
        else:
            self.save(self.segment)
            self.segment = None

    def add(self, view: np.ndarray, frame: Frame) -> None:
        if self.segment is not None:
            self.segment.add(view, frame)

    def save(self, segment: Segment) -> None:
        if not segment.views:
            return
        stem = self.folder / f"{self.mode}-{time.strftime('%Y%m%d-%H%M%S')}-{len(self.saved) // 2:03d}"
        self.saved.append(save_video(stem, np.stack(segment.views), fps=self.fps))
        buffer = io.BytesIO()
        # Actions are -1 where none was taken (a first frame, a replay without actions).
        np.savez_compressed(
            buffer,
            frames=np.stack(segment.frames),
            actions=np.array(segment.actions),
            rewards=np.array(segment.rewards, dtype=np.float32),
        )
        files.write_bytes(stem.with_suffix(".npz"), buffer.getvalue())
        self.saved.append(stem.with_suffix(".npz"))

    def close(self) -> None:
        """Save the segment being recorded, if any."""
        if self.segment is not None:
            self.toggle()
