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

#: Glioma grades; the class index is the position (0 LGG, 1 HGG), as in the paper.
GRADES: tuple[str, ...] = ("LGG", "HGG")
GRADE_TO_LABEL = MappingProxyType({grade: index for index, grade in enumerate(GRADES)})

#: Raw BraTS geometry: 240 x 240 x 155 voxels of 1 mm (NIfTI axes i, j, k).
BRATS_SHAPE: tuple[int, int, int] = (240, 240, 155)
#: Orientation every case is brought to before array work (the native BraTS orientation).
CANONICAL_AXCODES: tuple[str, str, str] = ("L", "P", "S")

# --- Image coordinate frame -------------------------------------------------------------------
# Arrays are stored as (slice, row, col) = (NIfTI k, j, i) after reorientation to LPS: row 0 is the
# anterior edge, column 0 the patient's right (radiological view), slice 0 the most inferior slice
# of the crop window. 2D geometry uses x = column, y = row, origin at the top-left pixel corner,
# pixel units of the IMAGE_SIZE x IMAGE_SIZE slice.
IMAGE_SIZE = 128
N_SLICES = 95
AXIS_SLICE, AXIS_ROW, AXIS_COL = 0, 1, 2
FRAME_X, FRAME_Y = "column", "row"
FRAME_ORIGIN = "top-left"

#: Patient ids become file names downstream: only this character set is accepted.
PATIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
