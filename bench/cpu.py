"""Where a benchmark's CPU time goes: the machine's busy seconds over a span, split by the processes' roles.

On a 2-core machine the web processes, the database, Redis and the load
generator take their CPU from the same cores as the engine, so a stack's
replies per minute depend on all of them. `CpuAccount` snapshots every
process's CPU time when a span starts and when it stops, and gives each role
its share; processes that exited in the span are counted through their
parent's `children_*` times where the parent reaped them (PostgreSQL's
backends), and the rest of the machine's busy time (the kernel, anything
else) is "other". The process that keeps the account is the load generator.
A PostgreSQL backend alive at the start that exits in the span counts its
CPU from before the span as well (through the postmaster): small for
the short connections of the benchmark's processes.
"""
import os

import psutil

ROLES = ("worker", "web", "reference", "postgres", "redis", "load generator", "other")


def role_of(pid: int, name: str, cmdline: list[str]) -> str | None:
    """The benchmark role of a process, or None for one that plays no part."""
    if pid == os.getpid():
        return "load generator"  # bench/load.py keeps the account
    words = " ".join(cmdline)
    if "celery" in words and " worker" in words:
        return "worker"
    if "daphne" in words:
        return "web"
    if "gunicorn" in words:
        return "reference"
    if name.startswith("postgres") or words.startswith("postgres"):
        return "postgres"
    if name.startswith("redis-server"):
        return "redis"
    return None


def _snapshot() -> tuple[float, dict[int, tuple[str, float]]]:
    """The machine's busy seconds so far, and each playing process's (role, CPU seconds with reaped children)."""
    times = psutil.cpu_times()
    # Guest time is already counted in user time on Linux; time stolen by the hypervisor was not ours.
    not_busy = ("idle", "iowait", "guest", "guest_nice", "steal")
    busy = sum(times) - sum(getattr(times, name, 0.0) for name in not_busy)
    processes = {}
    for process in psutil.process_iter(["pid", "name", "cmdline", "cpu_times"]):
        info = process.info
        if info["cpu_times"] is None:
            continue
        role = role_of(info["pid"], info["name"] or "", info["cmdline"] or [])
        if role is not None:
            t = info["cpu_times"]
            # Reaped children count for a server (PostgreSQL's backends), not for the account's own process,
            # whose children are none of the benchmark's (a test's processes, ended meanwhile).
            reaped = t.children_user + t.children_system if info["pid"] != os.getpid() else 0.0
            processes[info["pid"]] = (role, t.user + t.system + reaped)
    return busy, processes


class CpuAccount:
    """CPU seconds by role between `start()` and `stop()`: `seconds[role]`, and `busy`, the machine's total
    (of its `cores`)."""

    cores = psutil.cpu_count() or 1

    def start(self) -> None:
        self._start = _snapshot()

    def stop(self) -> None:
        busy_start, start = self._start
        busy_end, end = _snapshot()
        self.busy = busy_end - busy_start
        self.seconds = dict.fromkeys(ROLES, 0.0)
        for pid, (role, seconds) in end.items():
            before = start.get(pid)
            # A pid seen before under another role was reused: count it as new.
            self.seconds[role] += seconds - before[1] if before and before[0] == role else seconds
        self.seconds["other"] = max(0.0, self.busy - sum(self.seconds.values()))
