"""`dvc plots show` renders offline: .dvc/plots.html inlines the vega libraries DVC's renderer names.

The template is built by tools/plots_template.py and wired in by `[plots] html_template` in .dvc/config.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from configobj import ConfigObj

ROOT = Path(__file__).resolve().parents[1]
SCRIPT_TAG = re.compile(r'<script data-package="([^"]+)" data-version="([^"]+)">')
REMOTE_SRC = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def _generator():
    """tools/plots_template.py, imported by path (tools/ is not a package)."""
    name = "_brats_llm_tools_plots_template"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "plots_template.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def _template_path() -> Path:
    value = ConfigObj(str(ROOT / ".dvc" / "config"))["plots"]["html_template"]
    return ROOT / ".dvc" / value


def _dvc_versions() -> dict[str, str]:
    from dvc_render.vega import VegaRenderer

    return dict(re.findall(r"cdn\.jsdelivr\.net/npm/([a-z-]+)@([0-9.]+)", VegaRenderer.SCRIPTS))


def test_template_wired_in_dvc_config():
    template = _template_path()
    assert template.is_file(), template
    text = template.read_text(encoding="utf-8")
    assert text.count("{plot_divs}") == 1
    assert "{scripts}" not in text  # else DVC inserts its CDN <script src> tags again
    assert not REMOTE_SRC.search(text)


def test_template_versions_are_the_ones_dvc_targets():
    dvc = _dvc_versions()
    assert set(dvc) == {"vega", "vega-lite", "vega-embed"}, dvc
    text = _template_path().read_text(encoding="utf-8")
    inlined = dict(SCRIPT_TAG.findall(text))
    assert inlined == dvc, "DVC's vega versions changed: update PACKAGES in tools/plots_template.py and rebuild"
    assert {p.name: p.version for p in _generator().PACKAGES} == dvc
    # The blocks hold the builds themselves (each carries its version string) and their licences.
    blocks = re.findall(r"<script data-package[^>]*>(.*?)</script>", text, re.DOTALL)
    assert len(blocks) == 3 and text.count("</script>") == 3
    for (name, version), block in zip(inlined.items(), blocks):
        assert f'"{version}"' in block, name
        assert "BSD-3-Clause" in block and "University of Washington Interactive Data Lab" in block, name
        assert "Redistributions in binary form must reproduce" in block, name
    for package in _generator().PACKAGES:
        assert package.integrity in text, package.spec


def _fake_tarball(folder: Path, name: str, version: str, build: str) -> Path:
    files = {
        "package/package.json": json.dumps({"name": name, "version": version, "license": "BSD-3-Clause"}),
        "package/LICENSE": f"Copyright (c) {name} authors\nRedistribution ... BSD",
        f"package/build/{name}.min.js": build,
    }
    path = folder / f"{name}-{version}.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_generator_checks_integrity_and_escapes(tmp_path, monkeypatch):
    generator = _generator()
    packages = []
    for package in generator.PACKAGES:
        build = f'var v="{package.version}";x="</script><p>";\n//# sourceMappingURL={package.name}.min.js.map\n'
        tarball = _fake_tarball(tmp_path, package.name, package.version, build)
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        packages.append(dataclasses.replace(package, integrity=integrity))
    monkeypatch.setattr(generator, "PACKAGES", tuple(packages))

    page = generator.build_page(tmp_path)
    assert page.count("</script>") == 3 and page.count(r"<\/script><p>") == 3
    assert "sourceMappingURL" not in page
    assert page.count("{plot_divs}") == 1 and page.count("{refresh_tag}") == 1 and "{scripts}" not in page

    monkeypatch.setattr(generator, "PACKAGES", (dataclasses.replace(packages[0], integrity="sha512-AAAA"),))
    with pytest.raises(SystemExit, match="integrity"):
        generator.build_page(tmp_path)


@pytest.fixture(scope="module")
def plots_repo(tmp_path_factory) -> Path:
    """A throwaway DVC repo with one TSV plot and our template wired in, after `dvc plots show`."""
    repo = tmp_path_factory.mktemp("plots_repo")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def dvc(*args: str) -> None:
        command = [sys.executable, "-m", "dvc", *args]
        result = subprocess.run(command, check=False, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr

    dvc("init", "--no-scm", "-q")
    template = _template_path()
    shutil.copyfile(template, repo / ".dvc" / template.name)
    with (repo / ".dvc" / "config").open("a", encoding="utf-8") as config:
        config.write(f"[plots]\n    html_template = {template.name}\n")
    rows = "\n".join(f"{step}\t{1.0 / (step + 1):.4f}" for step in range(10))
    (repo / "loss.tsv").write_text(f"step\tloss\n{rows}\n", encoding="utf-8")
    (repo / "dvc.yaml").write_text("plots:\n  - loss.tsv:\n      x: step\n      y: loss\n", encoding="utf-8")
    dvc("plots", "show")
    return repo


def test_dvc_plots_show_inlines_vega(plots_repo):
    html = (plots_repo / "dvc_plots" / "index.html").read_text(encoding="utf-8")
    assert "vegaEmbed('#" in html  # the plot was rendered with vega, not dropped
    assert not REMOTE_SRC.search(html)
    assert "cdn.jsdelivr.net" not in html
    assert dict(SCRIPT_TAG.findall(html)) == _dvc_versions()
    assert 'var e="5.20.2"' in html  # vega's own version constant in its minified build


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium/Chrome installed")
def test_plots_render_offline_in_chromium(plots_repo, tmp_path):
    """Load the page with networking off; vega-embed must draw the plot (a canvas of marks)."""
    page = plots_repo / "dvc_plots" / "index.html"
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=10000", "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    probe = ["unshare", "-rn", "true"]
    if shutil.which("unshare") and subprocess.run(probe, check=False, capture_output=True).returncode == 0:
        command = ["unshare", "-rn", *command]  # no network namespace at all
    try:
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.skip("Chromium did not finish within 60 s")
    if result.returncode != 0 or "<body" not in result.stdout:
        pytest.skip(f"Chromium could not run here: {result.stderr[-500:]}")
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "ERROR" in line.split("CONSOLE")[0]], console
    assert 'class="vega-embed' in result.stdout
    assert len(re.findall(r'<(?:canvas|svg)\b[^>]*class="marks"', result.stdout)) == 1, result.stdout[-2000:]
