"""Run the load benchmark: the product's stack against the reference design.

Starts each side on this machine with the same model, token limit and
messages, drives it with bench/load.py for each number of users, samples
the peak memory of every worker process, and writes a Markdown table, a
JSON file and a PNG chart of latency against users under --output-dir:

    python bench/run.py --users 1 4 16 32 --messages 2 --max-new-tokens 40

Needs DATABASE_URL (PostgreSQL) and REDIS_URL; `make bench` sets them.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PY = sys.executable
BIN = Path(PY).parent


def wait_for_port(port, timeout=300, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class PeakMemory:
    """Samples the resident memory of processes (and their children) in a thread."""

    def __init__(self, processes, interval=0.2):
        self.roots = [psutil.Process(p.pid) for p in processes]
        self.peaks = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)

    def _sample(self, interval):
        while not self._stop.is_set():
            for root in self.roots:
                try:
                    for process in [root, *root.children(recursive=True)]:
                        rss = process.memory_info().rss
                        self.peaks[process.pid] = max(self.peaks.get(process.pid, 0), rss)
                except psutil.Error:
                    pass
            self._stop.wait(interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def peak_mib(self):
        """Peak MiB of each process that held a model (over 200 MiB), largest first."""
        return sorted((round(rss / 2**20) for rss in self.peaks.values() if rss > 200 * 2**20), reverse=True)


@contextmanager
def running(commands, env, ports, log_dir):
    """Start processes, wait for their ports, stop them all at the end."""
    processes = []
    try:
        for name, command in commands:
            log = open(log_dir / f"{name}.log", "w")
            processes.append(
                subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
        for port in ports:
            wait_for_port(port, process=processes[0])
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def stack_commands(workers, web_ports, concurrency, queue="cpu", app="sheldonsite"):
    commands = [
        (f"daphne-{port}", [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "sheldonsite.asgi:application"])
        for port in web_ports
    ]
    for index in range(workers):
        commands.append(
            (
                f"worker-{index}",
                [str(BIN / "celery"), "-A", app, "worker", "-Q", queue, "--pool", "threads",
                 "--concurrency", str(concurrency), "-n", f"bench{index}@%h", "--loglevel", "INFO"],
            )
        )
    return commands


def wait_for_workers(env, count, timeout=300):
    """Block until `count` Celery workers answer a ping (their models are loaded lazily)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = subprocess.run(
            [str(BIN / "celery"), "-A", "sheldonsite", "inspect", "ping", "--json", "--timeout", "2"],
            cwd=REPO, env=env, capture_output=True, text=True,
        )
        try:
            if len(json.loads(result.stdout or "{}")) >= count:
                return
        except json.JSONDecodeError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{count} Celery worker(s) did not answer within {timeout} s")


def load(target, urls, users, messages, out_dir, label):
    result_path = out_dir / f"{label}-{users}u.json"
    subprocess.run(
        [PY, "bench/load.py", "--target", target, *(f"--url={url}" for url in urls), "--users", str(users),
         "--messages", str(messages), "--create-users", "--json", str(result_path)],
        cwd=REPO, check=False,
    )
    return json.loads(result_path.read_text())["summary"]


def warm_up(target, urls, users):
    """A reply per model-holding process first, so model loading is not counted as latency."""
    subprocess.run(
        [PY, "bench/load.py", "--target", target, *(f"--url={url}" for url in urls), "--users", str(users),
         "--messages", "1", "--create-users"],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL,
    )


def measure(args, target, urls, model_processes, out_dir, label, layout):
    """Warm up, then one load run per number of users, with the peak memory of the model processes."""
    warm_up(target, urls, users=len(model_processes))
    results = []
    with PeakMemory(model_processes) as memory:
        for users in args.users:
            summary = load(target, urls, users, args.messages, out_dir, label)
            summary.update(layout)
            results.append(summary)
            print(f"{label}, {users} users: {json.dumps(summary)}", flush=True)
    for summary in results:
        summary["worker_peak_mib"] = memory.peak_mib()
    return results


def bench_stack(args, env, out_dir, workers, web_ports):
    worker_env = {**env, "INFERENCE_THREADS": str(args.worker_threads)}
    urls = [f"http://127.0.0.1:{port}" for port in web_ports]
    with running(stack_commands(workers, web_ports, args.concurrency), worker_env, web_ports, out_dir) as procs:
        wait_for_workers(worker_env, workers)
        layout = {"workers": workers, "web_processes": len(web_ports)}
        return measure(args, "stack", urls, procs[len(web_ports):], out_dir, f"stack-{workers}w", layout)


def bench_reference(args, env, out_dir):
    port = args.reference_port
    # Two processes on two cores: one torch thread each, the fairest setting for it.
    # The reference design kept nothing between requests (no prefix store either) and generated one reply
    # per request, to the token limit (no sample-and-rank, no sentence limit).
    reference_env = {
        **env, "INFERENCE_THREADS": str(max(1, args.cores // 2)), "INFERENCE_PREFIX_CACHE": "0",
        "REPLY_CANDIDATES": "1", "REPLY_MAX_SENTENCES": "0",
        # The reference's engine: torch with int8 linear layers, as in every earlier run of this benchmark.
        "INFERENCE_ENGINE": "torch", "REFERENCE_TORCH_INT8": "1",
    }
    command = [str(BIN / "gunicorn"), "-w", "2", "-k", "gevent", "-b", f"127.0.0.1:{port}", "--timeout", "900",
               "bench.reference_server:app"]
    with running([("reference", command)], reference_env, [port], out_dir) as procs:
        # gunicorn's two worker processes are children of the one started here.
        workers = psutil.Process(procs[0].pid).children()
        layout = {"workers": 2, "web_processes": 2}
        return measure(args, "reference", [f"http://127.0.0.1:{port}"], workers, out_dir, "reference", layout)


def write_report(results, args, out_dir):
    from bench.report import markdown_table, plot_latency

    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    table = markdown_table(results, args)
    (out_dir / "results.md").write_text(table)
    plot_latency(results, out_dir / "latency.png")
    print(table)
    print(f"Wrote {out_dir / 'results.md'}, {out_dir / 'results.json'} and {out_dir / 'latency.png'}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--messages", type=int, default=2, help="messages per user")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--concurrency", type=int, default=32, help="task threads per stack worker")
    parser.add_argument("--worker-threads", type=int, default=0,
                        help="engine threads per stack worker (INFERENCE_THREADS; 0, the product's default: one per core)")
    parser.add_argument("--queue", default="cpu", choices=["cpu", "gpu"], help="the queue the stack's workers serve")
    parser.add_argument("--two-workers", action="store_true", help="also run the stack with two worker processes")
    parser.add_argument("--two-web", action="store_true", help="serve the stack from two daphne processes")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--web-port", type=int, default=8300)
    parser.add_argument("--reference-port", type=int, default=8310)
    parser.add_argument("--output-dir", type=Path, default=REPO / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S"))
    return parser.parse_args(argv)


def bench_env(args):
    """The processes' environment: this one's, the benchmark's model settings, no throttles."""
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name):
            sys.exit(f"{name} must be set: the benchmark runs the real stack (make bench sets both)")
    return {
        **os.environ,
        "MAX_NEW_TOKENS": str(args.max_new_tokens),
        "GENERATION_SEED": str(args.seed),
        "CHAT_RATE_LIMIT": "100000/60",
        # Every simulated user logs in from this machine's one address.
        "CHAT_TOKEN_BUDGET": "100000000/60",
        "LOGIN_RATE_LIMIT": "100000/60",
        # The same simulated users log in again in every row and every run.
        "LOGIN_USER_RATE_LIMIT": "100000/60",
        "PYTHONUNBUFFERED": "1",
    }


def main(argv=None):
    args = parse_args(argv)
    env = bench_env(args)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    web_ports = [args.web_port, args.web_port + 1] if args.two_web else [args.web_port]
    results = bench_stack(args, env, args.output_dir, 1, web_ports)
    if args.two_workers:
        results += bench_stack(args, env, args.output_dir, 2, web_ports)
    if not args.skip_reference:
        results += bench_reference(args, env, args.output_dir)
    write_report(results, args, args.output_dir)


if __name__ == "__main__":
    main()
