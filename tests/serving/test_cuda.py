"""The CUDA path: on a GPU the torch engine serves chat and T5 models (OpenVINO's engine is the CPU's).

Runs where CUDA exists (the `gpu` queue's workers; bench/gpu.sh on a GPU machine, bench/device/ on the device tool's);
skipped elsewhere.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inference.backends import CausalChatBackend, Seq2SeqBackend, backend_for
from inference.loading import Engine, engine_for, load_generator
from inference.requests import Sequence

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device here: this machine serves with OpenVINO on CPU; the test runs on a GPU machine",
)


@pytest.mark.parametrize(("model", "backend_class"), [("tiny_chat", CausalChatBackend), ("tiny_t5", Seq2SeqBackend)])
def test_a_gpu_serves_chat_and_t5_models_with_the_torch_engine_on_the_device(model, backend_class, request, settings):
    folder = str(request.getfixturevalue(model))
    settings.INFERENCE_ENGINE = "auto"
    assert engine_for(folder) == Engine.TORCH
    generator = load_generator(folder)
    assert next(generator.model.parameters()).device.type == "cuda"
    backend = backend_for(generator, max_new_tokens=6, prefix_cache_tokens=1024)
    assert isinstance(backend, backend_class)
    backend.eos_ids = set()
    rows = [Sequence() for _ in range(3)]
    backend.generate([backend.prompt([], message, None) for message in ("Hi.", "Physics?", "Bazinga!")], rows)
    assert [len(row.token_ids) for row in rows] == [6, 6, 6]


def test_the_engine_benchmark_measures_the_gpu_it_runs_on(tiny_chat, tmp_path):
    env = {**os.environ, "GENERATOR_MODEL": str(tiny_chat), "GENERATOR_ADAPTER": "none", "VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "bench/engine.py", "--engines", "torch-float32", "--rows", "1", "4", "--new-tokens", "3",
         "--repeat", "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"GPU: {torch.cuda.get_device_name()}" in result.stdout
    assert "Limits: memory copy" in result.stdout and "Limits on the GPU: memory copy" in result.stdout
    assert "GPU peak" in result.stdout  # the device's memory, besides the process's
