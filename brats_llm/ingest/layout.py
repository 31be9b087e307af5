"""Find the cases of a raw BraTS release.

Layouts (``Inventory.layout``):

* ``brats2018``: ``HGG/`` and ``LGG/`` grade folders of case folders (BraTS 2018/2019);
* ``brats2020``: flat case folders plus ``name_mapping.csv`` (grades);
* ``brats2021``: flat ``BraTS2021_NNNNN/BraTS2021_NNNNN_{flair,t1,t1ce,t2,seg}.nii.gz``, no grades;
* ``brats2023``: flat ``BraTS-GLI-NNNNN-NNN/BraTS-GLI-NNNNN-NNN-{t2f,t1n,t1c,t2w,seg}.nii.gz`` (2023/2024
  glioma), no grades;
* ``msd``: Medical Segmentation Decathlon Task01_BrainTumour (``dataset.json``, 4D ``imagesTr/BRATS_NNN``,
  ``labelsTr/BRATS_NNN``), no grades.

Releases without grades give cases with ``grade == NO_GRADE``: no grade is invented.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from brats_llm.constants import (
    GRADES,
    MASK_SUFFIX,
    MODALITIES,
    MODALITY_SUFFIXES_2023,
    NO_GRADE,
    PATIENT_ID_PATTERN,
    REGION_EDEMA,
    REGION_ENHANCING,
    REGION_NCR_NET,
    RELEASE_LABEL_MAPS,
)
from brats_llm.errors import InputError, MissingInputError

#: The BraTS 2020 grade table and the columns we read from it.
MAPPING_FILE = "name_mapping.csv"
MAPPING_ID_COLUMN = "BraTS_2020_subject_ID"
MAPPING_GRADE_COLUMN = "Grade"
LAYOUT_2020, LAYOUT_2018 = "brats2020", "brats2018"
LAYOUT_2021, LAYOUT_2023, LAYOUT_MSD = "brats2021", "brats2023", "msd"
LAYOUTS: tuple[str, ...] = (LAYOUT_2018, LAYOUT_2020, LAYOUT_2021, LAYOUT_2023, LAYOUT_MSD)
#: Layouts whose cases carry a grade (LGG/HGG); the others give ``grade == NO_GRADE``.
GRADED_LAYOUTS: tuple[str, ...] = (LAYOUT_2018, LAYOUT_2020)
#: BraTS 2021 case folders start with this (how a flat release without name_mapping.csv is recognised).
PREFIX_2021 = "BraTS2021_"
#: File-name suffix (separator included) of each modality and of the mask, per flat layout.
SUFFIXES_2017 = {**{m: f"_{m}" for m in MODALITIES}, MASK_SUFFIX: f"_{MASK_SUFFIX}"}
SUFFIXES_2023 = {**{m: f"-{MODALITY_SUFFIXES_2023[m]}" for m in MODALITIES}, MASK_SUFFIX: f"-{MASK_SUFFIX}"}
#: MSD Task01_BrainTumour: the description file and the training folders.
MSD_JSON, MSD_IMAGES, MSD_LABELS = "dataset.json", "imagesTr", "labelsTr"
#: Channel names of an MSD / nnU-Net dataset.json (lower case) -> our modality.
MSD_CHANNEL_NAMES = {"flair": "flair", "t2f": "flair", "t1w": "t1", "t1": "t1", "t1n": "t1", "t1gd": "t1ce",
                     "t1ce": "t1ce", "t1c": "t1ce", "t2w": "t2", "t2": "t2"}
#: Label names of an MSD dataset.json (lower case, normalised) -> ``REGION_LABELS`` value.
MSD_LABEL_NAMES = {"background": 0, "edema": REGION_EDEMA, "oedema": REGION_EDEMA,
                   "non-enhancing tumor": REGION_NCR_NET, "non-enhancing tumour": REGION_NCR_NET,
                   "enhancing tumor": REGION_ENHANCING, "enhancing tumour": REGION_ENHANCING}
NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Why a case folder named ``.something`` is left out (it is reported, not dropped silently).
HIDDEN_REASON = "hidden folder (its name starts with '.') holding NIfTI files: skipped; rename it to include the case"


class CaseError(InputError):
    """A case cannot be used; ``path`` names the offending file, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class Exclusion:
    """A case (or file) left out of the dataset, with the file to look at and why."""

    id: str
    path: str
    reason: str


@dataclass(frozen=True)
class Note:
    """Something unusual that was handled (e.g. a mask under a non-standard name)."""

    id: str
    path: str
    message: str


@dataclass(frozen=True)
class CaseFiles:
    """The files of one patient: one image per modality (in ``MODALITIES`` order) and a mask.

    ``grade`` is ``NO_GRADE`` for releases without grades. For MSD, ``images`` repeats the one 4D
    file per modality and ``channels`` gives each modality's volume index in it; ``label_map``
    (file label -> ``REGION_LABELS`` value) overrides the release's default map when set.
    """

    patient_id: str
    grade: str
    folder: Path
    images: tuple[Path, ...]
    mask: Path
    layout: str
    channels: tuple[int, ...] | None = None
    label_map: tuple[tuple[int, int], ...] | None = None

    @property
    def labels(self) -> dict[int, int]:
        """File label -> ``REGION_LABELS`` value for this case's segmentation."""
        return dict(self.label_map) if self.label_map is not None else dict(RELEASE_LABEL_MAPS[self.layout])

    def source(self, root: Path) -> str:
        """The case's place in the release (the ``source`` column): its folder, or for MSD its image file."""
        where = self.images[0] if self.channels is not None else self.folder
        return where.relative_to(root).as_posix()


@dataclass
class Inventory:
    """What :func:`discover` found: usable cases, exclusions and notes, in a stable order."""

    root: Path
    layout: str
    cases: list[CaseFiles] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def nifti_stem(path: Path) -> str | None:
    """File name without ``.nii``/``.nii.gz``, or None for non-NIfTI files."""
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def _why(error: OSError) -> str:
    return error.strerror or str(error)


def _list(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted.

    Raises:
        CaseError: the folder cannot be listed (permission denied, broken symbolic link, ...).
    """
    try:
        return sorted(folder.iterdir())
    except OSError as error:
        dangling = _dangling_link(folder)
        if dangling == BROKEN_LINK:
            raise CaseError(folder, f"{BROKEN_LINK} (its target does not exist)") from error
        raise CaseError(folder, dangling or f"cannot list folder ({_why(error)})") from error


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, raising CaseError (not a bare OSError) when ``path`` cannot be examined."""
    try:
        return path.is_dir()
    except OSError as error:
        raise CaseError(path, f"cannot read ({_why(error)})") from error


#: Reasons for symbolic links that lead nowhere.
BROKEN_LINK = "broken symbolic link"
LINK_LOOP = "symbolic link loop (the link leads back to itself)"


def _dangling_link(path: Path) -> str | None:
    """``BROKEN_LINK`` or ``LINK_LOOP`` when ``path`` is a symbolic link whose target cannot be reached, else None."""
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return LINK_LOOP
        return BROKEN_LINK if error.errno in (errno.ENOENT, errno.ENOTDIR) else None
    return None


def _file_problem(path: Path) -> str | None:
    """Why ``path`` is not a regular file we can open, or None when it is one."""
    try:
        if path.is_file():
            return None
        dangling = _dangling_link(path)
        if dangling:
            return dangling
        if path.is_symlink():
            return "symbolic link to a folder, not a file"
        return "is a folder, not a file" if path.is_dir() else "not a regular file"
    except OSError as error:
        return f"cannot read ({_why(error)})"


def _find_root(raw_dir: Path) -> Path:
    """Descend through single wrapper folders (as in zip downloads) to the case folders."""
    root = raw_dir
    for _ in range(3):
        if os.path.lexists(root / MAPPING_FILE) or any(_is_dir(root / grade) for grade in GRADES):
            return root
        if os.path.lexists(root / MSD_JSON) or _is_dir(root / MSD_IMAGES):
            return root
        folders = [p for p in _list(root) if not p.name.startswith(".") and _is_dir(p)]
        if len(folders) != 1 or _holds_nifti(folders[0]):
            return root
        root = folders[0]
    return root


def _holds_nifti(folder: Path) -> bool:
    try:
        return bool(_nifti_files(folder))
    except CaseError:
        return True  # an unreadable single folder is treated as a case folder (and excluded later)


def _nifti_files(folder: Path) -> list[Path]:
    """Entries with a NIfTI name, whatever their type (bad ones are reported when matched)."""
    return [p for p in _list(folder) if nifti_stem(p) is not None]


def _mapping_rows(path: Path) -> list[dict[str, str | None]]:
    """The rows of ``name_mapping.csv``.

    Raises:
        InputError: unreadable, not UTF-8, not CSV, or lacking the id or grade column.
    """
    problem = _file_problem(path)
    if problem:
        raise InputError(f"{path}: cannot read {MAPPING_FILE}: {problem}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
    except OSError as error:
        raise InputError(f"{path}: cannot read {MAPPING_FILE} ({_why(error)})") from error
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: {MAPPING_FILE} is not UTF-8 text (byte {error.object[error.start]:#04x} "
                         f"at offset {error.start})") from error
    except csv.Error as error:
        raise InputError(f"{path}: {MAPPING_FILE} is not valid CSV ({error})") from error
    missing = {MAPPING_ID_COLUMN, MAPPING_GRADE_COLUMN} - set(reader.fieldnames or ())
    if missing:
        raise InputError(f"{path}: missing column(s) {sorted(missing)}")
    return rows


def _read_mapping(path: Path, excluded: list[Exclusion]) -> dict[str, str]:
    """Map patient id -> grade from ``name_mapping.csv``; bad or conflicting rows are excluded."""
    grades: dict[str, set[str]] = defaultdict(set)
    for row in _mapping_rows(path):
        patient_id = (row[MAPPING_ID_COLUMN] or "").strip()
        if patient_id:
            grades[patient_id].add((row[MAPPING_GRADE_COLUMN] or "").strip().upper())
    mapping = {}
    for patient_id, values in grades.items():
        if len(values) > 1:
            excluded.append(Exclusion(patient_id, str(path), f"conflicting grades {sorted(values)} in {MAPPING_FILE}"))
        else:
            mapping[patient_id] = values.pop()
    return mapping


def _match_files(patient_id: str, folder: Path, files: list[Path],
                 inventory: Inventory) -> tuple[tuple[Path, ...], Path] | None:
    """Pick one file per modality and the mask among ``files``; record why when that fails."""
    suffixes = SUFFIXES_2023 if inventory.layout == LAYOUT_2023 else SUFFIXES_2017
    by_suffix: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        stem = nifti_stem(path).lower()
        for key, suffix in suffixes.items():
            if stem.endswith(suffix):
                by_suffix[key].append(path)
    images = []
    for modality in MODALITIES:
        found = by_suffix.get(modality, [])
        if len(found) != 1:
            problem = "missing" if not found else f"ambiguous ({', '.join(p.name for p in found)})"
            named = "" if suffixes[modality][1:] == modality else f" (*{suffixes[modality]}.nii.gz)"
            inventory.excluded.append(Exclusion(patient_id, str(folder), f"{modality} image{named} {problem}"))
            return None
        images.append(found[0])
    masks = by_suffix.get(MASK_SUFFIX, [])
    if not masks:
        # Known quirk: one BraTS 2020 case ships its mask under another name (e.g. *_Segm.nii).
        claimed = set(images)
        masks = [p for p in files if p not in claimed and "seg" in p.name.lower()]
        if len(masks) == 1:
            inventory.notes.append(Note(patient_id, str(masks[0]), "mask file has a non-standard name; used it"))
    if len(masks) != 1:
        problem = "missing" if not masks else f"ambiguous ({', '.join(p.name for p in masks)})"
        inventory.excluded.append(Exclusion(patient_id, str(folder), f"segmentation mask {problem}"))
        return None
    for path in (*images, masks[0]):
        problem = _file_problem(path)
        if problem:
            inventory.excluded.append(Exclusion(patient_id, str(path), problem))
            return None
    return tuple(images), masks[0]


def _case_folders(parent: Path) -> list[Path]:
    """Candidate case folders: sub-folders and broken or looping symbolic links (reported, not skipped)."""
    entries = [p for p in _list(parent) if not p.name.startswith(".")]
    return [p for p in entries if _is_dir(p) or _dangling_link(p)]


def _hidden_case_folders(parent: Path) -> list[Path]:
    """Hidden sub-folders (name starting with ``.``) that hold NIfTI files: cases the user may have meant."""
    found = []
    for path in _list(parent):
        try:
            if path.name.startswith(".") and path.is_dir() and any(nifti_stem(p) for p in path.iterdir()):
                found.append(path)
        except OSError:
            continue  # an unreadable hidden folder (.cache, .Trash) is not reported as a case
    return found


def _exclude_hidden(parents: list[Path], inventory: Inventory) -> None:
    for folder in (hidden for parent in parents for hidden in _hidden_case_folders(parent)):
        inventory.excluded.append(Exclusion(folder.name, str(folder), HIDDEN_REASON))



def _inspect(folder: Path, grade: str | None, mapping: dict[str, str], inventory: Inventory,
             seen: dict[str, list[Path]]) -> CaseFiles | None:
    """One candidate folder to a case, or None after recording the exclusion or note."""
    patient_id = folder.name
    try:
        files = _nifti_files(folder)
    except CaseError as error:
        seen[patient_id].append(folder)
        inventory.excluded.append(Exclusion(patient_id, error.path, error.reason))
        return None
    if not files:
        inventory.notes.append(Note(patient_id, str(folder), "folder holds no NIfTI files; skipped"))
        return None
    seen[patient_id].append(folder)
    if not re.match(PATIENT_ID_PATTERN, patient_id):
        inventory.excluded.append(Exclusion(patient_id, str(folder), "patient id is not a safe file name"))
        return None
    if inventory.layout not in GRADED_LAYOUTS:
        grade = NO_GRADE
    elif grade is None:
        grade = mapping.get(patient_id)
        if grade is None:
            mapping_path = inventory.root / MAPPING_FILE
            absent = "" if os.path.lexists(mapping_path) else " (no such file; BraTS 2021 case folders are named BraTS2021_NNNNN)"
            inventory.excluded.append(
                Exclusion(patient_id, str(folder), f"grade missing: not listed in {mapping_path}{absent}")
            )
            return None
    if inventory.layout in GRADED_LAYOUTS and grade not in GRADES:
        inventory.excluded.append(Exclusion(patient_id, str(folder), f"grade {grade!r} is not one of {GRADES}"))
        return None
    matched = _match_files(patient_id, folder, files, inventory)
    if matched is None:
        return None
    return CaseFiles(patient_id, grade, folder, matched[0], matched[1], inventory.layout)


def discover(raw_dir: str | Path) -> Inventory:
    """List the cases under ``raw_dir`` without reading image data.

    Args:
        raw_dir: a BraTS release folder (or a folder wrapping exactly one).

    Returns:
        The inventory; every folder or mapping row that is not a usable case is an exclusion.

    Raises:
        MissingInputError: ``raw_dir`` is not a folder.
        InputError: the release folder, a grade folder or ``name_mapping.csv`` cannot be read,
            or the mapping lacks its id or grade column (unreadable case folders are exclusions).
    """
    raw_dir = Path(raw_dir)
    if not _is_dir(raw_dir):
        raise MissingInputError(f"{raw_dir}: raw data folder does not exist")
    root = _find_root(raw_dir)
    if os.path.lexists(root / MSD_JSON) or _is_dir(root / MSD_IMAGES):
        return _discover_msd(root)
    grade_folders = [root / grade for grade in GRADES if _is_dir(root / grade)]
    inventory = Inventory(root=root, layout=LAYOUT_2018)

    candidates: list[tuple[Path, str | None]] = []
    mapping: dict[str, str] = {}
    if grade_folders:
        for grade_folder in grade_folders:
            candidates += [(p, grade_folder.name) for p in _case_folders(grade_folder)]
        _exclude_hidden(grade_folders, inventory)
    else:
        mapping_path = root / MAPPING_FILE
        folders = _case_folders(root)
        inventory.layout = _flat_layout(root, folders)
        if inventory.layout == LAYOUT_2020 and os.path.lexists(mapping_path):
            mapping = _read_mapping(mapping_path, inventory.excluded)
        candidates = [(p, None) for p in folders]
        _exclude_hidden([root], inventory)

    seen: dict[str, list[Path]] = defaultdict(list)
    found: list[CaseFiles] = []
    for folder, grade in candidates:
        case = _inspect(folder, grade, mapping, inventory, seen)
        if case is not None:
            found.append(case)

    duplicates = {pid: folders for pid, folders in seen.items() if len(folders) > 1}
    for pid, folders in sorted(duplicates.items()):
        for folder in folders:
            others = ", ".join(str(f) for f in folders if f != folder)
            inventory.excluded.append(Exclusion(pid, str(folder), f"duplicate patient id (also at {others})"))
    inventory.cases = [case for case in found if case.patient_id not in duplicates]
    for patient_id in sorted(set(mapping) - set(seen)):
        inventory.excluded.append(
            Exclusion(patient_id, str(root / MAPPING_FILE), f"listed in {MAPPING_FILE} but no case folder found")
        )
    return inventory


def _flat_layout(root: Path, folders: list[Path]) -> str:
    """The layout of a release of flat case folders: 2020 (name_mapping.csv), 2023 (``-t2f`` names),
    2021 (``BraTS2021_`` folders), else 2020 (whose cases then lack grades and are excluded)."""
    if os.path.lexists(root / MAPPING_FILE):
        return LAYOUT_2020
    new_suffixes = tuple(SUFFIXES_2023[m] for m in MODALITIES)
    for folder in folders:
        try:
            stems = [nifti_stem(path).lower() for path in _nifti_files(folder)]
        except CaseError:
            continue  # reported when the folder is inspected
        if any(stem.endswith(new_suffixes) for stem in stems):
            return LAYOUT_2023
    if any(folder.name.startswith(PREFIX_2021) for folder in folders):
        return LAYOUT_2021
    return LAYOUT_2020


def _msd_label_name(name: object) -> str:
    return " ".join(str(name).strip().lower().replace("_", " ").replace("non enhancing", "non-enhancing").split())


def read_msd_description(path: Path) -> tuple[tuple[int, ...], dict[int, int]]:
    """Channels and labels of an MSD Task01 ``dataset.json``.

    Returns:
        The 4D volume index of each modality in ``MODALITIES`` order, and file label -> ``REGION_LABELS``
        value (MSD's own: 1 oedema -> 2, 2 non-enhancing tumour -> 1, 3 enhancing tumour -> 3).

    Raises:
        InputError: unreadable or not JSON, or channels / labels that are not exactly FLAIR, T1, T1-Gd, T2
            and background, oedema, non-enhancing tumour, enhancing tumour.
    """
    problem = _file_problem(path)
    if problem:
        raise InputError(f"{path}: cannot read {MSD_JSON}: {problem}")
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(f"{path}: cannot read {MSD_JSON} ({_why(error)})") from error
    except (UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path}: {MSD_JSON} is not valid JSON ({error})") from error
    if not isinstance(description, dict):
        raise InputError(f"{path}: {MSD_JSON} is not a JSON object")
    channels = description.get("modality", description.get("channel_names"))
    if not isinstance(channels, dict):
        raise InputError(f"{path}: no 'modality' (or 'channel_names') object naming the 4 channels")
    by_modality: dict[str, int] = {}
    for key, name in channels.items():
        modality = MSD_CHANNEL_NAMES.get(str(name).strip().lower())
        if modality is None or not str(key).isdigit() or modality in by_modality:
            raise InputError(f"{path}: unexpected channel {key!r}: {name!r}; expected the 4 channels FLAIR, T1w, "
                             f"t1gd, T2w once each")
        by_modality[modality] = int(key)
    if set(by_modality) != set(MODALITIES):
        raise InputError(f"{path}: channels {dict(channels)} do not name FLAIR, T1w, t1gd and T2w")
    labels = description.get("labels")
    if not isinstance(labels, dict):
        raise InputError(f"{path}: no 'labels' object")
    label_map: dict[int, int] = {}
    for key, value in labels.items():
        number, name = (key, value) if isinstance(value, str) else (value, key)  # MSD {"1": "edema"}, nnU-Net {"edema": 1}
        target = MSD_LABEL_NAMES.get(_msd_label_name(name))
        if target is None or not str(number).isdigit() or int(number) in label_map:
            raise InputError(f"{path}: unexpected label {key!r}: {value!r}; expected background, edema, "
                             f"non-enhancing tumor and enhancing tumour")
        label_map[int(number)] = target
    if sorted(label_map.values()) != [0, 1, 2, 3]:
        raise InputError(f"{path}: labels {dict(labels)} do not name background, edema, non-enhancing tumor and "
                         f"enhancing tumour once each")
    return tuple(by_modality[m] for m in MODALITIES), label_map


def _msd_files(folder: Path) -> dict[str, list[Path]]:
    """NIfTI files of an MSD folder by name stem (hidden files such as macOS ``._BRATS_001.nii.gz`` skipped)."""
    if not _is_dir(folder):
        raise InputError(f"{folder}: MSD folder missing")
    files: dict[str, list[Path]] = defaultdict(list)
    for path in _list(folder):
        stem = nifti_stem(path)
        if stem is not None and not path.name.startswith("."):
            files[stem].append(path)
    return files


def _discover_msd(root: Path) -> Inventory:
    """Cases of an MSD Task01_BrainTumour release: one 4D image and one label file per case, no grades."""
    inventory = Inventory(root=root, layout=LAYOUT_MSD)
    if not os.path.lexists(root / MSD_JSON):
        raise InputError(f"{root / MSD_JSON}: missing; an MSD release names its channels and labels there")
    channels, label_map = read_msd_description(root / MSD_JSON)
    images, labels = _msd_files(root / MSD_IMAGES), _msd_files(root / MSD_LABELS)

    def exclude(patient_id: str, path: Path, reason: str) -> None:
        inventory.excluded.append(Exclusion(patient_id, str(path), reason))

    for patient_id in sorted(set(images) | set(labels)):
        found_images, found_labels = images.get(patient_id, []), labels.get(patient_id, [])
        if not found_images:
            exclude(patient_id, found_labels[0], f"image missing (no {MSD_IMAGES}/{patient_id}.nii.gz)")
            continue
        if len(found_images) > 1:
            exclude(patient_id, root / MSD_IMAGES, f"image ambiguous ({', '.join(p.name for p in found_images)})")
            continue
        if not found_labels:
            exclude(patient_id, found_images[0], f"segmentation mask missing (no {MSD_LABELS}/{patient_id}.nii.gz)")
            continue
        if len(found_labels) > 1:
            exclude(patient_id, root / MSD_LABELS,
                    f"segmentation mask ambiguous ({', '.join(p.name for p in found_labels)})")
            continue
        if not re.match(PATIENT_ID_PATTERN, patient_id):
            exclude(patient_id, found_images[0], "patient id is not a safe file name")
            continue
        image, label = found_images[0], found_labels[0]
        problem = next(((p, why) for p in (image, label) if (why := _file_problem(p))), None)
        if problem:
            exclude(patient_id, *problem)
            continue
        inventory.cases.append(CaseFiles(patient_id, NO_GRADE, root / MSD_IMAGES, (image,) * len(MODALITIES), label,
                                         LAYOUT_MSD, channels, tuple(sorted(label_map.items()))))
    return inventory
