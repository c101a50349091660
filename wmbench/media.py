"""Images written during training: reconstruction grids."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
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
