"""Drive simulated users against the chat, or against the reference design.

Each user logs in, opens a conversation and sends its messages one after
the other over the documented WebSocket protocol (`--target stack`), or
posts them to the reference server (`--target reference`), and the run
reports time to first token, full reply time, throughput, errors, and
where this machine's CPU went while it ran (`bench/cpu.py`):

    python bench/load.py --target stack --url http://127.0.0.1:8000 --users 16 --messages 2
    python bench/load.py --target reference --url http://127.0.0.1:8100 --users 16 --messages 2

The reference design does not stream, so its first token arrives with the
whole reply. Results print as JSON (`--json PATH` writes them too).
"""
import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.cpu import CpuAccount  # noqa: E402
from bench.messages import messages_for  # noqa: E402
from inference.cleanup import streamed_as  # noqa: E402

BENCH_PASSWORD = "bench-password-not-secret"


@dataclass
class Outcome:
    user: int
    first_token_s: float | None = None
    reply_s: float | None = None
    new_tokens: int = 0
    text: str = ""
    message_id: int | None = None
    error: str = ""
    read_again: bool = False  # its last frame never came: the reply was read from the messages, as the page does


@dataclass
class Report:
    target: str
    users: int
    messages_per_user: int
    wall_s: float
    outcomes: list = field(default_factory=list)
    cpu: CpuAccount | None = None  # where the machine's CPU went while the clock ran

    def summary(self):
        ok = [o for o in self.outcomes if not o.error]
        firsts = sorted(o.first_token_s for o in ok if o.first_token_s is not None)
        totals = sorted(o.reply_s for o in ok)
        tokens = sum(o.new_tokens for o in ok)
        ids = [o.message_id for o in ok if o.message_id is not None]
        return {
            "target": self.target,
            "users": self.users,
            "messages_per_user": self.messages_per_user,
            "replies": len(ok),
            "errors": len(self.outcomes) - len(ok),
            "error_samples": sorted({o.error for o in self.outcomes if o.error})[:5],
            "duplicated_replies": len(ids) - len(set(ids)),
            "empty_replies": sum(1 for o in ok if not o.text.strip()),
            "replies_read_again": sum(1 for o in ok if o.read_again),
            "first_token_p50_s": percentile(firsts, 50),
            "first_token_p95_s": percentile(firsts, 95),
            "first_token_max_s": max(firsts, default=None),
            "reply_p50_s": percentile(totals, 50),
            "reply_p95_s": percentile(totals, 95),
            "reply_max_s": max(totals, default=None),
            "replies_per_minute": 60 * len(ok) / self.wall_s if self.wall_s else 0,
            "tokens_per_second": tokens / self.wall_s if self.wall_s else 0,
            # What one person sees: a reply's tokens over its whole time, first token included...
            "reply_tokens_per_second_p50": percentile(sorted(o.new_tokens / o.reply_s for o in ok if o.reply_s), 50),
            # ...and the pace of the stream once it has started (none where nothing streams).
            "stream_tokens_per_second_p50": percentile(
                sorted(
                    (o.new_tokens - 1) / (o.reply_s - o.first_token_s)
                    for o in ok
                    if o.first_token_s is not None and o.reply_s > o.first_token_s and o.new_tokens > 1
                ),
                50,
            ),
            "mean_new_tokens": statistics.mean(o.new_tokens for o in ok) if ok else 0,
            "wall_s": self.wall_s,
            "cpu_busy_s": self.cpu.busy if self.cpu else None,
            "cpu_busy_share": self.cpu.busy / (self.cpu.cores * self.wall_s) if self.cpu and self.wall_s else None,
            "cpu_s": self.cpu.seconds if self.cpu else None,
        }


def percentile(ordered, q):
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def login(http, username):
    page = await http.get("/accounts/login/")
    page.raise_for_status()
    response = await http.post(
        "/accounts/login/",
        data={"username": username, "password": BENCH_PASSWORD, "csrfmiddlewaretoken": http.cookies["csrftoken"]},
        headers={"Referer": str(http.base_url) + "/accounts/login/"},
    )
    if "sessionid" not in http.cookies:
        raise RuntimeError(f"login of {username} failed (HTTP {response.status_code}); run with --create-users")


class StartLine:
    """Every user is set up (logged in, conversation and socket open) before anyone sends.

    The clock of the throughput figures starts when the last one is ready, so
    replies per minute measure chatting, not logging in (password hashing is
    deliberately slow, and the reference design has no login).
    """

    def __init__(self, users):
        self.waiting = set(range(users))
        self.go = asyncio.Event()
        self.started = None
        self.cpu = CpuAccount()

    def arrive(self, index):
        self.waiting.discard(index)
        if not self.waiting and not self.go.is_set():
            self.cpu.start()
            self.started = time.perf_counter()
            self.go.set()

    async def ready(self, index):
        self.arrive(index)
        await self.go.wait()


async def stack_user(index, args, outcomes, start):
    # With several web processes, users are spread over them: a reply made by
    # any worker must reach a socket on any web process.
    url = args.url[index % len(args.url)]
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, follow_redirects=True) as http:
        await login(http, f"bench-{index}")
        created = await http.post("/api/conversations/", json={}, headers={"X-CSRFToken": http.cookies["csrftoken"]})
        created.raise_for_status()
        conversation = created.json()["id"]
        cookie = "; ".join(f"{name}={value}" for name, value in http.cookies.items())
        ws_url = url.replace("http", "ws", 1) + f"/ws/conversations/{conversation}/"
        async with websockets.connect(ws_url, additional_headers={"Cookie": cookie, "Origin": url}) as socket:
            await start.ready(index)
            chat = StackConversation(socket, http, conversation, args.timeout, args.read_again_seconds)
            for text in messages_for(index, args.messages):
                outcomes.append(await chat.exchange(index, text))


@dataclass
class StackConversation:
    """One user's conversation over its socket. The channel layer delivers at most once, so like the page
    (chat.js, "Frames that never came") a quiet socket makes it read the newest messages again; a reply read
    that way may still have frames on their way, so only frames of the reply awaited now are taken."""

    socket: "websockets.ClientConnection"
    http: httpx.AsyncClient
    conversation: int
    timeout: float
    read_again_seconds: float
    last_reply_id: int = 0  # every reply up to this one is over: its late frames are ignored
    reply_id: int | None = None  # the reply awaited now, once a frame or the messages named it

    async def exchange(self, index: int, text: str) -> Outcome:
        outcome = Outcome(user=index)
        started = time.perf_counter()
        self.reply_id = None
        await self.socket.send(json.dumps({"type": "user_message", "text": text}))
        pieces = []
        try:
            while True:
                left = self.timeout - (time.perf_counter() - started)
                try:
                    raw = await asyncio.wait_for(self.socket.recv(), max(0.0, min(left, self.read_again_seconds)))
                except TimeoutError:
                    message = await self.finished_reply(text, left)
                    if message is not None:
                        outcome.read_again = True
                        return self.finish(outcome, message, started)
                    if left <= self.read_again_seconds:
                        raise
                    continue
                frame = json.loads(raw)
                if frame["type"] == "token" and self.is_awaited(frame["message_id"]):
                    if outcome.first_token_s is None:
                        outcome.first_token_s = time.perf_counter() - started
                    pieces.append(frame["text"])
                elif frame["type"] == "reply_done" and self.is_awaited(frame["message"]["id"]):
                    self.finish(outcome, frame["message"], started)
                    if not outcome.error and not streamed_as("".join(pieces), outcome.text):
                        outcome.error = "streamed pieces do not fit the final reply"
                    return outcome
                elif frame["type"] == "message" and frame["message"]["role"] == "bot":
                    self.is_awaited(frame["message"]["id"])
                elif frame["type"] == "error":
                    outcome.error = f"{frame['code']}: {frame['detail']}"
                    return outcome
        except (TimeoutError, websockets.ConnectionClosed, httpx.HTTPError) as error:
            outcome.error = f"{type(error).__name__}: {error}"
        finally:
            self.last_reply_id = max(self.last_reply_id, self.reply_id or 0)
        return outcome

    def is_awaited(self, reply_id: int) -> bool:
        """Whether a frame of reply `reply_id` belongs to this exchange (the first newer reply seen is its own)."""
        if reply_id <= self.last_reply_id:
            return False
        if self.reply_id is None:
            self.reply_id = reply_id
        return reply_id == self.reply_id

    async def finished_reply(self, text: str, left: float) -> dict | None:
        """The reply to `text` if the newest messages hold it finished, else None."""
        response = await self.http.get(f"/api/conversations/{self.conversation}/messages/", timeout=max(left, 1.0))
        response.raise_for_status()
        messages = {message["id"]: message for message in response.json()["messages"]}
        newest = messages[max(messages)] if messages else None
        if newest is None or newest["role"] != "bot":
            return None
        question = messages.get(newest["reply_to"])
        if question is None or question["role"] != "user" or question["text"].strip() != text.strip():
            return None  # not the reply to this message: the message is not stored yet
        if not self.is_awaited(newest["id"]) or newest["status"] in ("queued", "streaming"):
            return None
        return newest

    def finish(self, outcome: Outcome, message: dict, started: float) -> Outcome:
        outcome.reply_s = time.perf_counter() - started
        outcome.message_id = message["id"]
        outcome.text = message["text"]
        outcome.new_tokens = message["record"]["new_tokens"] or 0
        if message["status"] != "done":
            outcome.error = f"reply {message['status']}: {message.get('error', '')}"
        return outcome


async def reference_user(index, args, outcomes, start):
    async with httpx.AsyncClient(base_url=args.url[index % len(args.url)], timeout=args.timeout) as http:
        history = []
        await start.ready(index)
        for text in messages_for(index, args.messages):
            outcome = Outcome(user=index)
            started = time.perf_counter()
            try:
                response = await http.post("/reply", json={"history": history, "message": text})
                response.raise_for_status()
                body = response.json()
                outcome.reply_s = outcome.first_token_s = time.perf_counter() - started
                outcome.text, outcome.new_tokens = body["reply"], body["new_tokens"]
                history += [{"role": "user", "text": text}, {"role": "bot", "text": body["reply"]}]
            except httpx.HTTPError as error:
                outcome.error = f"{type(error).__name__}: {error}"
            outcomes.append(outcome)


async def run(args):
    user = stack_user if args.target == "stack" else reference_user
    outcomes = []
    start = StartLine(args.users)

    async def guarded(index):
        try:
            await user(index, args, outcomes, start)
        except Exception as error:  # a user that cannot even start counts its messages as errors
            outcomes.extend(Outcome(user=index, error=f"{type(error).__name__}: {error}") for _ in range(args.messages))
            start.arrive(index)

    await asyncio.gather(*(guarded(i) for i in range(args.users)))
    wall_s = time.perf_counter() - start.started
    start.cpu.stop()
    return Report(args.target, args.users, args.messages, wall_s, outcomes, start.cpu)


def create_users(count):
    """Bench accounts bench-0 ... bench-N, made through Django itself."""
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
    django.setup()
    from django.contrib.auth import get_user_model

    User = get_user_model()
    for index in range(count):
        user, _ = User.objects.get_or_create(username=f"bench-{index}")
        user.set_password(BENCH_PASSWORD)
        user.save()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=["stack", "reference"], default="stack")
    parser.add_argument("--url", action="append", help="server address; repeat for several web processes")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--messages", type=int, default=2, help="messages per user")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for one reply")
    parser.add_argument(
        "--read-again-seconds",
        type=float,
        default=5,
        help="a socket quiet this long while a reply is awaited reads the newest messages, as the page does",
    )
    parser.add_argument("--create-users", action="store_true", help="create the bench accounts first")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.url = args.url or ["http://127.0.0.1:8000"]
    if args.create_users and args.target == "stack":
        create_users(args.users)
    report = asyncio.run(run(args))
    summary = report.summary()
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "outcomes": [asdict(o) for o in report.outcomes]}, indent=2))
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
