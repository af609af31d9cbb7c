"""The project's packaging: runtime requirements apart from test tools, the image, the model cards."""
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
APPS = ("accounts", "chat", "data", "inference", "review", "sheldonsite", "training")


def pinned(path):
    """{canonical name: line} of a requirements file's pins (includes and comments left out)."""
    lines = (line.strip() for line in (REPO / path).read_text().splitlines())
    return {canonicalize_name(Requirement(line).name): line for line in lines if line and line[0] not in "#-"}


def model_card_metadata(card: str) -> dict:
    """The YAML front matter of a model card (README.md)."""
    match = re.match(r"---\n(.*?)\n---\n", card, re.DOTALL)
    assert match, "the card starts with YAML metadata between --- lines"
    return yaml.safe_load(match.group(1))


def test_requirement_files_split_runtime_from_tools():
    runtime, dev = pinned("requirements.txt"), pinned("requirements-dev.txt")
    assert "-r requirements.txt" in (REPO / "requirements-dev.txt").read_text().splitlines()
    assert not runtime.keys() & dev.keys(), "a package is pinned in both files"
    for tool in ("pytest", "playwright", "flask", "gevent", "gunicorn", "ruff"):
        assert tool in dev and tool not in runtime, tool


def test_the_product_imports_no_test_or_bench_package():
    """Every module of the apps imports with the dev-only packages made unimportable."""
    runtime = set(pinned("requirements.txt"))
    dev_only = set(pinned("requirements-dev.txt")) - runtime
    blocked = sorted(
        module
        for module, distributions in metadata.packages_distributions().items()
        if {canonicalize_name(d) for d in distributions} <= dev_only
    )
    modules = sorted(
        ".".join(path.relative_to(REPO).with_suffix("").parts)
        for app in APPS
        for path in (REPO / app).rglob("*.py")
        if "migrations" not in path.parts and path.name != "__init__.py"
    )
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys

        class Blocked(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError(f"{{name}} is a test or bench package, not in requirements.txt")

        sys.meta_path.insert(0, Blocked())
        import django
        django.setup()
        for module in {modules!r}:
            importlib.import_module(module)
        """
    )
    env = {"DJANGO_SETTINGS_MODULE": "sheldonsite.settings", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pytest" in blocked and "flask" in blocked


def test_the_image_installs_runtime_only_and_runs_unprivileged():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "requirements-dev" not in dockerfile
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), "the image's last USER is not root"
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    for path in (".git", ".venv", "var", "test-output"):
        assert path in ignored, f"{path} would be copied into the image"


def test_every_shipped_model_card_names_its_base_model_licence_and_data():
    cards = [path for path in (REPO / "models").glob("*/README.md")]
    assert cards
    for card in cards:
        metadata_ = model_card_metadata(card.read_text())
        assert metadata_["base_model"] not in ("", "unknown"), card
        assert metadata_["license"] not in ("", "unknown"), card
        assert metadata_["training_data"], card
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
