"""The picture of one step: three panels (original frame, the frame at the tokenizer's size, its reconstruction)
under a header (step, reward, return, action, the world model's predicted reward and episode-end probability)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from wmbench.play.session import Frame

PANEL = 192
"""Each panel is scaled (nearest) to this many pixels high."""
HEADER = 40
GAP = 4
LABELS = ("original", "tokenizer input", "reconstruction")
DREAM_LABELS = ("real start frame", "imagined frame", "its reconstruction")
LINE = 16


def _panel(image: np.ndarray) -> Image.Image:
    h, w = image.shape[:2]
    return Image.fromarray(image).resize((max(1, round(w * PANEL / h)), PANEL), Image.NEAREST)


def _value(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def header_lines(frame: Frame, mode: str, status: str = "") -> tuple[str, str]:
    first = f"{mode}  step {frame.step}  reward {frame.reward:+g}  return {frame.ret:+g}  action {frame.action_name}"
    predicted = "-" if frame.predicted_reward is None else f"{frame.predicted_reward:+.2f}"
    second = f"predicted reward {predicted}  end probability {_value(frame.end_probability)}"
    second += f"  {frame.title}" if frame.title else ""
    return first, f"{second}  {status}".rstrip()


def compose(frame: Frame, mode: str, status: str = "", keys: tuple[str, ...] = ()) -> np.ndarray:
    """The view of ``frame`` as ``uint8 [H, W, 3]``; ``status`` (paused, recording, ...) ends the header, ``keys``
    (the key help) are footer lines. Its size is the same for every step of a session."""
    panels = [_panel(x) for x in (frame.original, frame.frame, frame.reconstruction)]
    top = HEADER + LINE
    size = (sum(p.width for p in panels) + GAP * 4, top + PANEL + GAP + LINE * len(keys))
    # Sides in multiples of 16, as video encoders want them.
    canvas = Image.new("RGB", tuple(-(-side // 16) * 16 for side in size), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=13)
    for i, line in enumerate(header_lines(frame, mode, status)):
        draw.text((GAP, 3 + 18 * i), line, fill=(255, 255, 255) if i == 0 else (255, 210, 90), font=font)
    x = GAP
    for label, panel in zip(DREAM_LABELS if mode.startswith("dream") else LABELS, panels):
        draw.text((x, HEADER), label, fill=(160, 200, 255), font=font)
        canvas.paste(panel, (x, top))
        x += panel.width + GAP
    for i, line in enumerate(keys):
        draw.text((GAP, top + PANEL + GAP + LINE * i), line, fill=(170, 170, 170), font=font)
    return np.asarray(canvas)
