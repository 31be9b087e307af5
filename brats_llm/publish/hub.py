"""The ``publish`` stage: write the Hub repo layout (parquet per config/split + card), upload, pin the revision."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from datasets import DatasetDict, load_from_disk
from huggingface_hub import DatasetCard, DatasetCardData, HfApi
from huggingface_hub.utils import HFValidationError, validate_repo_id

from brats_llm import atomic
from brats_llm.constants import GRADES
from brats_llm.conversations.prompts import PROMPT_VERSION, TASKS
from brats_llm.errors import BratsLlmError
from brats_llm.publish.pinned import CARD_FILE, repo_revisions

#: The card template: cards/dataset_card.md, shipped inside the package (a link in the source tree, a file in the wheel).
CARD_TEMPLATE = Path(__file__).parent / "dataset_card.md"


@dataclass(frozen=True)
class PublishParams:
    """``publish`` section of params.yaml.

    Attributes:
        repo_id: Hub dataset repo (``user/name``); empty = the embedded default, a local folder only.
        private: create the repo private (BraTS data terms).
        endpoint: Hub endpoint; empty = huggingface_hub's default (``HF_ENDPOINT`` or huggingface.co).
    """

    repo_id: str = ""
    private: bool = True
    endpoint: str = ""

    def __post_init__(self) -> None:
        if self.repo_id:
            check_repo_id(self.repo_id, "repo_id")
        if self.endpoint and urlsplit(self.endpoint).scheme not in ("http", "https"):
            raise ValueError(f"endpoint must be an http(s) URL such as https://huggingface.co or '', got {self.endpoint!r}")


def check_repo_id(repo_id: str, setting: str) -> None:
    """Refuse a Hub repo id the Hub would refuse (``user/name``: letters, digits, ``-_.``), before any work.

    Raises:
        ValueError: naming ``setting``, the value and huggingface_hub's reason.
    """
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"{setting} {repo_id!r} is not a valid Hub repo id ('name' or 'namespace/name'): "
                         f"{str(error).split(':')[0]}") from error


class PublishError(BratsLlmError, RuntimeError):
    """Upload failed or was refused; the message names the endpoint and repo, never the token."""


LOGIN_HINT = "set HF_TOKEN or run `hf auth login`"


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The Hub endpoint an upload really uses: ``endpoint``, else ``HF_ENDPOINT``, else huggingface.co.

    Credentials in the URL (``https://user:secret@host``) are dropped: the result is logged and recorded.
    """
    from urllib.parse import urlunsplit

    url = HfApi(endpoint=endpoint or None).endpoint.rstrip("/")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
    return urlunsplit(parts)


def _check_visibility(api: HfApi, repo_id: str, repo_type: str, private: bool, where: str, setting: str) -> None:
    """Refuse to upload unless the (existing or just created) repo's visibility is the one asked for.

    ``create_repo(private=..., exist_ok=True)`` sets the visibility only when it creates the repo, so an
    existing public repo would otherwise silently receive data meant to stay private. Never changes it.
    """
    private_now = getattr(api.repo_info(repo_id, repo_type=repo_type), "private", None)
    if private_now is None:
        raise PublishError(f"refusing to upload to {where}: the Hub did not report whether the repo is private "
                           f"({setting} is {str(private).lower()}); check it on the Hub")
    if bool(private_now) != private:
        now, wanted = ("private", "public") if private_now else ("public", "private")
        raise PublishError(
            f"refusing to upload to {where}: the repo is {now} but {setting} is {str(private).lower()} "
            f"(uploads never change a repo's visibility). Make the repo {wanted} on the Hub (repo Settings), "
            f"use another repo id, or set {setting}: {str(bool(private_now)).lower()} if a {now} repo is intended")


def _configs(volumes: Path, slices: Path, geometry: Path, conversations: Path) -> dict[str, DatasetDict]:
    configs = {
        "volumes": DatasetDict({"train": load_from_disk(str(volumes))}),
        "slices": DatasetDict({"train": load_from_disk(str(slices))}),
        "geometry": DatasetDict({"train": load_from_disk(str(geometry))}),
    }
    for task in TASKS:
        configs[f"conversations-{task}"] = load_from_disk(str(conversations / task))
    return configs


def _grade_counts(dataset) -> dict[str, int]:
    grades = dataset["grade"] if "grade" in dataset.column_names else []
    return {g: sum(1 for x in grades if x == g) for g in GRADES}


def write_repo(folder: Path, configs: dict[str, DatasetDict], params_used: dict[str, Any], dvc_hash: str,
               synthetic: bool) -> None:
    """The repo layout: ``<config>/<split>-00000-of-00001.parquet`` and a README card with ``configs``."""
    card_configs, count_rows = [], []
    for name, splits in configs.items():
        files = []
        for split, dataset in splits.items():
            relative = f"{name}/{split}-00000-of-00001.parquet"
            (folder / name).mkdir(parents=True, exist_ok=True)
            dataset.to_parquet(str(folder / relative))
            files.append({"split": split, "path": relative})
            count_rows.append({"config": name, "split": split, "rows": len(dataset), **_grade_counts(dataset)})
        card_configs.append({"config_name": name, "data_files": files})
    card_data = DatasetCardData(
        license="other", pretty_name="BraTS glioma datasets for CNN vs vision-LLM experiments",
        configs=card_configs, tags=["medical-imaging", "mri", "brats", "glioma"] + (["synthetic"] if synthetic else []),
    )
    card = DatasetCard.from_template(
        card_data, template_path=str(CARD_TEMPLATE), count_rows=count_rows, prompt_version=PROMPT_VERSION,
        dataset_fingerprint=dvc_hash, params_yaml=yaml.safe_dump(params_used, sort_keys=True).strip(),
        source_description="a synthetic BraTS-layout cohort" if synthetic else "a BraTS release",
        synthetic_warning="**These rows are synthetic phantoms, not patient data.**" if synthetic else "",
    )
    atomic.write_text(folder / CARD_FILE, str(card))


def upload_to_hub(folder: Path, repo_id: str, *, repo_type: str = "dataset", private: bool = True,
                  endpoint: str | None = None, message: str = "brats-llm publish", setting: str = "private") -> str:
    """Create the repo (private, if needed) and upload ``folder`` in one commit; return the commit sha.

    An existing repo must already have the visibility asked for (``private``); otherwise nothing is
    uploaded and its visibility is left alone. ``setting`` names the option behind ``private`` in messages.
    The token comes from ``HF_TOKEN`` or ``hf auth login`` (huggingface_hub resolves it; never logged).

    Raises:
        PublishError: invalid ``repo_id``; visibility mismatch; authentication, network or server failure
            (the local folder is kept).
    """
    try:
        check_repo_id(repo_id, "repo id")
    except ValueError as error:
        raise PublishError(str(error)) from None
    api = HfApi(endpoint=resolve_endpoint(endpoint))
    where = f"{api.endpoint}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        _check_visibility(api, repo_id, repo_type, private, where, setting)
        info = api.upload_folder(repo_id=repo_id, repo_type=repo_type, folder_path=str(folder), commit_message=message,
                                 ignore_patterns=[f"*{atomic.MARKER}"])  # the output marker stays local
    except PublishError:
        raise
    except Exception as error:  # HTTP, connection and validation errors of huggingface_hub / requests / httpx
        status = getattr(getattr(error, "response", None), "status_code", None)
        hint = f" ({LOGIN_HINT})" if status in (401, 403) else ""
        raise PublishError(f"upload to {where} failed: {type(error).__name__}{f' HTTP {status}' if status else ''}{hint}") from None
    return info.oid


def upload(folder: Path, params: PublishParams) -> str:
    """Upload the dataset repo folder as ``params`` say; see :func:`upload_to_hub`."""
    return upload_to_hub(folder, params.repo_id, private=params.private, endpoint=params.endpoint or None,
                         setting="publish.private")


def publish(volumes: str | os.PathLike, slices: str | os.PathLike, geometry: str | os.PathLike,
            conversations: str | os.PathLike, out_dir: str | os.PathLike, revision_file: str | os.PathLike,
            params: PublishParams, params_used: dict[str, Any] | None = None, dvc_hash: str = "",
            synthetic: bool = False) -> dict[str, Any]:
    """Write the repo layout to ``out_dir`` and, with a ``repo_id``, upload it; record the revision.

    ``revision_file`` (JSON) is what downstream stages depend on: ``{"repo_id", "revision", "path"}``.
    Re-running with unchanged inputs rewrites identical files and, on the Hub, adds no change.
    """
    out_dir, revision_file = Path(out_dir), Path(revision_file)
    configs = _configs(Path(volumes), Path(slices), Path(geometry), Path(conversations))
    with atomic.atomic_dir(out_dir, kind="hub") as staging:
        write_repo(staging, configs, params_used or {}, dvc_hash, synthetic)
    revision, config_revisions = repo_revisions(out_dir, sorted(configs))
    record = {"repo_id": params.repo_id or None, "path": out_dir.as_posix(), "revision": revision,
              "endpoint": params.endpoint or None, "configs": sorted(configs), "config_revisions": config_revisions}
    if params.repo_id:  # the endpoint really used (params, else HF_ENDPOINT, else huggingface.co)
        record["endpoint"] = resolve_endpoint(params.endpoint)
    if params.repo_id:
        record["revision"] = upload(out_dir, params)
    atomic.write_json(revision_file, record)
    return record
