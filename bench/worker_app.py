"""The benchmark's Celery app: the product's app and task, and a tally of what a worker could reuse.

On CPU the engine is OpenVINO GenAI, whose prefix cache does not report its
hits. So this counts, for every prompt row handed to a worker's pipeline, its
tokens and the longest start it shares with a sequence that worker computed
before (an earlier prompt and the reply generated after it): the tokens its
prefix cache can skip. An upper bound of the engine's own reuse, which takes
whole key-value blocks, and only those not evicted. The tally goes to the Redis
hash TALLY_KEY, which bench/affinity.py resets and reads. Counted around the
pipeline, not in it, so the engine itself is the product's.
"""
import os
import threading

import redis

from bench.affinity import TALLY_KEY
from inference.backends.openvino import _OpenVINOBatch
from inference.loading import TOKENIZER_LOCK
from sheldonsite.celery import app  # noqa: F401  (celery -A finds the app here)

_redis = redis.Redis.from_url(os.environ["REDIS_URL"])
_computed = []  # (prompt ids, Sequence) of every row this worker's pipeline took; its token_ids: the reply so far
_lock = threading.Lock()
_add = _OpenVINOBatch.add


def _tallied_add(self, prompts, sequences):
    _add(self, prompts, sequences)
    # The batch holds a request's later candidates back until the first has computed their prompt.
    held_back = {id(sequence) for sequence, *_ in self.waiting}
    with TOKENIZER_LOCK:
        prompt_ids = self.backend.tokenizer(prompts, add_special_tokens=False).input_ids
    with _lock:
        # Rows added together are computed together: each counts only earlier ones, but for those held back.
        earlier = [ids + sequence.token_ids for ids, sequence in _computed]
        for ids, sequence in zip(prompt_ids, sequences):
            if id(sequence) in held_back:
                shared = len(ids)
            else:
                shared = max((len(os.path.commonprefix([ids, known])) for known in earlier), default=0)
            # The engine computes at least a prompt's last token (its logits give the first reply token).
            reused = min(shared, len(ids) - 1)
            tally = _redis.pipeline().hincrby(TALLY_KEY, "rows", 1).hincrby(TALLY_KEY, "prompt_tokens", len(ids))
            tally.hincrby(TALLY_KEY, "reused_tokens", reused).execute()
            _computed.append((ids, sequence))


_OpenVINOBatch.add = _tallied_add
