"""The one rank helper: the launcher's environment read in one place, checked, and the share of each rank."""

import pytest

from brats_llm.ranks import Ranks, is_main, launched

LAUNCH_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@pytest.fixture
def launch(monkeypatch):
    """Set the torchrun variables given (and clear the others)."""
    def set_variables(**values):
        for name in LAUNCH_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in values.items():
            monkeypatch.setenv(name, value)
    return set_variables


def test_a_process_not_launched_is_rank_zero_of_one(launch):
    launch()
    assert launched() == Ranks(world=1, rank=0, local_rank=0, local_world=1)
    assert is_main() and not launched().sharded


def test_the_launcher_variables_are_read(launch):
    launch(WORLD_SIZE="4", RANK="3", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2")
    assert launched() == Ranks(world=4, rank=3, local_rank=1, local_world=2)
    assert not is_main() and launched().sharded


def test_the_local_world_defaults_to_the_world(launch):
    launch(WORLD_SIZE="2", RANK="1", LOCAL_RANK="1")
    assert launched().local_world == 2


@pytest.mark.parametrize("values, phrase", [
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "inconsistent launcher environment"),
    ({"RANK": "1"}, "inconsistent launcher environment"),
    ({"WORLD_SIZE": "0"}, "inconsistent launcher environment"),
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "2"}, "inconsistent launcher environment"),
])
def test_a_broken_launch_fails_loudly(launch, values, phrase):
    launch(**values)
    with pytest.raises(ValueError, match=phrase):
        launched()


def test_each_unit_goes_to_one_rank():
    shares = [Ranks(3, r).share(8) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4, 7], [2, 5]]
    assert Ranks().share(3) == [0, 1, 2]


def test_one_process_gathers_and_broadcasts_its_own_value():
    assert Ranks().all_gather({"a": 1}) == [{"a": 1}] and Ranks().broadcast("x") == "x"
    Ranks().barrier()  # no process group: returns at once


def test_no_other_module_reads_the_launcher_variables():
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "brats_llm"
    readers = [path.relative_to(package).as_posix() for path in sorted(package.rglob("*.py"))
               if any(f'"{name}"' in path.read_text() for name in LAUNCH_VARIABLES)]
    assert readers == ["ranks.py"]
