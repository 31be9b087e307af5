"""The release registry: every release module fills the contract, has its test module and reads its own layout."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from brats_llm.constants import REGION_BACKGROUND, REGION_LABELS
from brats_llm.ingest import layouts
from brats_llm.ingest.cases import Release
from brats_llm.ingest.layout import discover, identify
from brats_llm.ingest.layouts import FALLBACK, GRADED_LAYOUTS, LAYOUTS, RELEASES
from tests.release_cases import patient

PACKAGE = Path(layouts.__file__).parent
TESTS = Path(__file__).parent


def test_every_release_module_is_registered_once():
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert sorted(LAYOUTS) == modules and len(set(LAYOUTS)) == len(LAYOUTS)
    assert FALLBACK in RELEASES
    assert GRADED_LAYOUTS == ("brats2018", "brats2020")


@pytest.mark.parametrize("release", RELEASES, ids=LAYOUTS)
def test_release_contract(release):
    module = importlib.import_module(f"brats_llm.ingest.layouts.{release.name}")
    assert isinstance(release, Release) and module.RELEASE is release and module.NAME == release.name
    assert set(release.label_map.values()) <= set(REGION_LABELS) and release.label_map[0] == REGION_BACKGROUND
    assert (TESTS / f"test_layouts_{release.name}.py").is_file(), "each release module has its test module"


@pytest.mark.parametrize("release", RELEASES, ids=LAYOUTS)
def test_each_release_is_detected_in_its_own_layout(tmp_path, release):
    images, labels = patient()
    raw = importlib.import_module(f"tests.test_layouts_{release.name}").write(tmp_path / "raw", images, labels)
    assert identify(raw) is release
    others = [other.name for other in RELEASES if other is not release and other.detect(raw)]
    assert all(LAYOUTS.index(name) > LAYOUTS.index(release.name) for name in others), others
    inventory = discover(raw)
    assert inventory.layout == release.name and len(inventory.cases) == 1 and not inventory.excluded
    assert inventory.cases[0].labels == dict(release.label_map)
