"""Many sockets at once against a running daphne: handshakes, and how fast a stop is answered meanwhile.

Opens `--sockets` WebSockets to one conversation, `--batch` at a time, while
one more socket sends a stop frame every 0.35 s (nothing is generating, so
each is answered with a `not_generating` error frame) and times each answer:

    python bench/socket_storm.py --url http://127.0.0.1:8000 --cookie SESSIONID --conversation 3

Prints the failed handshakes, the handshake times and the stop answer times.
`storm()` is what tests/faults/test_socket_storm.py runs.
"""

import argparse
import asyncio
import json
import statistics
import time

import websockets

STOP_EVERY_SECONDS = 0.35  # under the 3 stops a second a socket may send


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def storm(url: str, cookie: str, conversation_id: int, sockets: int = 200, batch: int = 50) -> dict:
    ws_url = url.replace("http", "ws", 1) + f"/ws/conversations/{conversation_id}/"
    headers = {"Cookie": f"sessionid={cookie}", "Origin": url}
    opened, failures, handshakes, stops = [], [], [], []

    async def open_one():
        started = time.monotonic()
        try:
            socket = await websockets.connect(ws_url, additional_headers=headers, open_timeout=10)
        except Exception as error:  # every kind of failed handshake counts
            failures.append(repr(error))
            return
        handshakes.append(time.monotonic() - started)
        opened.append(socket)

    async def probe(done: asyncio.Event):
        async with websockets.connect(ws_url, additional_headers=headers) as socket:
            while not done.is_set():
                started = time.monotonic()
                await socket.send(json.dumps({"type": "stop"}))
                while True:
                    frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
                    if frame["type"] == "error":
                        break
                stops.append(time.monotonic() - started)
                await asyncio.sleep(STOP_EVERY_SECONDS)

    done = asyncio.Event()
    prober = asyncio.create_task(probe(done))
    await asyncio.sleep(STOP_EVERY_SECONDS * 2)  # a few answers before the storm
    started = time.monotonic()
    for first in range(0, sockets, batch):
        await asyncio.gather(*(open_one() for _ in range(first, min(sockets, first + batch))))
    seconds = time.monotonic() - started
    done.set()
    await prober
    await asyncio.gather(*(socket.close() for socket in opened))
    return {
        "sockets": sockets,
        "batch": batch,
        "failed": len(failures),
        "failures": failures[:5],
        "seconds": seconds,
        "handshake_p50": statistics.median(handshakes) if handshakes else float("nan"),
        "handshake_p95": percentile(handshakes, 0.95),
        "stops": len(stops),
        "stop_p50": statistics.median(stops) if stops else float("nan"),
        "stop_p95": percentile(stops, 0.95),
    }


def report(figures: dict) -> str:
    return (
        f"{figures['sockets']} sockets, {figures['batch']} at a time, in {figures['seconds']:.1f} s: "
        f"{figures['failed']} failed handshakes; handshake p50 {figures['handshake_p50'] * 1000:.0f} ms, "
        f"p95 {figures['handshake_p95'] * 1000:.0f} ms; {figures['stops']} stop frames answered, "
        f"p50 {figures['stop_p50'] * 1000:.0f} ms, p95 {figures['stop_p95'] * 1000:.0f} ms"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--cookie", required=True, help="a logged-in session id")
    parser.add_argument("--conversation", type=int, required=True)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    print(report(asyncio.run(storm(args.url, args.cookie, args.conversation, args.sockets, args.batch))))


if __name__ == "__main__":
    main()
