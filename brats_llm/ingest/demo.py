"""Synthetic BraTS 2020-layout cohort (the embedded default): brain phantoms with graded gliomas."""

from __future__ import annotations

import csv
import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from brats_llm import atomic
from brats_llm.config import at_least
from brats_llm.parallel import process_context
from brats_llm.constants import (
    BRATS_SHAPE,
    GRADES,
    LABEL_EDEMA,
    LABEL_ENHANCING,
    LABEL_NCR_NET,
    MASK_SUFFIX,
    MODALITIES,
)
from brats_llm.ingest.layouts.brats2020 import MAPPING_FILE, MAPPING_GRADE_COLUMN, MAPPING_ID_COLUMN

#: Columns of the real BraTS 2020 ``name_mapping.csv`` (others than id and grade are left "NA").
MAPPING_COLUMNS = (
    MAPPING_GRADE_COLUMN,
    "BraTS_2017_subject_ID",
    "BraTS_2018_subject_ID",
    "TCGA_TCIA_subject_ID",
    "BraTS_2019_subject_ID",
    MAPPING_ID_COLUMN,
)
CASE_PREFIX = "BraTS20_Training_"

# Relative signal of each tissue per modality (columns follow MODALITIES: flair, t1, t1ce, t2).
# Chosen to mimic clinical contrasts: CSF dark on FLAIR/T1 and bright on T2; oedema bright on
# FLAIR/T2; enhancing tumour bright on T1ce only; necrosis dark on T1/T1ce/FLAIR, bright on T2.
TISSUE_SIGNAL = {
    "wm": (0.55, 0.90, 0.90, 0.45),
    "gm": (0.70, 0.65, 0.65, 0.65),
    "csf": (0.12, 0.22, 0.22, 1.00),
    "edema": (1.00, 0.50, 0.50, 0.90),
    "necrosis": (0.55, 0.25, 0.25, 1.10),
    "enhancing": (0.80, 0.60, 1.90, 0.75),
    "nonenhancing": (0.95, 0.42, 0.42, 0.95),
}
#: Whole-tumour (oedema border) radius in mm: one range for both grades, so size does not give the grade away.
TUMOUR_RADIUS_MM = (13.0, 27.0)
#: Tumour core (labels 1 and 4) outer border as a fraction of the whole-tumour radius: the range the latent
#: aggressiveness maps onto (aggressive tumours: a large core, little oedema).
CORE_FRACTION = (0.35, 0.70)
#: Latent "aggressiveness" z thresholds: an enhancing rim when z > 0, a necrotic core when z > this.
NECROSIS_THRESHOLD = 0.4
#: At difficulty d, a share LABEL_NOISE * d of cases draws its phenotype from the other grade.
LABEL_NOISE = 0.1
NOISE_SIGMA = 0.025
BIAS_AMPLITUDE = 0.12
#: Global in-brain intensity per modality after scanner scaling: mean and coefficient of variation,
#: drawn per case from these ranges whatever the grade (the tumour cannot shift them).
SCANNER_MEAN = (250.0, 550.0)
SCANNER_CV = (0.25, 0.31)  # the phantoms' own in-brain CV is about 0.27-0.29 in every modality


@dataclass(frozen=True)
class DemoParams:
    """``demo`` section of params.yaml: size, seed and difficulty of the synthetic cohort.

    Attributes:
        patients: number of cases.
        seed: master seed; case ``n`` uses the stream ``(seed, n)`` so results do not depend on workers.
        lgg_fraction: share of LGG cases (BraTS 2020: 76/369 = 0.21).
        shape: volume shape in voxels (i, j, k); the real geometry by default.
        difficulty: overlap of the grades' tumour phenotypes, in [0, 1]. Each case draws a latent
            aggressiveness ``z = s * (1 - difficulty) + difficulty * N(0, 1)`` with ``s`` = +1 (HGG) or
            -1 (LGG), flipped for a share ``0.1 * difficulty`` of cases (label noise). ``z`` sets the
            enhancing rim (z > 0), the necrotic core (z > 0.4), the core's share of the tumour, border
            lobulation and core texture.
            0: textbook grades (every HGG enhancing and necrotic, no LGG enhancing); 1: the grade
            cannot be learned. Tumour size and global intensity statistics never depend on the grade.
            0.4 (demo): z separates the grades with AUC about 0.94 (0.98 without the label noise);
            P(enhancing) is 0.90 for HGG and 0.10 for LGG, P(necrotic) 0.66 and 0.03.
    """

    patients: int = 100
    seed: int = 2020
    lgg_fraction: float = 0.2
    shape: tuple[int, int, int] = BRATS_SHAPE
    difficulty: float = 0.4

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))
        at_least(self, 1, "patients")
        at_least(self, 0, "seed")
        if not 0.0 <= self.lgg_fraction <= 1.0:
            raise ValueError("lgg_fraction must lie in [0, 1]")
        if len(self.shape) != 3 or min(self.shape) < 32:
            raise ValueError(f"shape must be 3 sizes >= 32, got {self.shape}")
        if not 0.0 <= self.difficulty <= 1.0:
            raise ValueError(f"difficulty must lie in [0, 1], got {self.difficulty}")


@dataclass(frozen=True)
class Phenotype:
    """The grade-carrying features of one tumour (all drawn from the latent aggressiveness)."""

    enhancing: bool  # a ring of enhancement on T1ce (label 4)
    necrotic: bool  # a necrotic core inside the ring: dark on FLAIR/T1, bright on T2
    core: float  # core (labels 1 and 4) border as a fraction of the whole-tumour radius
    lobulation: float  # amplitude of the fine border perturbation (relative radius)
    heterogeneity: float  # amplitude of the signal texture inside the core (relative signal)


def brats_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """The affine BraTS ships: 1 mm, LPS voxel axes (RAS diag(-1, -1, 1)), origin at voxel (0, j_max, 0)."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[1, 3] = shape[1] - 1
    return affine


def assign_grades(params: DemoParams) -> list[str]:
    """Exactly round(patients * lgg_fraction) LGG cases at seeded random positions."""
    n_lgg = int(round(params.patients * params.lgg_fraction))
    grades = np.array([GRADES[1]] * params.patients, dtype=object)
    chosen = np.random.default_rng([params.seed, 0]).choice(params.patients, size=n_lgg, replace=False)
    grades[chosen] = GRADES[0]
    return grades.tolist()


def draw_phenotype(rng: np.random.Generator, grade: str, difficulty: float) -> Phenotype:
    """The tumour phenotype of one case of ``grade`` (see ``DemoParams.difficulty``); a fixed number of draws."""
    flip, spread = rng.random(), rng.normal()
    core_noise, lobe_noise, texture_noise = rng.normal(0.0, 0.5, 3)
    sign = 1.0 if grade == GRADES[1] else -1.0
    if flip < LABEL_NOISE * difficulty:
        sign = -sign
    z = sign * (1.0 - difficulty) + difficulty * spread
    return Phenotype(
        enhancing=bool(z > 0.0),
        necrotic=bool(z > NECROSIS_THRESHOLD),
        core=float(CORE_FRACTION[0] + (CORE_FRACTION[1] - CORE_FRACTION[0]) * _sigmoid(np.float32(2.0 * z + core_noise))),
        lobulation=float(0.03 + 0.27 * _sigmoid(np.float32(3.0 * z + lobe_noise))),
        heterogeneity=float(0.02 + 0.28 * _sigmoid(np.float32(3.0 * z + texture_noise))),
    )


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], knots: int = 5) -> np.ndarray:
    """Low-frequency noise in [-1, 1] of ``shape`` (cubic upsampling of a coarse random grid)."""
    coarse = rng.uniform(-1.0, 1.0, size=(knots,) * len(shape))
    zoom = [s / knots for s in shape]
    smooth = ndimage.zoom(coarse, zoom, order=3, mode="grid-constant", grid_mode=True, cval=0.0)
    return np.clip(smooth, -1.0, 1.0).astype(np.float32)[tuple(slice(0, s) for s in shape)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.float32(0.5) * (np.float32(1.0) + np.tanh(np.float32(0.5) * x))


def _ellipsoid_radius(shape: tuple[int, ...], offset, centre, radii) -> np.ndarray:
    """Normalised ellipsoid radius (1 on the surface) on a grid whose voxel 0 sits at ``offset``."""
    axes = [(np.arange(n, dtype=np.float32) + o - c) / r for n, o, c, r in zip(shape, offset, centre, radii)]
    return np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2)


def _bands(rng: np.random.Generator, phenotype: Phenotype) -> tuple[tuple[str, int, float], ...]:
    """Compartments as (tissue, label, outer border) bands of the normalised tumour radius, innermost first."""
    core = phenotype.core
    inner = core * rng.uniform(0.35, 0.55)
    if not phenotype.enhancing:
        return (("nonenhancing", LABEL_NCR_NET, core), ("edema", LABEL_EDEMA, 1.0))
    centre = "necrosis" if phenotype.necrotic else "nonenhancing"
    return ((centre, LABEL_NCR_NET, inner), ("enhancing", LABEL_ENHANCING, core), ("edema", LABEL_EDEMA, 1.0))


def _scanner(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    """In-brain values rescaled to a per-case mean and coefficient of variation drawn independently of the grade."""
    mean = rng.uniform(*SCANNER_MEAN)
    std = mean * rng.uniform(*SCANNER_CV)
    centred = (values - values.mean(dtype=np.float64)) / values.std(dtype=np.float64)
    return np.clip(np.rint(mean + std * centred), 1, np.iinfo(np.int16).max).astype(np.int16)


def synthesize_case(rng: np.random.Generator, grade: str, shape: tuple[int, int, int],
                    difficulty: float = 0.0) -> tuple[list[np.ndarray], np.ndarray]:
    """One phantom: four int16 modality volumes and a uint8 BraTS label volume, voxel order (i, j, k).

    The grade shows through the tumour phenotype (``draw_phenotype``): an enhancing rim on T1ce, a
    necrotic core, lobulated borders and a textured core are likelier in HGG, with an overlap set by
    ``difficulty`` (0: textbook grades). Size and in-brain intensity statistics do not depend on the grade.
    All work happens inside the brain's bounding box; the background stays exactly 0.
    """
    phenotype = draw_phenotype(rng, grade, difficulty)
    size = np.array(shape, dtype=float)
    scale = size / np.array(BRATS_SHAPE, dtype=float)
    centre = size * np.array([0.5, 0.5, 0.47]) + rng.uniform(-4, 4, 3) * scale
    radii = size * np.array([0.29, 0.36, 0.36]) * rng.uniform(0.93, 1.07, 3)
    lo = np.maximum(np.floor(centre - radii).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(centre + radii).astype(int) + 2, shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    crop_shape = tuple(int(b - a) for a, b in zip(lo, hi))
    r_brain = _ellipsoid_radius(crop_shape, lo, centre, radii)
    brain = r_brain <= 1.0

    # Tissue fractions with soft borders: GM cortex shell, WM inside, CSF rim and two ventricles.
    gm_fraction = _sigmoid((r_brain - np.float32(0.80)) / np.float32(0.015))
    csf_fraction = _sigmoid((r_brain - np.float32(0.965)) / np.float32(0.008))
    for side in (-1.0, 1.0):
        v_centre = centre + np.array([side * 0.09, -0.08, 0.12]) * radii
        v_radii = np.array([0.07, 0.33, 0.20]) * radii
        r_ventricle = _ellipsoid_radius(crop_shape, lo, v_centre, v_radii)
        csf_fraction = np.maximum(csf_fraction, _sigmoid((np.float32(1.0) - r_ventricle) / np.float32(0.08)))
    gm_fraction *= 1 - csf_fraction
    fractions = {"wm": 1 - gm_fraction - csf_fraction, "gm": gm_fraction, "csf": csf_fraction}

    # Tumour: off-centre, a smoothly perturbed ellipsoid plus a finer lobulation set by the phenotype.
    t_radii = rng.uniform(*TUMOUR_RADIUS_MM) * rng.uniform(0.85, 1.15, 3) * scale
    # Mostly in-plane direction, so axial slices show the tumour away from the image centre.
    azimuth, elevation = rng.uniform(0.0, 2 * np.pi), rng.uniform(-0.5, 0.5)
    direction = np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation), np.sin(elevation)])
    t_centre = centre + direction * rng.uniform(0.25, 0.55) * radii
    t_lo = np.clip(np.floor(t_centre - 1.5 * t_radii).astype(int), lo, hi)
    t_hi = np.clip(np.ceil(t_centre + 1.5 * t_radii).astype(int) + 1, lo, hi)
    box = tuple(slice(a - o, b - o) for a, b, o in zip(t_lo, t_hi, lo))  # inside the crop
    box_shape = tuple(int(v) for v in t_hi - t_lo)
    t = _ellipsoid_radius(box_shape, t_lo, t_centre, t_radii)
    border = np.float32(0.12) * _smooth_noise(rng, box_shape) + np.float32(phenotype.lobulation) * _smooth_noise(rng, box_shape, knots=9)
    t = t / (np.float32(1.0) + border)
    t = np.where(brain[box], t, np.float32(np.inf))

    labels = np.zeros(crop_shape, dtype=np.uint8)
    box_labels = labels[box]
    band_fractions = {}
    previous = 0.0
    bands = _bands(rng, phenotype)
    for name, label, outer in bands:
        box_labels[(t >= previous) & (t < outer)] = label
        # Soft band membership (partial volume at compartment borders).
        band = _sigmoid((outer - t) / np.float32(0.03))
        if previous > 0:
            band = band - _sigmoid((previous - t) / np.float32(0.03))
        band_fractions[name] = np.clip(band, 0.0, 1.0)
        previous = outer
    tumour_fraction = np.clip(sum(band_fractions.values()), 0.0, 1.0)
    # Core texture (all modalities): a fine multiplicative pattern, fading out into the oedema.
    core_weight = _sigmoid((np.float32(bands[-2][2]) - t) / np.float32(0.05))
    texture = np.float32(1.0) + np.float32(phenotype.heterogeneity) * core_weight * _smooth_noise(rng, box_shape, knots=11)

    images = []
    for m in range(len(MODALITIES)):
        signal = sum(fractions[name] * np.float32(TISSUE_SIGNAL[name][m]) for name in fractions)
        tumour_signal = sum(band_fractions[name] * np.float32(TISSUE_SIGNAL[name][m]) for name in band_fractions)
        signal[box] = signal[box] * (1 - tumour_fraction) + tumour_signal * texture
        # Smooth multiplicative bias field (separable, so cheap) and Gaussian noise in the brain.
        profiles = [_smooth_noise(rng, (n,), knots=3) for n in crop_shape]
        bias = 1.0 + (BIAS_AMPLITUDE / 3.0) * (
            profiles[0][:, None, None] + profiles[1][None, :, None] + profiles[2][None, None, :]
        )
        values = signal[brain] * bias[brain] + rng.normal(0.0, NOISE_SIGMA, int(brain.sum())).astype(np.float32)
        inner = np.zeros(crop_shape, dtype=np.int16)
        inner[brain] = _scanner(rng, values)
        volume = np.zeros(shape, dtype=np.int16)
        volume[crop] = inner
        images.append(volume)
    full_labels = np.zeros(shape, dtype=np.uint8)
    full_labels[crop] = labels
    return images, full_labels


def _nifti_gz(array: np.ndarray, affine: np.ndarray) -> bytes:
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    # zlib, not ISA-L: igzip's output differed between runs for a few identical inputs (valid gzip either way),
    # which broke byte-identical cohorts and changed data/raw/demo's md5 in dvc.lock.
    return gzip.compress(image.to_bytes(), compresslevel=1, mtime=0)


def _write_case(args: tuple[Path, int, str, DemoParams]) -> str:
    out_dir, number, grade, params = args
    case_id = f"{CASE_PREFIX}{number:03d}"
    rng = np.random.default_rng([params.seed, number])
    images, labels = synthesize_case(rng, grade, params.shape, params.difficulty)
    folder = out_dir / case_id
    folder.mkdir(parents=True, exist_ok=True)
    affine = brats_affine(params.shape)
    for modality, volume in zip(MODALITIES, images):
        (folder / f"{case_id}_{modality}.nii.gz").write_bytes(_nifti_gz(volume, affine))
    (folder / f"{case_id}_{MASK_SUFFIX}.nii.gz").write_bytes(_nifti_gz(labels, affine))
    return case_id


def generate_demo(out_dir: str | os.PathLike, params: DemoParams, *, workers: int = 0,
                  progress: bool = True) -> list[str]:
    """Write a synthetic BraTS 2020-layout cohort (case folders + ``name_mapping.csv``) atomically.

    Same params => byte-identical files (gzip without timestamps, per-case seeded streams),
    whatever the number of ``workers`` (0 = all cores).

    Returns:
        The case ids written, in order.
    """
    grades = assign_grades(params)
    workers = workers or os.cpu_count() or 1
    with atomic.atomic_dir(out_dir, kind="demo-cohort") as staging:
        tasks = [(staging, n, grade, params) for n, grade in enumerate(grades, start=1)]
        if workers > 1 and len(tasks) > 1:
            with process_context().Pool(workers) as pool:
                ids = list(tqdm(pool.imap(_write_case, tasks), total=len(tasks), desc="demo", unit="case", disable=not progress))
        else:
            ids = [_write_case(task) for task in tqdm(tasks, desc="demo", unit="case", disable=not progress)]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(MAPPING_COLUMNS)
        for case_id, grade in zip(ids, grades):
            writer.writerow([grade, "NA", "NA", "NA", "NA", case_id])
        (staging / MAPPING_FILE).write_text(buffer.getvalue(), encoding="utf-8")
        (staging / "SYNTHETIC.txt").write_text(
            f"Synthetic BraTS-layout cohort made by `brats-llm demo` (seed {params.seed}); not patient data.\n",
            encoding="utf-8",
        )
    return ids
