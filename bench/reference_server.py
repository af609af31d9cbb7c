"""The reference serving design, as the baseline of bench/load.py.

The reference ran a Flask app under gunicorn with two gevent workers: each
request made one blocking generate call and returned the whole reply, with
no streaming and no batching. This is that design around the product's own
replier, so both sides use the same model, retrieval and token limit:

    gunicorn -w 2 -k gevent -b 127.0.0.1:8100 bench.reference_server:app
"""
import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
django.setup()

from flask import Flask, jsonify, request  # noqa: E402

from inference.replier import Turn, get_replier  # noqa: E402

app = Flask(__name__)
replier = get_replier()  # loaded in each worker process, as the reference did
if os.environ.get("REFERENCE_TORCH_INT8") == "1":
    # The engine the reference was measured with until the product moved to OpenVINO: torch with dynamic
    # int8 linear layers (bench/engine.py's baseline), so its figures stay comparable across days.
    from bench.engine import torch_int8  # noqa: E402

    replier.backend.model = torch_int8(replier.backend.model)


@app.post("/reply")
def reply():
    payload = request.get_json(force=True)
    history = [Turn(role=turn["role"], text=turn["text"]) for turn in payload.get("history", [])]
    started = time.perf_counter()
    result = replier.reply(history, payload["message"])
    return jsonify(
        reply=result.text,
        new_tokens=result.new_tokens,
        seconds=time.perf_counter() - started,
        worker=os.getpid(),
    )


@app.get("/health")
def health():
    return jsonify(ok=True)
