"""The picture of one step: three panels (original frame, the frame at the tokenizer's size, its reconstruction)
under a header (step, reward, return, action, the world model's predicted reward and episode-end probability)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from wmbench.play.session import Frame

PANEL = 192
"""Each panel is scaled (nearest) to this many pixels high."""
HEADER = 44
GAP = 4
LABELS = ("original", "tokenizer input", "reconstruction")


def _panel(image: np.ndarray) -> Image.Image:
    h, w = image.shape[:2]
    return Image.fromarray(image).resize((max(1, round(w * PANEL / h)), PANEL), Image.NEAREST)


def _value(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2f}"


def header_lines(frame: Frame, mode: str, status: str = "") -> tuple[str, str]:
    first = f"{mode}  step {frame.step}  reward {frame.reward:+g}  return {frame.ret:+g}  action {frame.action_name}"
    second = f"predicted reward {_value(frame.predicted_reward)}  end {_value(frame.end_probability)}"
    second += f"  {frame.title}" if frame.title else ""
    return first, f"{second}  {status}".rstrip()


def compose(frame: Frame, mode: str, status: str = "", keys: str = "") -> np.ndarray:
    """The view of ``frame`` as ``uint8 [H, W, 3]``; ``status`` (paused, recording, ...) and ``keys`` (the key
    help) are extra header and footer lines. Its size is the same for every step of a session."""
    panels = [_panel(x) for x in (frame.original, frame.frame, frame.reconstruction)]
    width = sum(p.width for p in panels) + GAP * 4
    footer = 16 if keys else 0
    canvas = Image.new("RGB", (width, HEADER + 14 + PANEL + GAP + footer), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, line in enumerate(header_lines(frame, mode, status)):
        draw.text((GAP, 4 + 18 * i), line, fill=(255, 255, 255) if i == 0 else (255, 210, 90), font=font)
    x = GAP
    for label, panel in zip(LABELS, panels):
        draw.text((x, HEADER), label, fill=(160, 200, 255), font=font)
        canvas.paste(panel, (x, HEADER + 14))
        x += panel.width + GAP
    if keys:
        draw.text((GAP, HEADER + 14 + PANEL + GAP), keys, fill=(170, 170, 170), font=font)
    return np.asarray(canvas)
