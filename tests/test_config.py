from dataclasses import dataclass

import pytest
import yaml

from brats_llm.config import ParamsError, ParamsFile, load_section, stage_params


@dataclass(frozen=True)
class Example:
    alpha: int = 1
    beta: str = "x"


def test_section_and_overrides(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("example:\n  alpha: 5\nother:\n  gamma: 3\n")
    assert stage_params(Example, "example", params, {"beta": None}) == Example(alpha=5, beta="x")
    assert stage_params(Example, "example", params, {"beta": "y"}) == Example(alpha=5, beta="y")
    assert stage_params(Example, "example", None, {}) == Example()
    assert load_section(params, "missing") == {}


def test_a_params_file_is_parsed_once_and_hands_out_copies(tmp_path):
    """The CLI keeps one ParamsFile per invocation: later edits to the file or to a returned section change nothing."""
    params = tmp_path / "params.yaml"
    params.write_text("example:\n  alpha: 5\n")
    parsed = ParamsFile(params)
    parsed.section("example")["alpha"] = 9
    params.write_text("example:\n  alpha: 7\n")
    assert parsed.section("example") == {"alpha": 5}
    assert parsed.stage(Example, "example", {"beta": "y"}) == Example(alpha=5, beta="y")
    assert parsed.value("example", "beta", str, "z") == "z"
    assert ParamsFile(params).section("example") == {"alpha": 7}
    with pytest.raises(ParamsError, match="example.alpha = 5 is not valid: expected a string"):
        parsed.value("example", "alpha", str, "")


def test_unknown_key_fails_loudly(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("example:\n  alpha: 5\n  typo: 1\n")
    with pytest.raises(ParamsError, match="typo"):
        stage_params(Example, "example", params, {})


def test_malformed_section(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("example: [1, 2]\n")
    with pytest.raises(ParamsError, match="must be a mapping"):
        load_section(params, "example")


@dataclass(frozen=True)
class Typed:
    count: int = 1
    rate: float = 0.5
    flag: bool = True
    names: tuple[str, ...] = ("a",)
    per_task: dict[str, int] = None  # type: ignore[assignment]
    fold: int | str = 0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("count", 95.7, "an integer"),
        ("count", 95.0, "an integer"),  # a float is never an int, even a whole one
        ("count", "95", "an integer"),
        ("count", "ninety", "an integer"),
        ("count", True, "an integer"),  # YAML true is not 1
        ("rate", "0.5", "a number"),
        ("rate", True, "a number"),
        ("rate", float("nan"), "a number"),
        ("flag", 1, "true or false"),
        ("flag", "yes please", "true or false"),
        ("names", "a", "a list of strings"),
        ("names", ["a", 3], "a list of strings"),
        ("per_task", {"cls": "x"}, "a mapping of names to integers (item cls"),
        ("fold", 1.5, "an integer or a string"),
        ("fold", False, "an integer or a string"),
    ],
)
def test_wrong_type_names_section_key_value_and_expectation(tmp_path, key, value, expected):
    with pytest.raises(ParamsError) as info:
        stage_params(Typed, "typed", None, {key: value})
    message = str(info.value)
    assert f"typed.{key} = " in message and f"expected {expected}" in message
    assert "\n" not in message


def test_valid_types_pass_unchanged(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("typed:\n  count: 3\n  rate: 1\n  flag: false\n  names: [b, c]\n  per_task: {cls: 2}\n  fold: all\n")
    built = stage_params(Typed, "typed", params, {})
    assert built == Typed(count=3, rate=1, flag=False, names=["b", "c"], per_task={"cls": 2}, fold="all")
    assert type(built.rate) is int  # values reach the dataclass as given: outputs do not change


def test_yaml_exponent_without_dot_gets_a_hint(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("typed:\n  rate: 1e-3\n")  # YAML 1.1 (PyYAML) reads this as the string '1e-3'
    with pytest.raises(ParamsError, match=r"typed\.rate = '1e-3' is not valid: expected a number .*1\.0e-3"):
        stage_params(Typed, "typed", params, {})


def test_range_error_names_section_and_key(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("typed:\n  count: 0\n")
    with pytest.raises(ParamsError, match=r"^.*params\.yaml: typed\.count must be >= 1, got 0$"):
        stage_params(Typed, "typed", params, {})


def project_params():
    """Every params dataclass the CLI builds, by section."""
    from brats_llm.conversations.build import ConversationParams
    from brats_llm.evaluate.cnn import ClsEvalParams, SegEvalParams
    from brats_llm.geometry.stage import GeometryParams
    from brats_llm.preprocess.case import PrepareParams
    from brats_llm.publish.hub import PublishParams
    from brats_llm.report.build import ReportParams
    from brats_llm.slices.slices import SlicesParams
    from brats_llm.split.splits import SplitParams
    from brats_llm.train.cnn.trainer import CnnTrainParams, SegTrainParams
    from brats_llm.ingest.demo import DemoParams
    from brats_llm.llm.tiny import TinyModelParams
    from brats_llm.train.general.stage import GeneralParams
    from brats_llm.train.llm.params import FinetuneParams
    from brats_llm.llm.infer import InferParams
    from brats_llm.llm.consistency import ConsistencyParams
    from brats_llm.evaluate.llm import LlmEvalParams

    return {"demo": DemoParams, "tiny_model": TinyModelParams, "general_model": GeneralParams,
            "llm_finetune": FinetuneParams, "llm": InferParams, "llm_consistency": ConsistencyParams,
            "evaluate_llm": LlmEvalParams,
            "prepare": PrepareParams, "split": SplitParams, "slices": SlicesParams, "geometry": GeometryParams,
            "conversations": ConversationParams, "publish": PublishParams, "train_cls": CnnTrainParams,
            "train_seg": SegTrainParams, "evaluate_cls": ClsEvalParams, "evaluate_seg": SegEvalParams,
            "report": ReportParams}


@pytest.mark.parametrize(
    "section, values, message",
    [
        ("prepare", {"slices": 95.7}, "prepare.slices = 95.7 is not valid: expected an integer"),
        ("prepare", {"slices": "ninety"}, "prepare.slices = 'ninety' is not valid: expected an integer"),
        ("prepare", {"slices": 0}, "prepare.slices must be >= 1, got 0"),
        ("prepare", {"size": -1}, "prepare.size must be >= 1, got -1"),
        ("prepare", {"lower_percentile": 99.9}, "prepare.upper_percentile must be above lower_percentile (99.9)"),
        ("prepare", {"upper_percentile": 101}, "prepare.upper_percentile must be above lower_percentile (0.5) and <= 100"),
        ("prepare", {"raw_dir": ""}, "prepare.raw_dir must name"),
        ("split", {"folds": 1}, "split.folds must be >= 2, got 1"),
        ("split", {"test_fraction": 1.0}, "split.test_fraction must lie in (0, 1), got 1.0"),
        ("split", {"seed": -1}, "split.seed must lie in [0, 2**32)"),
        ("slices", {"planes": ["axial", "upside"]}, "slices.planes must be a non-empty subset"),
        ("slices", {"tumour_range_only": "no"}, "slices.tumour_range_only = 'no' is not valid: expected true or false"),
        ("geometry", {"modality": "pet"}, "geometry.modality must be one of"),
        ("geometry", {"min_tumour_pixels": 0}, "geometry.min_tumour_pixels must be >= 1, got 0"),
        ("conversations", {"fold": -1}, "conversations.fold must be >= 0, got -1"),
        ("publish", {"repo_id": "../../etc"}, "publish.repo_id '../../etc' is not a valid Hub repo id"),
        ("publish", {"endpoint": "huggingface.co"}, "publish.endpoint must be an http(s) URL"),
        ("train_cls", {"epochs": 0}, "train_cls.epochs must be >= 1, got 0"),
        ("train_cls", {"lr": "1e-3"}, "train_cls.lr = '1e-3' is not valid: expected a number"),
        ("train_cls", {"weight_decay": -0.1}, "train_cls.weight_decay must be >= 0, got -0.1"),
        ("train_cls", {"fold": True}, "train_cls.fold = True is not valid: expected an integer or a string"),
        ("train_seg", {"levels": 1}, "train_seg.levels must be >= 2, got 1"),
        ("evaluate_cls", {"threshold": 1.5}, "evaluate_cls.threshold must lie in [0, 1]"),
        ("evaluate_cls", {"bootstrap": 0}, "evaluate_cls.bootstrap must be >= 1"),
        ("evaluate_seg", {"overlays": -1}, "evaluate_seg.overlays must be >= 0, got -1"),
        ("report", {"digits": -1}, "report.digits must be >= 0, got -1"),
        ("demo", {"seed": -1}, "demo.seed must be >= 0, got -1"),
        ("demo", {"difficulty": 1.5}, "demo.difficulty must lie in [0, 1]"),
        ("tiny_model", {"hidden_size": 0}, "tiny_model.hidden_size must be >= 8, got 0"),
        ("tiny_model", {"text_init_std": 0.0}, "tiny_model.text_init_std must be > 0"),
        ("general_model", {"steps": 0}, "general_model.steps must be >= 1, got 0"),
        ("general_model", {"check_rows": -1}, "general_model.check_rows must be >= 0, got -1"),
        ("llm_finetune", {"lora_rank": 0}, "llm_finetune.lora_rank must be >= 1, got 0"),
        ("llm_finetune", {"lora_dropout": 1.0}, "llm_finetune.lora_dropout must lie in [0.0, 0.99]"),
        ("llm_finetune", {"lr": {"cls": 0.0, "center": 0.1, "bbox": 0.1, "polygon": 0.1}},
         "llm_finetune.lr must be > 0 for every task"),
        ("llm_finetune", {"max_steps": {"cls": 1, "center": 0, "bbox": 1, "polygon": 1}},
         "llm_finetune.max_steps must be >= 1"),
        ("llm_finetune", {"push_to_hub": "a/b/c"}, "llm_finetune.push_to_hub 'a/b/c' is not a valid Hub repo id"),
        ("llm", {"max_rows": -1}, "llm.max_rows must be >= 0, got -1"),
        ("llm", {"top_p": 1.5}, "llm.top_p must lie in [0.0, 1.0]"),
        ("llm", {"model": ""}, "llm.model must name"),
        ("llm", {"max_new_tokens": {"cls": 0, "center": 8, "bbox": 8, "polygon": 8}}, "llm.max_new_tokens must be >= 1"),
        ("llm_consistency", {"repeats": 0}, "llm_consistency.repeats must be >= 1, got 0"),
        ("llm_consistency", {"temperature": 0.0}, "llm_consistency.temperature must be > 0"),
        ("evaluate_llm", {"bootstrap": 0}, "evaluate_llm.bootstrap must be >= 1, got 0"),
        ("evaluate_llm", {"fixed_box_fraction": 0.0}, "evaluate_llm.fixed_box_fraction must lie in [0.01, 1.0]"),
    ],
)
def test_project_params_are_checked_before_any_work(tmp_path, section, values, message):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({section: values}))
    with pytest.raises(ParamsError) as info:
        stage_params(project_params()[section], section, params, {})
    assert str(info.value) == f"{params}: {message}" or str(info.value).startswith(f"{params}: {message}")


def test_project_defaults_pass_their_own_checks():
    for section, cls in project_params().items():
        assert stage_params(cls, section, None, {}) == cls()
