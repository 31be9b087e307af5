import cv2
import numpy as np
import pytest

from brats_llm.preprocess import transforms


def test_axial_window_centres_on_tumour_and_clamps():
    mask = np.zeros((4, 4, 155), dtype=bool)
    mask[1, 1, 60:81] = True  # extent 60..80, centre 70.5
    assert transforms.axial_window(mask, 95, "tumour") == (23, 118)
    mask[:] = False
    mask[1, 1, 2:5] = True  # near the bottom: clamped to the volume
    assert transforms.axial_window(mask, 95, "tumour") == (0, 95)
    mask[:] = False
    mask[1, 1, 150] = True
    assert transforms.axial_window(mask, 95, "tumour") == (60, 155)
    assert transforms.axial_window(mask, 95, "volume") == (30, 125)


def test_axial_window_errors():
    with pytest.raises(ValueError, match="fewer than the 95"):
        transforms.axial_window(np.ones((2, 2, 50), bool), 95, "tumour")
    with pytest.raises(ValueError, match="mask is empty"):
        transforms.axial_window(np.zeros((2, 2, 100), bool), 95, "tumour")
    with pytest.raises(ValueError, match="centre_on"):
        transforms.axial_window(np.ones((2, 2, 100), bool), 95, "middle")


def test_robust_scaling_inside_brain_only():
    rng = np.random.default_rng(0)
    image = np.zeros((10, 10, 10), np.int16)
    image[2:8, 2:8, 2:8] = rng.integers(100, 200, (6, 6, 6))
    image[5, 5, 5] = 30000  # outlier: clipped, not allowed to squash the range
    brain = transforms.brain_mask([image, np.zeros_like(image)])
    assert brain.sum() == 216
    low, high = transforms.intensity_range(image, brain, 0.5, 99.5)
    scaled = transforms.scale_to_255(image, brain, low, high)
    assert scaled.dtype == np.float32
    assert scaled[~brain].max() == 0 and scaled.max() == 255 and scaled[brain].min() == 0
    assert np.median(scaled[brain]) == pytest.approx(127.5, abs=20)
    assert transforms.scale_to_255(image, brain, 5.0, 5.0).max() == 0  # constant modality


def test_nearest_indices_match_opencv_exact():
    rng = np.random.default_rng(1)
    for n_in, n_out in [(240, 128), (155, 95), (7, 13), (128, 128)]:
        plane = rng.integers(0, 5, (n_in, n_in)).astype(np.uint8)
        ours = transforms.resize_slices(plane[None], n_out, nearest=True)[0]
        reference = cv2.resize(plane, (n_out, n_out), interpolation=cv2.INTER_NEAREST_EXACT)
        np.testing.assert_array_equal(ours, reference)


def test_resize_area_and_frame():
    stack = np.zeros((3, 240, 240), np.float32)
    stack[1, :120, :] = 255.0  # top half of slice 1 bright
    out = transforms.resize_slices(stack, 128)
    assert out.shape == (3, 128, 128)
    assert out[1, :60].min() == 255 and out[1, 68:].max() == 0 and out[0].max() == 0
    volume = np.zeros((5, 6, 7))  # (i, j, k)
    assert transforms.to_slices(volume).shape == (7, 6, 5)  # (slice, row, col)
    assert transforms.to_uint8(np.array([-3.0, 12.5, 254.6, 400.0])).tolist() == [0, 12, 255, 255]
