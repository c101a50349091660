"""One frame of play at a time, the same in the window and headless: keys in, the view out.

Commands act on the frame their key is pressed; action keys count while held. In save-mode every episode is
recorded, and at its end play waits for ``y`` (keep it) or ``n``.
"""

from __future__ import annotations

import numpy as np

from wmbench.play.controls import COMMANDS, HELP, Controls
from wmbench.play.recording import Recorder, Segment
from wmbench.play.session import Frame
from wmbench.play.views import compose

SPEEDS = (1, 2, 4, 8, 15, 30, 60, 120)


class Player:
    def __init__(self, session, controls: Controls, recorder: Recorder, save_mode: bool, fps: int):
        self.session, self.controls, self.recorder, self.save_mode = session, controls, recorder, save_mode
        self.fps = min(SPEEDS, key=lambda s: abs(s - fps))
        self.paused = self.asking = self.quit = False
        self.episode: Segment | None = None
        self.help = (controls.help(), HELP) if session.human else (HELP,)
        self.frame = self._reset()

    def _reset(self) -> Frame:
        frame = self.session.reset()
        self.episode = Segment() if self.save_mode else None
        self._keep(frame)
        return frame

    def _keep(self, frame: Frame) -> np.ndarray:
        view = compose(frame, self.session.mode, self.status(), self.help)
        self.recorder.add(view, frame)
        if self.episode is not None:
            self.episode.add(view, frame)
        return view

    def status(self) -> str:
        parts = [f"{self.fps} fps"]
        parts += ["PAUSED"] if self.paused else []
        parts += ["REC"] if self.recorder.segment is not None else []
        parts += ["episode over: keep it? y/n"] if self.asking else []
        return "  ".join(parts)

    def _command(self, command: str) -> bool:
        """Apply a command; True when it asks for a single step."""
        if self.asking and command in ("yes", "no"):
            if command == "yes":
                self.recorder.save(self.episode)
            self.asking = False
            self.frame = self._reset()
        elif command == "pause":
            self.paused = not self.paused
        elif command == "step":
            return True
        elif command == "reset":
            self.asking = False
            self.frame = self._reset()
        elif command in ("faster", "slower"):
            i = SPEEDS.index(self.fps) + (1 if command == "faster" else -1)
            self.fps = SPEEDS[min(max(i, 0), len(SPEEDS) - 1)]
        elif command == "record":
            self.recorder.toggle()
        elif command == "quit":
            self.quit = True
        return False

    def tick(self, pressed: list[str], held: set[str]) -> np.ndarray:
        """Handle the keys pressed since the last frame, advance one step unless paused, and return the view."""
        single = False
        for key in pressed:
            if key in COMMANDS:
                single |= self._command(COMMANDS[key])
        if self.quit or self.asking or (self.paused and not single):
            return compose(self.frame, self.session.mode, self.status(), self.help)
        if self.frame.done:
            self.frame = self._reset()
            return compose(self.frame, self.session.mode, self.status(), self.help)
        self.frame = self.session.step(self.controls.action(held) if self.session.human else None)
        if self.frame.done and self.save_mode:
            self.asking = True
        return self._keep(self.frame)

    def close(self) -> None:
        self.recorder.close()
