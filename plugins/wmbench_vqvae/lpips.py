"""LPIPS perceptual distance (Zhang et al. 2018) on VGG16 features, loaded from a local file only.

The file is a ``torch.save`` of this module's ``state_dict()``: the scaling constants, the VGG16 convolutions
(``net.slice{1..5}.{index}.weight/bias``, indices as in ``torchvision.models.vgg16().features``) and the five
linear heads (``lin{0..4}.model.1.weight``). These are the names the reference uses under ``tokenizer.lpips.``,
so a reference checkpoint trained with LPIPS can be given too: keys under that prefix are taken from it.
torchvision is imported only here, when LPIPS is used.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from wmbench.errors import WmbenchError
from wmbench.plugins import import_module

CHANNELS = (64, 128, 256, 512, 512)
SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
"""``vgg16().features`` index ranges ending at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3."""
CHECKPOINT_PREFIX = "tokenizer.lpips."


class ScalingLayer(nn.Module):
    """Maps [-1, 1] inputs to the ImageNet-normalised range VGG expects."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class VGG16Slices(nn.Module):
    """VGG16 conv features, returned after each of the five relu stages.

    Built on the meta device (the classifier, 120M parameters, is never materialised); with ``init`` the
    convolutions are then allocated on the CPU with PyTorch's default initialisation, else they stay
    meta until a state dict is loaded with ``assign=True``.
    """

    def __init__(self, init: bool = True) -> None:
        super().__init__()
        vgg16 = import_module("torchvision.models").vgg16
        with torch.device("meta"):
            features = vgg16(weights=None).features
        for n, (start, stop) in enumerate(SLICES, start=1):
            part = nn.Sequential()
            for index in range(start, stop):
                part.add_module(str(index), features[index])
            setattr(self, f"slice{n}", part)
        if init:
            self.to_empty(device="cpu")
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    module.reset_parameters()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for n in range(1, len(SLICES) + 1):
            x = getattr(self, f"slice{n}")(x)
            out.append(x)
        return out


class NetLinLayer(nn.Module):
    """A 1x1 conv without bias weighting channel-wise squared feature differences (dropout as the reference)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _unit(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """Perceptual distance ``[B, 1, 1, 1]`` between two image batches in [-1, 1].

    ``init=False`` leaves the VGG weights unallocated (meta), for loading with ``assign=True``.
    """

    def __init__(self, init: bool = True) -> None:
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = VGG16Slices(init=init)
        for n, channels in enumerate(CHANNELS):
            setattr(self, f"lin{n}", NetLinLayer(channels))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        feats_a, feats_b = self.net(self.scaling_layer(a)), self.net(self.scaling_layer(b))
        total = 0.0
        for n, (fa, fb) in enumerate(zip(feats_a, feats_b)):
            diff = (_unit(fa) - _unit(fb)).pow(2)
            total = total + getattr(self, f"lin{n}")(diff).mean(dim=(2, 3), keepdim=True)
        return total


def load_lpips(path: str) -> LPIPS:
    """A frozen LPIPS in eval mode from a local file; a missing or unusable file is a WmbenchError."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise WmbenchError(f"vqvae lpips_weights: no such file {str(file)!r}")
    try:
        state = torch.load(file, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise WmbenchError(f"vqvae lpips_weights: cannot read {str(file)!r} ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise WmbenchError(f"vqvae lpips_weights: {str(file)!r} holds a {type(state).__name__}, not a state dict")
    if any(isinstance(k, str) and k.startswith(CHECKPOINT_PREFIX) for k in state):
        state = {k[len(CHECKPOINT_PREFIX) :]: v for k, v in state.items() if k.startswith(CHECKPOINT_PREFIX)}
    model = LPIPS(init=False)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        if len(detail) > 300:
            detail = detail[:300] + "..."
        raise WmbenchError(f"vqvae lpips_weights: {str(file)!r} is not an LPIPS state dict ({detail})") from exc
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):  # pragma: no cover - strict load fills all
        raise WmbenchError(f"vqvae lpips_weights: {str(file)!r} left some LPIPS weights unset")
    model.eval()
    model.requires_grad_(False)
    return model
