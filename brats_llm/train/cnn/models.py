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
    (odd sizes such as 95 slices are restored through ``output_size`` of the transposed convs).
    """

    def __init__(self, in_shape: tuple[int, int, int, int]):
        super().__init__()
        channels = in_shape[0]
        self.in_shape = tuple(in_shape)
        self.enc1 = nn.Conv3d(channels, 16, kernel_size=3, stride=1, padding=1)
        self.enc2 = nn.Conv3d(16, 32, kernel_size=3, stride=1, padding=1)
        self.bottleneck = nn.Conv3d(32, 64, kernel_size=3, stride=1, padding=1)
        self.up1 = nn.ConvTranspose3d(64, 32, kernel_size=2, stride=2)
        self.up2 = nn.ConvTranspose3d(32, 16, kernel_size=2, stride=2)
        self.out = nn.Conv3d(16, 1, kernel_size=1)

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
        return self.out(x).squeeze(1)


def build_model(task: str, in_shape: tuple[int, int, int, int]) -> nn.Module:
    """``cls`` -> :class:`GradeClassifier3D`, ``seg`` -> :class:`Segmenter3D`."""
    if task == "cls":
        return GradeClassifier3D(in_shape)
    if task == "seg":
        return Segmenter3D(in_shape)
    raise ValueError(f"task must be 'cls' or 'seg', got {task!r}")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per sample (sigmoid probabilities), averaged over the batch."""
    prob = torch.sigmoid(logits).flatten(1)
    target = target.float().flatten(1)
    intersection = (prob * target).sum(1)
    return (1 - (2 * intersection + eps) / (prob.sum(1) + target.sum(1) + eps)).mean()
