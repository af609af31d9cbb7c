"""A newcomer's first run, measured: `make run` on a clean clone until ready, the first reply, a second run.

    .venv/bin/python bench/first_run.py [--repo .] [--transcripts PATH] [--json PATH] [--keep]

Clones the repository's committed HEAD into a fresh folder and runs `make run`
there as a newcomer would (no DATABASE_URL or REDIS_URL: the embedded mode;
pip's download cache is used if the machine has one). It times each phase
from the lines `make run` prints, until "Sheldon is ready"; then logs in as the
demo account over the documented protocol and times the first reply's first
word after "ready"; stops `make run` with Ctrl-C (SIGINT) and times a second
`make run` until ready. Prints the figures (and writes them as JSON with
--json). Slow by nature: the first run installs everything and builds the index.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import websockets

REPO = Path(__file__).resolve().parent.parent
READY = "Sheldon is ready"
# Lines of `make run` that end a phase: (phase, text of the line that ends it).
PHASES = (
    ("install the requirements", "scripts/run.sh"),  # make echoes the command once its prerequisites are done
    ("migrate, import, build the index, demo account", "Demo login"),
    ("start the server and load the models", READY),
)
DEMO_USERNAME = "demo"  # its password is generated per installation: var/demo-password of the clone
MESSAGE = "Hello Sheldon, how are you today?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MakeRun:
    """`make run` in the clone, its output read line by line with the time each line came."""

    def __init__(self, clone: Path, env: dict, log: Path):
        self.started = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        self.log = log.open("a")
        self.process = subprocess.Popen(
            ["make", "run"],
            cwd=clone,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            # A bench started in the background (`&`, nohup) passes on SIGINT ignored, and
            # Ctrl-C would then stop nothing: the run gets it back, as in a terminal.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.seen = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.log.write(line)
            self.log.flush()
            with self.seen:
                self.lines.append((time.monotonic() - self.started, line.rstrip()))
                self.seen.notify_all()
        with self.seen:
            self.seen.notify_all()

    def wait_for(self, text: str, timeout: float) -> float:
        """Seconds from the start of `make run` to its first line containing `text`."""
        deadline = time.monotonic() + timeout
        with self.seen:
            while True:
                for at, line in self.lines:
                    if text in line:
                        return at
                if self.process.poll() is not None:
                    raise RuntimeError(f"make run ended before {text!r}; see {self.log.name}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no {text!r} after {timeout:.0f} s; see {self.log.name}")
                self.seen.wait(1)

    def phases(self) -> dict:
        times, last = {}, 0.0
        for name, marker in PHASES:
            at = next((at for at, line in self.lines if marker in line), None)
            if at is not None:
                times[name] = round(at - last, 1)
                last = at
        return times

    def stop(self) -> float | None:
        """Ctrl-C, as a person stops it: seconds until `make run` ended, None if it had to be killed after 60 s."""
        if self.process.poll() is not None:
            return 0.0
        pressed = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=60)
            return round(time.monotonic() - pressed, 1)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return None


def wait_for_free_port(port: int, timeout: float = 30) -> None:
    """Until nothing listens on the port any more (a killed server's process may take a moment to go)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                return
            except OSError:
                time.sleep(0.5)
    raise RuntimeError(f"port {port} still taken {timeout:.0f} s after make run was stopped")


async def first_reply(url: str, clone: Path) -> dict:
    """Log in as the demo account, send one message; seconds to the first word and to the whole reply."""
    demo = {"username": DEMO_USERNAME, "password": (clone / "var" / "demo-password").read_text().strip()}
    async with httpx.AsyncClient(base_url=url, timeout=300, follow_redirects=True) as http:
        await http.get("/accounts/login/")
        await http.post(
            "/accounts/login/",
            data={**demo, "csrfmiddlewaretoken": http.cookies["csrftoken"]},
            headers={"Referer": f"{url}/accounts/login/"},
        )
        created = await http.post("/api/conversations/", json={}, headers={"X-CSRFToken": http.cookies["csrftoken"]})
        created.raise_for_status()
        cookie = "; ".join(f"{name}={value}" for name, value in http.cookies.items())
        ws_url = url.replace("http", "ws", 1) + f"/ws/conversations/{created.json()['id']}/"
        async with websockets.connect(ws_url, additional_headers={"Cookie": cookie, "Origin": url}) as sock:
            sent = time.monotonic()
            await sock.send(json.dumps({"type": "user_message", "text": MESSAGE}))
            first_word = None
            while True:
                frame = json.loads(await asyncio.wait_for(sock.recv(), 300))
                if frame["type"] == "token" and first_word is None:
                    first_word = time.monotonic() - sent
                elif frame["type"] == "reply_done":
                    message = frame["message"]
                    return {
                        "first_word_s": round(first_word, 2) if first_word is not None else None,
                        "reply_s": round(time.monotonic() - sent, 2),
                        "status": message["status"],
                        "text": message["text"],
                        "record": {
                            key: message["record"].get(key)
                            for key in ("queue_seconds", "warmup_seconds", "seconds", "waited_seconds")
                        },
                    }
                elif frame["type"] == "error":
                    raise RuntimeError(f"the first message was refused: {frame}")


def default_transcripts() -> str:
    """The transcripts this checkout's `make run` would read (a clone in a temporary folder would not find them)."""
    for candidate in (
        REPO / "data" / "raw" / "1_10_seasons_tbbt.csv",
        REPO.parent / "shared" / "data" / "tbbt_transcripts.csv",
    ):
        if candidate.is_file():
            return str(candidate)
    return ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default=str(REPO), help="repository to clone (its committed HEAD)")
    parser.add_argument(
        "--transcripts",
        default=os.environ.get("TRANSCRIPTS") or default_transcripts(),
        help="TRANSCRIPTS for the clone; empty: the demo corpus",
    )
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its log is make-run.log)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed to a run until ready")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="sheldon-first-run-"))
    clone = folder / "sheldon"
    subprocess.run(["git", "clone", "--quiet", args.repo, str(clone)], check=True)
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "VIRTUAL_ENV", "VAR_DIR", "DJANGO_SETTINGS_MODULE")
    }
    env.update(HOST="127.0.0.1", PORT=str(port), TRANSCRIPTS=args.transcripts)
    log = folder / "make-run.log"
    url = f"http://127.0.0.1:{port}"
    figures = {
        "commit": subprocess.run(
            ["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "transcripts": args.transcripts or "demo corpus",
        "cpus": os.cpu_count(),
    }

    print(f"Clone in {clone}; `make run` on port {port}, log {log}", flush=True)
    first = MakeRun(clone, env, log)
    try:
        figures["first_run_ready_s"] = round(first.wait_for(READY, args.timeout), 1)
        figures["first_run_phases_s"] = first.phases()
        print(f"first make run ready after {figures['first_run_ready_s']} s", flush=True)
        figures["first_reply"] = asyncio.run(first_reply(url, clone))
        print(f"first reply: {figures['first_reply']}", flush=True)
    finally:
        figures["first_run_stop_s"] = first.stop()
        print(f"first make run stopped by Ctrl-C after {figures['first_run_stop_s']} s", flush=True)
    wait_for_free_port(port)
    second = MakeRun(clone, env, log)
    try:
        figures["second_run_ready_s"] = round(second.wait_for(READY, args.timeout), 1)
    finally:
        figures["second_run_stop_s"] = second.stop()

    reply = figures["first_reply"]
    print()
    print(f"| step (commit {figures['commit']}, {figures['cpus']} CPUs, {figures['transcripts']}) | seconds |")
    print("| --- | --- |")
    for name, seconds in figures["first_run_phases_s"].items():
        print(f"| first run: {name} | {seconds} |")
    print(f"| **first `make run` until ready** | **{figures['first_run_ready_s']}** |")
    print(f"| **first reply's first word after ready** | **{reply['first_word_s']}** |")
    print(f"| first reply complete ({reply['status']}) | {reply['reply_s']} |")
    print(f"| **second `make run` until ready** | **{figures['second_run_ready_s']}** |")
    for run in ("first", "second"):
        stopped = figures[f"{run}_run_stop_s"]
        print(f"| {run} run: Ctrl-C until stopped | {stopped if stopped is not None else 'not within 60 s (killed)'} |")
    print(f"first reply's record: {reply['record']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    if not args.keep:
        subprocess.run(["rm", "-rf", str(folder)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
