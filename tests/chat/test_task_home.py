"""The reply task lives in `chat`; the web process never loads the models' code."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

WEB_PROCESS_IMPORTS = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "sheldonsite.settings"
import django
django.setup()
import sheldonsite.asgi, chat.consumers, chat.services, chat.tasks, chat.api
from celery import current_app
current_app.loader.import_default_modules()  # what a worker's autodiscovery imports
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers") or m.startswith("inference."))
print(loaded)
"""


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def test_the_web_process_imports_no_model_code():
    result = subprocess.run([sys.executable, "-c", WEB_PROCESS_IMPORTS], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # Only the app's configuration: no engine, no torch, no transformers.
    assert result.stdout.strip().splitlines()[-1] in ("[]", "['inference.apps']"), result.stdout


def test_inference_never_imports_chat():
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "inference").rglob("*.py")
        if any(name.split(".")[0] == "chat" for name in imported_modules(path))
    ]
    assert offenders == []


def test_chat_imports_inference_only_inside_functions():
    for path in (REPO / "chat").rglob("*.py"):
        top_level = ast.parse(path.read_text()).body
        for node in top_level:
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            assert not any(name.split(".")[0] == "inference" for name in names), path


def test_the_task_is_registered_by_name_with_late_acks():
    from chat.tasks import GENERATE_REPLY, generate_reply

    assert generate_reply.name == GENERATE_REPLY == "chat.tasks.generate_reply"
    assert generate_reply.acks_late and generate_reply.reject_on_worker_lost
