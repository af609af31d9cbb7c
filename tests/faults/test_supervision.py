"""scripts/supervise.sh (what `make run` runs each process under): a crashed process comes back."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUPERVISE = REPO / "scripts" / "supervise.sh"

# Writes its pid to a file of its own, then waits to be killed.
SERVICE = "import os, sys, time; open(sys.argv[1], 'a').write(f'{os.getpid()}\\n'); time.sleep(600)"


def started_pids(path):
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def wait_for_pids(path, count, timeout=10):
    deadline = time.monotonic() + timeout
    while len(started_pids(path)) < count:
        assert time.monotonic() < deadline, f"only {started_pids(path)} started"
        time.sleep(0.05)
    return started_pids(path)


@pytest.fixture
def supervised(tmp_path):
    processes = []

    def start(name):
        pids = tmp_path / f"{name}.pids"
        process = subprocess.Popen(
            [str(SUPERVISE), name, sys.executable, "-c", SERVICE, str(pids)], stderr=subprocess.PIPE, text=True
        )
        processes.append(process)
        return process, pids

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def test_a_killed_process_is_started_again_and_its_sibling_stays(supervised):
    worker, worker_pids = supervised("worker")
    web, web_pids = supervised("web")
    (first_worker,) = wait_for_pids(worker_pids, 1)
    (first_web,) = wait_for_pids(web_pids, 1)

    started = time.monotonic()
    os.kill(first_worker, signal.SIGKILL)  # a crash, as the Redis-restart bug was
    second_worker = wait_for_pids(worker_pids, 2)[-1]
    assert second_worker != first_worker and time.monotonic() - started < 5
    assert started_pids(web_pids) == [first_web] and worker.poll() is None and web.poll() is None
    os.kill(first_web, 0)  # still running

    # Stopping the supervisor stops its process and does not start it again.
    worker.terminate()
    assert worker.wait(timeout=10) == 0
    time.sleep(0.3)
    with pytest.raises(ProcessLookupError):
        os.kill(second_worker, 0)
    assert len(started_pids(worker_pids)) == 2


# Like a worker loading its models: SIGTERM is heard only once the load is done, here never.
DEAF = "import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + SERVICE.split("; ", 1)[1]


def test_a_stop_the_process_does_not_answer_ends_it_after_stop_seconds(tmp_path):
    pids = tmp_path / "deaf.pids"
    supervisor = subprocess.Popen(
        [str(SUPERVISE), "deaf", sys.executable, "-c", DEAF, str(pids)],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "STOP_SECONDS": "1"},
    )
    (deaf,) = wait_for_pids(pids, 1)
    time.sleep(0.5)  # its handler is set
    supervisor.terminate()
    assert supervisor.wait(timeout=10) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(deaf, 0)
    assert "did not stop in 1 s" in supervisor.stderr.read()


def test_run_script_supervises_both_processes():
    script = (REPO / "scripts" / "run.sh").read_text()
    assert "scripts/supervise.sh worker .venv/bin/celery" in script
    assert "scripts/supervise.sh web .venv/bin/daphne" in script
