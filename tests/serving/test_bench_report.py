"""The load benchmark's figures and table: rates, errors, duplicates and ratios for every stack configuration."""
import time
from argparse import Namespace

from bench.cpu import ROLES, CpuAccount, role_of
from bench.host import describe_cpu
from bench.load import Outcome, Report
from bench.report import markdown_table


def summary(target, outcomes, wall_s=60.0, **extra):
    return {**Report(target, users=2, messages_per_user=1, wall_s=wall_s, outcomes=outcomes).summary(), **extra}


def test_a_summary_counts_replies_errors_duplicates_and_rates():
    outcomes = [
        Outcome(user=0, first_token_s=0.5, reply_s=2.5, new_tokens=41, text="Bazinga.", message_id=1),
        Outcome(user=1, first_token_s=1.0, reply_s=2.0, new_tokens=21, text="Hello.", message_id=1),
        Outcome(user=1, error="TimeoutError: "),
    ]
    figures = summary("stack", outcomes)
    assert figures["replies"] == 2 and figures["errors"] == 1 and figures["duplicated_replies"] == 1
    assert figures["replies_per_minute"] == 2.0
    assert figures["stream_tokens_per_second_p50"] == 20.0  # 40 tokens in the 2 s after the first; 20 in 1 s
    assert figures["reply_tokens_per_second_p50"] == 10.5  # the lower middle of 21 / 2 s and 41 / 2.5 s
    # Nothing streams in the reference design: its whole reply comes at once.
    reference = summary("reference", [Outcome(user=0, first_token_s=2.0, reply_s=2.0, new_tokens=30, text="Hi.")])
    assert reference["stream_tokens_per_second_p50"] is None


def test_the_table_gives_each_stack_configuration_as_a_ratio_to_the_reference():
    def reply(seconds):
        return Outcome(user=0, first_token_s=0.2, reply_s=seconds, new_tokens=30, text="Hi.", message_id=seconds)

    results = [
        summary("stack", [reply(1), reply(2)], wall_s=20.0, workers=1, web_processes=1, worker_peak_mib=[1500]),
        summary("stack", [reply(1), reply(2)], wall_s=10.0, workers=2, web_processes=1, worker_peak_mib=[1500, 1500]),
        summary("reference", [reply(4), reply(8)], wall_s=60.0, workers=2, web_processes=1, worker_peak_mib=[1400]),
    ]
    table = markdown_table(results, Namespace(messages=1, max_new_tokens=40, seed=1, cores=2))
    assert "| 2 | stack (1 worker, 1 web) | 3.00x | 4.00x |" in table
    assert f"Machine: {describe_cpu()}." in table.splitlines()[1]  # each report names the machine it ran on
    assert "| 2 | stack (2 workers, 1 web) | 6.00x | 4.00x |" in table


def test_the_cpu_account_gives_each_process_its_role_and_the_rest_to_other():
    assert role_of(1, "celery", ["/v/bin/celery", "-A", "sheldonsite", "worker", "-Q", "cpu"]) == "worker"
    assert role_of(1, "daphne", ["/v/bin/python", "/v/bin/daphne", "sheldonsite.asgi:application"]) == "web"
    assert role_of(1, "gunicorn", ["/v/bin/python", "/v/bin/gunicorn", "bench.reference_server:app"]) == "reference"
    assert role_of(1, "postgres", ["postgres: postgres sheldon 127.0.0.1(5432) idle"]) == "postgres"
    assert role_of(1, "redis-server", ["redis-server *:6379"]) == "redis"
    assert role_of(1, "bash", ["bash"]) is None
    account = CpuAccount()
    account.start()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # this process keeps the account: the load generator
        pass
    account.stop()
    # The kernel counts a process's CPU time in ticks of 10 ms, read as floats: the account's difference of two
    # readings may come out a tick short at each end, or a hair short in floating point (0.29999999999998 once).
    assert account.seconds["load generator"] >= 0.3 - 0.02
    assert account.busy >= account.seconds["load generator"] - 0.05  # the kernel's tick is coarser than ours
    assert set(account.seconds) == set(ROLES)


def test_the_table_says_where_the_cpu_went_per_reply():
    outcomes = [Outcome(user=0, first_token_s=0.2, reply_s=1.0, new_tokens=30, text="Hi.", message_id=i) for i in range(4)]
    result = summary("stack", outcomes, wall_s=10.0, workers=1, web_processes=2, worker_peak_mib=[1500])
    result["cpu_busy_s"], result["cpu_busy_share"] = 15.0, 0.75
    result["cpu_s"] = {**dict.fromkeys(ROLES, 0.0), "worker": 8.0, "web": 4.0, "other": 3.0}
    table = markdown_table([result], Namespace(messages=1, max_new_tokens=40, seed=1, cores=2))
    assert "| stack (1 worker, 2 web) | 2 | 75% | 2.000 | 1.000 | 0.000 | 0.000 | 0.000 | 0.000 | 0.750 |" in table
