import json
from collections import Counter

import numpy as np
import pytest

from brats_llm.split.splits import (
    SplitParams,
    fold_members,
    make_splits,
    oversample_indices,
    read_splits,
    split_summary,
    split_volumes,
    write_splits,
)
from brats_llm.errors import InputError
from brats_llm.preprocess.volumes import PrepareParams, prepare


def cohort(n_hgg=293, n_lgg=76):
    patients = {f"P{i:03d}": "HGG" for i in range(n_hgg)}
    patients.update({f"P{i:03d}": "LGG" for i in range(n_hgg, n_hgg + n_lgg)})
    return patients


def test_paper_sized_split_is_stratified_and_disjoint():
    patients = cohort()
    assignments = make_splits(patients, SplitParams())
    assert sorted(a.patient_id for a in assignments) == sorted(patients)
    test = [a for a in assignments if a.split == "test"]
    assert len(test) == 56  # ceil(0.15 * 369), sklearn's rounding
    assert Counter(a.grade for a in test)["LGG"] in (11, 12)  # 76/369 of 56 = 11.5
    for fold in range(5):
        members = fold_members(assignments, fold)
        assert len(members["validation"]) in (62, 63) and len(members["test"]) == 56
        sets = [set(members[k]) for k in ("train", "validation", "test")]
        assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
        lgg_share = np.mean([patients[p] == "LGG" for p in members["validation"]])
        assert abs(lgg_share - 76 / 369) < 0.03


def test_seeded_and_order_independent():
    patients = cohort(40, 10)
    shuffled = dict(reversed(list(patients.items())))
    assert make_splits(patients, SplitParams(seed=1)) == make_splits(shuffled, SplitParams(seed=1))
    assert make_splits(patients, SplitParams(seed=1)) != make_splits(patients, SplitParams(seed=2))


def test_too_small_cohort_is_a_clear_error():
    with pytest.raises(ValueError, match=r"too few patients for 5 stratified folds.*'LGG': [12]\}"):
        make_splits(cohort(10, 2), SplitParams())
    with pytest.raises(ValueError, match="cannot stratify"):
        make_splits(cohort(10, 1), SplitParams())
    with pytest.raises(ValueError, match="unknown grade"):
        make_splits({"a": "GBM"}, SplitParams())
    with pytest.raises(ValueError, match="fold 7 does not exist"):
        fold_members(make_splits(cohort(20, 10), SplitParams()), 7)


def test_file_round_trip_and_summary(tmp_path):
    assignments = make_splits(cohort(30, 10), SplitParams(folds=3))
    write_splits(tmp_path / "splits.csv", assignments)
    assert read_splits(tmp_path / "splits.csv") == assignments
    summary = split_summary(assignments)
    assert sorted(summary) == ["fold0", "fold1", "fold2", "test"]
    assert sum(sum(v.values()) for v in summary.values()) == 40
    (tmp_path / "bad.csv").write_text("id,grade\n")
    with pytest.raises(ValueError, match="expected columns"):
        read_splits(tmp_path / "bad.csv")


def test_oversampling_balances_without_losing_rows():
    labels = np.array([1] * 20 + [0] * 6)
    index = oversample_indices(labels, seed=0)
    assert Counter(labels[index].tolist()) == {0: 20, 1: 20}
    assert set(index.tolist()) == set(range(26))
    np.testing.assert_array_equal(index, oversample_indices(labels, seed=0))
    assert Counter(Counter(index[labels[index] == 0].tolist()).values()) == {3: 4, 4: 2}  # 20 = 3*6 + 2


def test_stage_on_prepared_volumes(tiny_demo, tmp_path):
    prepare(tiny_demo, tmp_path / "volumes", PrepareParams(slices=24, size=32), workers=1, progress=False)
    assignments = split_volumes(tmp_path / "volumes", tmp_path / "splits.csv", SplitParams(test_fraction=0.3, folds=2),
                                tmp_path / "summary.json")
    assert len(assignments) == 6
    assert Counter(a.split for a in assignments) == {"test": 2, "trainval": 4}
    headline = json.loads((tmp_path / "summary.json").read_text())
    details = json.loads((tmp_path / "summary.details.json").read_text())
    assert details == split_summary(assignments)
    patients = {key: sum(counts.values()) for key, counts in details.items()}
    assert headline == {"n": patients.pop("test"), "n_trainval": sum(patients.values())} == {"n": 2, "n_trainval": 4}


def test_ungraded_release_is_split_without_inventing_grades():
    """BraTS 2021, 2023+ and MSD publish no grades: split them unstratified, label -1, never a grade."""
    from brats_llm.constants import NO_GRADE

    patients = {f"BraTS-GLI-{i:05d}-000": NO_GRADE for i in range(20)}
    assignments = make_splits(patients, SplitParams(test_fraction=0.2, folds=4, seed=3))
    assert {a.grade for a in assignments} == {NO_GRADE} and {a.label for a in assignments} == {-1}
    assert sum(a.split == "test" for a in assignments) == 4
    assert sorted(Counter(a.fold for a in assignments if a.fold >= 0).values()) == [4, 4, 4, 4]
    assert split_summary(assignments)["test"] == {"ungraded": 4}


def test_graded_and_ungraded_patients_mixed_are_refused():
    patients = {f"p{i}": ("HGG" if i < 10 else "") for i in range(20)}
    with pytest.raises(InputError, match="10 of 20 patients have no grade"):
        make_splits(patients, SplitParams())
