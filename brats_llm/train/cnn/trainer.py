"""The ``train-cnn`` stage: train the paper's classifier or segmenter on one or all folds."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from brats_llm import atomic
from brats_llm.determinism import configure
from brats_llm.errors import InputError
from brats_llm.metrics.classification import roc_auc
from brats_llm.metrics.segmentation import dice
from brats_llm.ranks import launched
from brats_llm.split.splits import oversample_indices, read_splits
from brats_llm.train.cnn.data import TARGETS, VolumeTensors, fold_patients, load_split, require_grades
from brats_llm.train.cnn.models import ARCHITECTURES, build_model, soft_dice_loss
from brats_llm.train.cnn.source import VolumeSource, open_volumes

log = logging.getLogger(__name__)
TASKS = ("cls", "seg")
CHECKPOINT_BEST, CHECKPOINT_LAST = "best.pt", "last.pt"


@dataclass(frozen=True)
class CnnTrainParams:
    """``train_cls`` / ``train_seg`` section of params.yaml (the demo preset; brats_llm/presets/paper.yaml has the paper's).

    Attributes:
        fold: validation fold to train against, or ``"all"`` for every fold of the split file.
        epochs: training epochs.
        batch_size: samples per optimiser step.
        lr: learning rate.
        optimizer: ``adamw`` or ``adam``.
        weight_decay: decoupled weight decay (AdamW) or L2 (Adam).
        downsample: average-pool the (4, 95, 128, 128) input by this factor first (1 = paper).
        oversample_lgg: balance the training batches by drawing LGG patients again.
        augment: random flips and in-plane shifts of training samples.
        checkpoint_every: write ``last.pt`` every N epochs (and at the end) for ``--resume``.
        seed: seed of initialisation and batch order.
        threads: intra-op CPU threads; fixed (not taken from the machine) so a run is byte-reproducible.
    """

    fold: int | str = 0
    epochs: int = 40
    batch_size: int = 8
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    downsample: int = 4
    oversample_lgg: bool = True
    augment: bool = True
    checkpoint_every: int = 10
    seed: int = 2020
    threads: int = 2

    def __post_init__(self) -> None:
        if not (self.fold == "all" or (isinstance(self.fold, int) and self.fold >= 0)):
            raise ValueError(f"fold must be a fold number or 'all', got {self.fold!r}")
        if self.optimizer not in ("adamw", "adam"):
            raise ValueError(f"optimizer must be 'adamw' or 'adam', got {self.optimizer!r}")
        for name in ("epochs", "batch_size", "downsample", "checkpoint_every", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class SegTrainParams(CnnTrainParams):
    """``train_seg`` section: :class:`CnnTrainParams` plus the segmenter's target and architecture.

    Attributes:
        target: ``wt`` (the paper's whole tumour, one sigmoid output) or ``regions`` (three sigmoid
            outputs WT, TC, ET from the dataset's ``regions`` column, as BraTS models do).
        architecture: ``paper`` (the paper's 3D CNN), ``segresnet`` or ``unet`` (MONAI; same loop and metrics).
        width: SegResNet / UNet filters at the first level (demo 8; brats_llm/presets/paper.yaml 16).
        levels: SegResNet / UNet resolution levels (demo 3; paper preset 4). Both ignored by ``paper``.
    """

    batch_size: int = 4
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    target: str = "wt"
    architecture: str = "paper"
    width: int = 8
    levels: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if self.levels < 2:
            raise ValueError(f"levels must be >= 2, got {self.levels}")


class Distributed:
    """Single process, or one rank of ``torchrun`` / ``accelerate launch`` (DDP over gloo or nccl)."""

    def __init__(self) -> None:
        self.ranks = launched()
        self.world, self.rank = self.ranks.world, self.ranks.rank
        if torch.cuda.is_available():
            self.device = torch.device("cuda", self.ranks.local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.ranks.main

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.world == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def shard(self, order: np.ndarray) -> np.ndarray:
        """This rank's share of an epoch's sample order (padded so every rank takes equal steps)."""
        if self.world == 1:
            return order
        padded = np.resize(order, int(np.ceil(len(order) / self.world)) * self.world)
        return padded[self.rank :: self.world]

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return float(tensor.item() / self.world)

    def barrier(self) -> None:
        self.ranks.barrier()


def augment_batch(images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: flip left-right and/or anterior-posterior (p = 1/2 each) and shift in-plane by up
    to 1/8 of the size (the brain sits in a zero background, so the wrap-around is background)."""
    images, masks = images.clone(), masks.clone()  # indexing already copied; keep callers' tensors intact
    rows, cols = images.shape[-2:]
    for i in range(images.shape[0]):
        dims = [d for d in (-1, -2) if rng.random() < 0.5]
        shift = (int(rng.integers(-rows // 8, rows // 8 + 1)), int(rng.integers(-cols // 8, cols // 8 + 1)))
        image, mask = images[i], masks[i]
        if dims:
            image, mask = image.flip(dims), mask.flip(dims)
        images[i] = image.roll(shift, dims=(-2, -1))
        masks[i] = mask.roll(shift, dims=(-2, -1))
    return images, masks


def model_options(task: str, params: dict[str, Any]) -> dict[str, Any]:
    """``build_model`` keywords from a checkpoint's (or CnnTrainParams') params; old checkpoints = paper, wt."""
    if task != "seg":
        return {}
    return {"architecture": params.get("architecture", "paper"),
            "out_channels": 3 if params.get("target", "wt") == "regions" else 1,
            "width": params.get("width", 8), "levels": params.get("levels", 3)}


def _loss(task: str, logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if task == "cls":
        return nn.functional.binary_cross_entropy_with_logits(logits, labels)
    return soft_dice_loss(logits, masks)


@torch.no_grad()
def predict(model: nn.Module, data: VolumeTensors, device: torch.device, batch_size: int) -> np.ndarray:
    """Sigmoid outputs for every row: P(HGG) per patient (cls) or voxel probabilities (seg)."""
    model.eval()
    outputs = []
    for start in range(0, len(data), batch_size):
        images, _, _ = data.batch(np.arange(start, min(start + batch_size, len(data))), device)
        outputs.append(torch.sigmoid(model(images)).float().cpu())
    return torch.cat(outputs).numpy() if outputs else np.empty(0)


def validation_score(task: str, model: nn.Module, data: VolumeTensors, device: torch.device,
                     batch_size: int) -> tuple[float, float]:
    """(loss, selection metric) on validation: AUC for cls (insensitive to class balance), Dice for seg."""
    prob = predict(model, data, device, batch_size)
    if task == "cls":
        p = np.clip(prob, 1e-7, 1 - 1e-7)
        y = data.labels.numpy()
        loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        auc = roc_auc(y, prob)
        return loss, (auc if np.isfinite(auc) else float(np.mean((prob >= 0.5) == y)))
    masks = data.masks.numpy().astype(bool)
    if masks.ndim == 5:  # regions: one Dice per patient and region
        prob, masks = prob.reshape(-1, *prob.shape[2:]), masks.reshape(-1, *masks.shape[2:])
    dices = [dice(p >= 0.5, m) for p, m in zip(prob, masks)]
    soft = [1 - (2 * (p * m).sum() + 1) / (p.sum() + m.sum() + 1) for p, m in zip(prob, masks)]
    return float(np.mean(soft)), float(np.mean(dices))


def _save(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def train_fold(task: str, volumes: VolumeSource, splits_file: Path, fold: int, out_dir: Path, params: CnnTrainParams,
               live_dir: Path | None, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train one fold; write ``best.pt`` (best validation metric) and ``last.pt`` under ``out_dir``."""
    dist = Distributed()
    configure(params.threads, params.seed + fold)
    members = fold_patients(splits_file, fold)
    target = getattr(params, "target", "wt") if task == "seg" else "wt"
    train = load_split(volumes, members["train"], params.downsample, progress, target)
    val = load_split(volumes, members["validation"], params.downsample, progress, target)
    model = build_model(task, train.in_shape, **model_options(task, dataclasses.asdict(params))).to(dist.device)
    net = dist.wrap(model)
    optimizer_cls = torch.optim.AdamW if params.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_cls(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    meta = {
        "task": task, "fold": fold, "in_shape": list(train.in_shape), "params": dataclasses.asdict(params),
        "dataset": volumes.version, "train_patients": members["train"],
        "validation_patients": members["validation"],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    start_epoch, best = 0, {"metric": -np.inf, "loss": np.inf, "epoch": -1}
    if resume and (out_dir / CHECKPOINT_LAST).is_file():
        state = torch.load(out_dir / CHECKPOINT_LAST, map_location=dist.device, weights_only=True)
        if state["meta"]["dataset"] != meta["dataset"]:
            raise InputError(f"{out_dir / CHECKPOINT_LAST} was trained on {state['meta']['dataset']}, not on "
                             f"{meta['dataset']}: --resume needs the same data (train from scratch without it)")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best = state["epoch"], state["best"]
        torch.set_rng_state(state["rng"])
        log.info("resumed fold %d from epoch %d", fold, start_epoch)

    live = None
    if dist.main and live_dir is not None:
        from dvclive import Live

        live = Live(str(live_dir / f"fold{fold}"), resume=resume and start_epoch > 0, save_dvc_exp=False, dvcyaml=None)
    labels = train.labels.numpy()
    timings = {"data_s": 0.0, "compute_s": 0.0}
    bar = tqdm(range(start_epoch, params.epochs), desc=f"train {task} fold {fold}", unit="epoch",
               disable=not (progress and dist.main), initial=start_epoch, total=params.epochs)
    for epoch in bar:
        net.train()
        rng = np.random.default_rng([params.seed, fold, epoch])
        order = oversample_indices(labels, int(rng.integers(2**31))) if params.oversample_lgg else rng.permutation(len(train))
        order = dist.shard(order)
        losses = []
        for start in range(0, len(order), params.batch_size):
            t0 = time.perf_counter()
            augment = (lambda im, ma: augment_batch(im, ma, rng)) if params.augment else None
            images, masks, batch_labels = train.batch(order[start : start + params.batch_size], dist.device, augment)
            t1 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = _loss(task, net(images), masks, batch_labels)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.item()))
            timings["data_s"] += t1 - t0
            timings["compute_s"] += time.perf_counter() - t1
        train_loss = dist.mean(float(np.mean(losses)))
        val_loss, val_metric = validation_score(task, model, val, dist.device, params.batch_size)
        # Best = highest validation metric; ties (common for AUC on few patients) go to lower loss.
        improved = val_metric > best["metric"] or (val_metric == best["metric"] and val_loss < best["loss"])
        if improved:
            best = {"metric": float(val_metric), "loss": float(val_loss), "epoch": epoch + 1}
        if dist.main:
            bar.set_postfix(train_loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}", val_metric=f"{val_metric:.3f}")
            if live is not None:
                live.log_metric("train/loss", train_loss)
                live.log_metric("validation/loss", val_loss)
                live.log_metric(f"validation/{'auc' if task == 'cls' else 'dice'}", val_metric)
                live.next_step()
            if improved:
                _save(out_dir / CHECKPOINT_BEST, {"model": model.state_dict(), "epoch": epoch + 1, "meta": meta,
                                                  "best": best})
            if (epoch + 1) % params.checkpoint_every == 0 or epoch + 1 == params.epochs:
                _save(out_dir / CHECKPOINT_LAST, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                                  "epoch": epoch + 1, "best": best, "rng": torch.get_rng_state(),
                                                  "meta": meta})
        dist.barrier()
    if live is not None:
        live.end()
    summary = {"fold": fold, "best_epoch": best["epoch"], "best_validation_metric": best["metric"], **timings}
    if dist.main:  # timings are reported, not stored: the model folder is then byte-reproducible
        stored = {k: v for k, v in summary.items() if k not in timings}
        atomic.write_json(out_dir / "train_summary.json", {**stored, "meta": meta})
    return summary


def train_cnn(task: str, volumes: str | os.PathLike, splits_file: str | os.PathLike, out_dir: str | os.PathLike,
              params: CnnTrainParams, live_dir: str | os.PathLike | None = None, *, resume: bool = False,
              progress: bool = True) -> list[dict[str, Any]]:
    """Train ``task`` (``cls`` or ``seg``) on the chosen fold(s); one sub-folder ``fold<k>`` per fold.

    ``volumes``: a revision file written by publish (the pinned ``volumes`` config, local or Hub) or a
    volumes dataset folder; the checkpoints' ``meta.dataset`` names it (revision, or fingerprint).

    Returns:
        Per fold: best epoch, best validation metric and the seconds spent on data vs compute.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    out_dir, splits_file, source = Path(out_dir), Path(splits_file), open_volumes(volumes)
    if task == "cls":
        require_grades(source)  # hook: releases without grades cannot train the classifier
    folds = sorted({a.fold for a in read_splits(splits_file) if a.fold >= 0})
    chosen = folds if params.fold == "all" else [params.fold]
    unknown = set(chosen) - set(folds)
    if unknown:
        raise InputError(f"{splits_file}: fold(s) {sorted(unknown)} not in the split (folds {folds})")
    live = Path(live_dir) if live_dir is not None else None
    with contextlib.ExitStack() as claims:
        if launched().main:  # rank 0 writes the fold folders; refuse foreign ones up front
            for fold in chosen:
                claims.enter_context(atomic.owned_dir(out_dir / f"fold{fold}", kind="cnn-model"))
        return [train_fold(task, source, splits_file, fold, out_dir / f"fold{fold}", params, live,
                           resume=resume, progress=progress) for fold in chosen]
