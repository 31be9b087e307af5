"""Named constants: BraTS label scheme, modality order, grades and the image coordinate frame."""

from __future__ import annotations

from types import MappingProxyType

#: Modality order of every ``image`` array in this project (axis 0 of the volumes dataset).
MODALITIES: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")

#: File-name suffix of the expert segmentation in BraTS releases (``<case>_seg.nii[.gz]``).
MASK_SUFFIX = "seg"

#: BraTS 2017+ segmentation labels (label 3 was retired after BraTS 2016).
BRATS_LABELS = MappingProxyType(
    {
        0: "background",
        1: "necrotic / non-enhancing tumour core (NCR/NET)",
        2: "peritumoral oedema (ED)",
        4: "GD-enhancing tumour (ET)",
    }
)
LABEL_BACKGROUND, LABEL_NCR_NET, LABEL_EDEMA, LABEL_ENHANCING = 0, 1, 2, 4

# --- Sub-region labels (the ``regions`` column) -----------------------------------------------
#: The label convention of every ``regions`` array (and of nnU-Net exports): BraTS 2023's numbering.
#: BraTS 2017-2021 label 4 (enhancing) is stored as 3; MSD Task01's labels are renumbered (see below).
REGION_LABELS = MappingProxyType(
    {
        0: "background",
        1: "necrotic / non-enhancing tumour core (NCR/NET)",
        2: "peritumoral oedema (ED)",
        3: "GD-enhancing tumour (ET)",
    }
)
REGION_BACKGROUND, REGION_NCR_NET, REGION_EDEMA, REGION_ENHANCING = 0, 1, 2, 3
#: The BraTS evaluation regions as sets of ``REGION_LABELS`` values: whole tumour, tumour core,
#: enhancing tumour. ``mask`` is the whole tumour (``regions > 0``).
REGION_WT, REGION_TC, REGION_ET = "wt", "tc", "et"
REGIONS = MappingProxyType({REGION_WT: (1, 2, 3), REGION_TC: (1, 3), REGION_ET: (3,)})

#: Each release's own labels and file names (file label -> ``REGION_LABELS`` value) live in its module of
#: ``brats_llm.ingest.layouts``; a value outside a release's labels fails loudly, naming the file.

#: Glioma grades; the class index is the position (0 LGG, 1 HGG), as in the paper.
GRADES: tuple[str, ...] = ("LGG", "HGG")
GRADE_TO_LABEL = MappingProxyType({grade: index for index, grade in enumerate(GRADES)})
#: Releases without grades (BraTS 2021, 2023+, MSD): ``grade`` is NO_GRADE ("") and ``label`` is
#: NO_LABEL (-1, the ``datasets`` ClassLabel value for "no label"); no grade is ever invented.
#: Stages that need grades (stratified split, grade classification) must refuse such rows.
NO_GRADE = ""
NO_LABEL = -1

#: Raw BraTS geometry: 240 x 240 x 155 voxels of 1 mm (NIfTI axes i, j, k).
BRATS_SHAPE: tuple[int, int, int] = (240, 240, 155)
#: Orientation every case is brought to before array work (the native BraTS orientation).
CANONICAL_AXCODES: tuple[str, str, str] = ("L", "P", "S")

# --- Image coordinate frame -------------------------------------------------------------------
# Arrays are stored as (slice, row, col) = (NIfTI k, j, i) after reorientation to LPS: row 0 is the
# anterior edge, column 0 the patient's right (radiological view), slice 0 the most inferior slice
# of the crop window. 2D geometry uses x = column, y = row, origin at the top-left pixel corner,
# pixel units of the slice as stored (prepare.size x prepare.size for axial slices).
#: Default of ``prepare.size`` (the paper's 128) and nothing else: every later stage reads the size
#: from the data (image / mask shapes), so ``-S prepare.size=224`` is honoured downstream.
IMAGE_SIZE = 128
N_SLICES = 95
AXIS_SLICE, AXIS_ROW, AXIS_COL = 0, 1, 2
FRAME_X, FRAME_Y = "column", "row"
FRAME_ORIGIN = "top-left"

#: Patient ids become file names downstream: only this character set is accepted.
PATIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
