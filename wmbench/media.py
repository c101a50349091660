"""Media written during training: reconstruction grids, and episodes (real or imagined) as videos."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F

from wmbench import files
from wmbench.engine.tokenizer import Tokenizer


@torch.no_grad()
def save_reconstructions(path: Path, frames: torch.Tensor, tokenizer: Tokenizer, size: int) -> None:
    """A PNG grid, one row per frame: original | the tokens' grid upscaled | reconstruction."""
    tokenizer.eval()
    tokens = tokenizer.encode(frames)
    side = int(tokenizer.tokens_per_frame**0.5)
    recon = tokenizer.decode(tokens).clamp(0, 1)
    # The "downscaled" column: the original at the token grid's resolution, as the tokenizer sees it per token.
    down = F.interpolate(F.interpolate(frames, size=(side, side), mode="area"), size=(size, size), mode="nearest")
    rows = torch.cat([frames, down, recon], dim=3)
    grid = rows.permute(0, 2, 3, 1).reshape(-1, 3 * size, 3)
    image = (grid.float().cpu().numpy() * 255).round().astype("uint8")
    files.write_bytes(path, iio.imwrite("<bytes>", image, extension=".png"))


def video_suffix() -> str:
    """``.mp4`` where an ffmpeg encoder is installed (``imageio-ffmpeg``), else ``.gif``."""
    return ".mp4" if importlib.util.find_spec("imageio_ffmpeg") else ".gif"


def save_video(path: Path, frames: np.ndarray | torch.Tensor, fps: int = 15) -> Path:
    """Frames ``uint8 [T, H, W, 3]`` (or float ``[T, 3, H, W]`` in [0, 1]) as a video at ``path`` with the
    suffix of :func:`video_suffix`, upscaled (nearest) to at least 128 pixels; returns the path written."""
    if isinstance(frames, torch.Tensor):
        frames = (frames.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    scale = max(1, -(-128 // frames.shape[1]))
    frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    path = path.with_suffix(video_suffix())
    if path.suffix == ".mp4":
        data = iio.imwrite("<bytes>", frames, extension=".mp4", fps=fps)
    else:
        data = iio.imwrite("<bytes>", frames, extension=".gif", duration=1000 / fps, loop=0)
    files.write_bytes(path, data)
    return path
