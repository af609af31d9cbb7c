"""`make run`'s two checks around the server (standard library only).

    readiness.py port-free HOST PORT   exits 1 with a clear message when the port is taken
    readiness.py wait HOST PORT SINCE  returns once the site answers and models loaded since SINCE (Unix
                                       time) are ready: Redis may still hold an earlier run's report
"""

import json
import socket
import sys
import time
import urllib.request

REPORT_EVERY_SECONDS = 10


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def models_status(url: str) -> dict | None:
    """The models part of /api/status/, or None while the server does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response)["models"]
    except (OSError, ValueError, KeyError):
        return None


def wait_until_ready(host: str, port: int, since: float) -> int:
    local = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    url = f"http://{local}:{port}/api/status/"
    started = last_report = time.monotonic()
    while True:
        models = models_status(url)
        if models and models["started"] is not None and models["started"] < since:
            models = {**models, "state": "unknown"}  # an earlier run's report
        if models and models["state"] == "ready":
            print(f"Models loaded after {time.monotonic() - started:.0f} s.", flush=True)
            return 0
        if models and models["state"] == "failed":
            print(f"The models could not be loaded: {models['error']}", file=sys.stderr, flush=True)
            return 1
        if time.monotonic() - last_report >= REPORT_EVERY_SECONDS:
            last_report = time.monotonic()
            if models is None:
                print("Waiting for the server to answer…", flush=True)
            elif models["state"] == "unknown":
                print("Waiting for the worker to start loading the models…", flush=True)
            elif models["state"] == "no_worker":
                print("The models were loaded, but no worker runs now: waiting for one…", flush=True)
            else:
                expected = f" of about {models['expected_seconds']:.0f} s" if models["expected_seconds"] else ""
                print(
                    f"Loading: {models['step']} (step {models['step_number']} of {models['steps']}), "
                    f"{models['elapsed_seconds']:.0f} s{expected}…",
                    flush=True,
                )
        time.sleep(0.2)  # "ready" is printed at most this late


def main(argv: list[str]) -> int:
    command, host, port = argv[1], argv[2], int(argv[3])
    if command == "port-free":
        if port_free(host, port):
            return 0
        print(
            f"Port {port} on {host} is already in use: is another `make run` still serving? Stop it (Ctrl-C in its "
            f"terminal), or serve on another port: PORT={port + 1} make run",
            file=sys.stderr,
        )
        return 1
    return wait_until_ready(host, port, float(argv[4]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
