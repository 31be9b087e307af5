"""The paper's 3D CNNs, with the input shape taken from the data rather than hard-coded."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from brats_llm.errors import InputError


class GradeClassifier3D(nn.Module):
    """Conv3d 8 -> ReLU -> MaxPool 2 -> Conv3d 16 -> ReLU -> MaxPool 2 -> FC 128 -> ReLU -> FC 1.

    Returns the logit of HGG; ``torch.sigmoid`` gives the paper's sigmoid output (training uses
    ``BCEWithLogitsLoss``, the numerically stable form of sigmoid + BCE).

    Args:
        in_shape: (channels, slices, rows, cols) of one input, e.g. (4, 95, 128, 128).
    """

    def __init__(self, in_shape: tuple[int, int, int, int]):
        super().__init__()
        channels, *spatial = in_shape
        self.in_shape = tuple(in_shape)
        self.features = nn.Sequential(
            nn.Conv3d(channels, 8, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=2, stride=2),
            nn.Conv3d(8, 16, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=2, stride=2),
        )
        flat = 16 * math.prod(size // 4 for size in spatial)
        if flat == 0:
            raise InputError(f"input {in_shape} is too small for two 2x poolings")
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 128), nn.ReLU(inplace=True), nn.Linear(128, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


class Segmenter3D(nn.Module):
    """Conv3d 16 -> MaxPool -> Conv3d 32 -> MaxPool -> Conv3d 64 -> 2 ConvTranspose3d -> Conv3d 1.

    ReLU after each conv/deconv; returns logits of "glioma present" with the input's spatial shape
    (odd sizes such as 95 slices are restored through ``output_size`` of the transposed convs):
    (N, D, H, W) for one output, (N, out_channels, D, H, W) for several (the regions WT, TC, ET).
    """

    def __init__(self, in_shape: tuple[int, int, int, int], out_channels: int = 1):
        super().__init__()
        channels = in_shape[0]
        self.in_shape = tuple(in_shape)
        self.out_channels = out_channels
        self.enc1 = nn.Conv3d(channels, 16, kernel_size=3, stride=1, padding=1)
        self.enc2 = nn.Conv3d(16, 32, kernel_size=3, stride=1, padding=1)
        self.bottleneck = nn.Conv3d(32, 64, kernel_size=3, stride=1, padding=1)
        self.up1 = nn.ConvTranspose3d(64, 32, kernel_size=2, stride=2)
        self.up2 = nn.ConvTranspose3d(32, 16, kernel_size=2, stride=2)
        self.out = nn.Conv3d(16, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = x.shape[2:]
        x = F.relu(self.enc1(x))
        x = F.max_pool3d(x, 2)
        half = x.shape[2:]
        x = F.relu(self.enc2(x))
        x = F.max_pool3d(x, 2)
        x = F.relu(self.bottleneck(x))
        x = F.relu(self.up1(x, output_size=half))
        x = F.relu(self.up2(x, output_size=full))
        out = self.out(x)
        return out.squeeze(1) if self.out_channels == 1 else out


#: Segmenter architectures (``train_seg.architecture``).
ARCHITECTURES = ("paper", "segresnet", "unet")


class PaddedNet(nn.Module):
    """Zero-pad (D, H, W) up to a multiple of ``multiple`` for a net that halves them, crop the output back.

    Output like :class:`Segmenter3D`: (N, D, H, W) for one channel, (N, C, D, H, W) for several.
    """

    def __init__(self, net: nn.Module, multiple: int, out_channels: int):
        super().__init__()
        self.net, self.multiple, self.out_channels = net, multiple, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        pad = [(-n) % self.multiple for n in size]
        if any(pad):
            x = F.pad(x, [p for amount in reversed(pad) for p in (0, amount)])
        out = self.net(x)[:, :, : size[0], : size[1], : size[2]]
        return out.squeeze(1) if self.out_channels == 1 else out


def monai_segmenter(architecture: str, in_channels: int, out_channels: int, width: int, levels: int) -> nn.Module:
    """MONAI's SegResNet or UNet with ``levels`` resolutions and ``width`` filters at the first.

    SegResNet: ``init_filters=width``, ``blocks_down`` the first ``levels`` of (1, 2, 2, 4) (BraTS setting),
    one up block per level, GroupNorm with 8 groups (fewer when ``width`` is not a multiple of 8). UNet: channels ``width * 2**i``, stride-2 steps, 2 residual units per layer.
    """
    if levels < 2:
        raise InputError(f"{architecture} needs levels >= 2, got {levels}")
    if architecture == "segresnet":
        from monai.networks.nets import SegResNet

        blocks_down = tuple((1, 2, 2, 4, 4, 4)[:levels])
        net: nn.Module = SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                                   init_filters=width, blocks_down=blocks_down, blocks_up=(1,) * (levels - 1),
                                   norm=("GROUP", {"num_groups": math.gcd(8, width)}))  # 8 groups unless width is smaller
    elif architecture == "unet":
        from monai.networks.nets import UNet

        net = UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                   channels=tuple(width * 2**i for i in range(levels)), strides=(2,) * (levels - 1), num_res_units=2)
    else:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    return PaddedNet(net, 2 ** (levels - 1), out_channels)


def build_model(task: str, in_shape: tuple[int, int, int, int], *, architecture: str = "paper", out_channels: int = 1,
                width: int = 8, levels: int = 3) -> nn.Module:
    """``cls`` -> :class:`GradeClassifier3D`; ``seg`` -> :class:`Segmenter3D` (``architecture`` paper) or
    MONAI's SegResNet / UNet (:func:`monai_segmenter`) with ``out_channels`` sigmoid outputs."""
    if task == "cls":
        return GradeClassifier3D(in_shape)
    if task == "seg":
        if architecture == "paper":
            return Segmenter3D(in_shape, out_channels)
        return monai_segmenter(architecture, in_shape[0], out_channels, width, levels)
    raise ValueError(f"task must be 'cls' or 'seg', got {task!r}")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per sample and channel (sigmoid probabilities), averaged.

    ``logits`` and ``target``: (N, D, H, W) for one output, (N, C, D, H, W) for one Dice per region.
    """
    if logits.ndim == 5:
        logits, target = logits.flatten(0, 1), target.flatten(0, 1)
    prob = torch.sigmoid(logits).flatten(1)
    target = target.float().flatten(1)
    intersection = (prob * target).sum(1)
    return (1 - (2 * intersection + eps) / (prob.sum(1) + target.sum(1) + eps)).mean()
