"""Convolutional encoder and decoder of the IRIS VQ autoencoder (taming-transformers style, no time embedding).

Module names follow the reference so that its checkpoints load as they are: ``conv_in``, ``down.{i}.block.{j}``,
``down.{i}.attn.{j}``, ``down.{i}.downsample``, ``mid.block_1`` / ``mid.attn_1`` / ``mid.block_2``, ``norm_out``,
``conv_out`` (and ``up.{i}...`` in the decoder, indexed by level, finest level 0). Without a gradient on the CPU
the maps are channels-last inside the nets (see :func:`inference_layout`); inputs and outputs are always NCHW.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def swish(x: torch.Tensor) -> torch.Tensor:
    """SiLU; in place when no gradient is recorded (decoding in imagination), which saves a copy of every map."""
    return F.silu(x, inplace=not torch.is_grad_enabled())


def inference_layout(x: torch.Tensor) -> torch.Tensor:
    """Channels-last maps on the CPU when no gradient is recorded: oneDNN runs these convolutions faster that way
    (decoding 8 frames about 15% faster at the iris preset); with a gradient, NCHW trains faster."""
    if x.is_cpu and not torch.is_grad_enabled():
        return x.contiguous(memory_format=torch.channels_last)
    return x


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups (the reference), or the largest divisor of 32 that divides ``channels``."""
    return nn.GroupNorm(num_groups=math.gcd(32, channels), num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """norm -> swish -> conv3x3 -> norm -> swish -> dropout -> conv3x3, plus a (1x1 projected) skip."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all spatial positions, with 1x1 conv projections and a residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x).flatten(2).transpose(1, 2)  # [b, hw, c]: a view of channels-last maps
        q, k, v = (_pointwise(conv, y) for conv in (self.q, self.k, self.v))
        out = _pointwise(self.proj_out, F.scaled_dot_product_attention(q, k, v))  # softmax(q k^T / sqrt(c)) v
        return x + out.transpose(1, 2).unflatten(2, x.shape[2:])


def _pointwise(conv: nn.Conv2d, tokens: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied to ``[b, hw, c]`` tokens, as the linear layer it is."""
    return F.linear(tokens, conv.weight.flatten(1), conv.bias)


class Downsample(nn.Module):
    """Halves the resolution: pad right/bottom by one, then a stride-2 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Doubles the resolution: nearest-neighbour interpolation, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Mid(nn.Module):
    """ResnetBlock, AttnBlock, ResnetBlock at the coarsest resolution."""

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution level: residual blocks, each followed by attention where the level has it."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, with_attn: bool, dropout: float):
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()
        for j in range(num_blocks):
            self.block.append(ResnetBlock(in_channels if j == 0 else out_channels, out_channels, dropout))
            if with_attn:
                self.attn.append(AttnBlock(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for j, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[j](x)
        return x


class Encoder(nn.Module):
    """Frames ``[B, 3, R, R]`` in [-1, 1] to latents ``[B, z_channels, R / 2**(L-1), R / 2**(L-1)]``."""

    def __init__(
        self,
        resolution: int,
        ch: int,
        ch_mult: tuple[int, ...],
        num_res_blocks: int,
        attn_resolutions: tuple[int, ...],
        z_channels: int,
        dropout: float,
        in_channels: int = 3,
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        in_mult = (1, *ch_mult)
        res = resolution
        self.down = nn.ModuleList()
        for i, mult in enumerate(ch_mult):
            level = Level(ch * in_mult[i], ch * mult, num_res_blocks, res in attn_resolutions, dropout)
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(ch * mult)
                res //= 2
            self.down.append(level)
        block_in = ch * ch_mult[-1]
        self.mid = Mid(block_in, dropout)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(inference_layout(x))
        for level in self.down:
            h = level(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(swish(self.norm_out(h))).contiguous()


class Decoder(nn.Module):
    """Latents ``[B, z_channels, r, r]`` to frames ``[B, 3, r * 2**(L-1), r * 2**(L-1)]`` in about [-1, 1]."""

    def __init__(
        self,
        resolution: int,
        ch: int,
        ch_mult: tuple[int, ...],
        num_res_blocks: int,
        attn_resolutions: tuple[int, ...],
        z_channels: int,
        dropout: float,
        out_channels: int = 3,
    ):
        super().__init__()
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = Mid(block_in, dropout)
        levels: list[Level] = []
        for i in reversed(range(len(ch_mult))):
            block_out = ch * ch_mult[i]
            level = Level(block_in, block_out, num_res_blocks + 1, res in attn_resolutions, dropout)
            block_in = block_out
            if i != 0:
                level.upsample = Upsample(block_in)
                res *= 2
            levels.insert(0, level)  # up[i] is level i, finest first, as in the reference
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(inference_layout(z)))
        for level in reversed(self.up):
            h = level(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h))).contiguous()
