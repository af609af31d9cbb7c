"""Causal chat models on OpenVINO GenAI (the default on CPU): the library's continuous batching, paged
key-value cache and prefix cache; the prompt is the torch chat backend's."""
import itertools
import logging

from ..loading import TOKENIZER_LOCK
from .chat import CausalChatBackend

logger = logging.getLogger(__name__)

# The logit a likely next token has under the shipped chat model: the median over 997 tokens of his
# lines that were among the model's top 50 (quartiles 16-27). A repetition penalty of 1.2 takes a
# sixth of it; the presence penalty that stands for it takes as much.
TYPICAL_CANDIDATE_LOGIT = 22.0
MAX_PENALTY = 2.0  # the library's bound on its presence and frequency penalties


class OpenVINOChatBackend(CausalChatBackend):
    """A chat model served by OpenVINO GenAI's continuous-batching pipeline.

    The library schedules: rows join and leave at every step, prompts start
    from its own prefix cache (paged key-value blocks shared by every prompt
    that begins the same way: the persona, a conversation's previous turn),
    and it samples with the same parameters. This backend only hands rows in
    and tokens out.
    """

    def open_batch(self):
        return _OpenVINOBatch(self)

    def prefix_store(self):
        return None  # the pipeline keeps its own

    def generation_config(self):
        """The pipeline's generation config for one row: the backend's sampling, one sequence, log-probabilities."""
        import openvino_genai

        config = openvino_genai.GenerationConfig()
        sampling = self.sampling
        config.do_sample = sampling.get("do_sample", False)
        for name in ("temperature", "top_p", "top_k", "no_repeat_ngram_size"):
            if name in sampling:
                setattr(config, name, sampling[name])
        # The library's repetition penalty counts the prompt's tokens too, which broke words ("wasn tough");
        # its presence and frequency penalties count the reply's only, and subtract instead of dividing. It
        # allows each at most 2: presence first, the rest as frequency (a token's second repeat pays again).
        penalty = TYPICAL_CANDIDATE_LOGIT * (1 - 1 / sampling.get("repetition_penalty", 1.0))
        config.presence_penalty = min(penalty, MAX_PENALTY)
        config.frequency_penalty = min(penalty - config.presence_penalty, MAX_PENALTY)
        config.max_new_tokens = self.max_new_tokens
        config.stop_token_ids = set(self.eos_ids)
        config.ignore_eos = not self.eos_ids  # no end tokens: every row runs to its limit (the engine benchmark)
        config.logprobs = 1  # each sampled token's log-probability, for the ranking's fluency
        return config


class _OpenVINOBatch:
    """Rows in flight in the pipeline; a step runs one pipeline step and hands each row its new tokens."""

    def __init__(self, backend):
        self.backend = backend
        self.pipeline = backend.model
        self.config = backend.generation_config()
        self.rows = {}  # request id -> (handle, Row, prompt tokens)

    def __len__(self):
        return len(self.rows)

    def add(self, prompts, rows):
        import numpy
        import openvino
        import torch

        with TOKENIZER_LOCK:
            prompt_ids = self.backend.tokenizer(prompts, add_special_tokens=False).input_ids
        for ids, row in zip(prompt_ids, rows):
            request_id = next(_request_ids)
            # Seeded from torch's generator, so torch.manual_seed makes a run repeatable on either engine.
            self.config.rng_seed = int(torch.randint(2**31 - 1, ()))
            handle = self.pipeline.add_request(request_id, openvino.Tensor(numpy.array([ids], dtype=numpy.int64)), self.config)
            self.rows[request_id] = (handle, row, len(ids))

    def step(self):
        from openvino_genai import GenerationStatus

        if self.pipeline.has_non_finished_requests():
            self.pipeline.step()
        for request_id, (handle, row, prompt_tokens) in list(self.rows.items()):
            if row.should_stop is not None and row.should_stop():
                row.stopped = True  # a stop takes effect before the next piece is shown
            elif handle.can_read():
                for output in handle.read().values():
                    for token_id, log_probability in zip(output.generated_ids, output.generated_log_probs):
                        row.accept(token_id, self.backend.tokenizer, self.backend.eos_ids, log_probability)
            status = handle.get_status()
            if row.done and status == GenerationStatus.RUNNING:
                handle.stop()  # ended by the clean-up (its sentence cap) or stopped: free its rows now
            if row.done or status != GenerationStatus.RUNNING:
                if status == GenerationStatus.IGNORED:
                    # Too long for the key-value cache: the row ends empty and the replier falls back.
                    logger.warning("OpenVINO could not schedule a prompt of %d tokens", prompt_tokens)
                row.finished = True
                del self.rows[request_id]


_request_ids = itertools.count()
