"""Causal chat models on OpenVINO GenAI (the default on CPU): the library's continuous batching, paged
key-value cache and prefix cache; the prompt is the torch chat backend's."""
import itertools
import logging
from typing import TYPE_CHECKING

from ..loading import TOKENIZER_LOCK
from ..requests import FinishReason, Sequence
from .base import OnStep
from .chat import CausalChatBackend

if TYPE_CHECKING:
    import openvino_genai

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
    and tokens out, and starts the candidates of one request one after the
    other so that they share its prompt (`_OpenVINOBatch`).
    """

    def open_batch(self, on_step: OnStep | None = None) -> "_OpenVINOBatch":
        return _OpenVINOBatch(self, on_step)

    def prefix_store(self) -> None:
        return None  # the pipeline keeps its own

    def generation_config(self) -> "openvino_genai.GenerationConfig":
        """The pipeline's generation config for one row: the backend's sampling, one sequence, log-probabilities."""
        import openvino_genai

        config = openvino_genai.GenerationConfig()
        sampling = self.sampling
        config.do_sample = sampling.get("do_sample", False)
        for name in ("temperature", "top_p", "top_k", "min_p", "no_repeat_ngram_size"):
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
    """Sequences in flight in the pipeline; a step runs one pipeline step and appends each one's new tokens.

    The candidates of one request have the same prompt. Added together, the pipeline would compute it once
    for each: its prefix cache only holds blocks already computed. So the first candidate starts at once
    and the others wait until it has its first token (its prompt computed, in one step or in several
    chunks), then start from its blocks in the cache, the last, partly filled one included (the library
    finds a block by the hash of the tokens in it while the first candidate holds it), and compute only
    the prompt's last token: one prompt's work instead of four, and the same samples (a lone user's reply
    1.5x sooner on a 2-core Xeon: docs/inference.md).
    The pipeline's own several sequences per request (`num_return_sequences`) would share the prompt too,
    but it hands their tokens over only once all of them have ended, so the sentence cap could not end them.
    """

    def __init__(self, backend: OpenVINOChatBackend, on_step: OnStep | None) -> None:
        self.backend = backend
        self.pipeline = backend.model
        self.config = backend.generation_config()
        self.on_step = on_step
        self.share_prompts = backend.prefix_cache_tokens is not None  # the pipeline's prefix cache is on
        self.running = {}  # request id -> (handle, Sequence, prompt tokens)
        self.waiting = []  # (Sequence, the candidate that computes its prompt, prompt ids, seed)

    def __len__(self) -> int:
        return len(self.running) + len(self.waiting)

    def add(self, prompts: list[str], sequences: list[Sequence]) -> None:
        import torch

        with TOKENIZER_LOCK:
            prompt_ids = self.backend.tokenizer(prompts, add_special_tokens=False).input_ids
        first_of = {}  # (request, prompt) -> the sequence that computes the prompt
        for prompt, ids, sequence in zip(prompts, prompt_ids, sequences):
            # Seeded from torch's generator, so torch.manual_seed makes a run repeatable on either engine.
            seed = int(torch.randint(2**31 - 1, ()))
            first = sequence
            if self.share_prompts and sequence.request is not None:
                first = first_of.setdefault((id(sequence.request), prompt), sequence)
            if first is sequence:
                self._start(sequence, ids, seed)
            else:
                self.waiting.append((sequence, first, ids, seed))

    def _start(self, sequence: Sequence, prompt_ids: list[int], seed: int) -> None:
        import numpy
        import openvino

        request_id = next(_request_ids)
        self.config.rng_seed = seed
        handle = self.pipeline.add_request(request_id, openvino.Tensor(numpy.array([prompt_ids], dtype=numpy.int64)), self.config)
        self.running[request_id] = (handle, sequence, len(prompt_ids))

    def step(self) -> None:
        from openvino_genai import GenerationStatus

        self._release_finished()  # finished from outside since the last step: a stop, the sentence cap
        if self.pipeline.has_non_finished_requests():
            self.pipeline.step()
        changed = []
        backend = self.backend
        for handle, sequence, prompt_tokens in self.running.values():
            got_tokens = handle.can_read()
            if got_tokens:
                for output in handle.read().values():
                    for token_id, log_probability in zip(output.generated_ids, output.generated_log_probs):
                        sequence.append(token_id, log_probability, backend.eos_ids, backend.max_new_tokens)
            status = handle.get_status()
            if status == GenerationStatus.IGNORED:
                logger.warning("OpenVINO could not schedule a prompt of %d tokens", prompt_tokens)
                sequence.finish(FinishReason.IGNORED)  # the replier falls back
            elif status != GenerationStatus.RUNNING:  # the pipeline ended it: a stop token, or its token limit
                at_limit = len(sequence.token_ids) >= backend.max_new_tokens
                sequence.finish(FinishReason.LENGTH if at_limit else FinishReason.END)
            if got_tokens or sequence.finished:
                changed.append(sequence)
        if changed and self.on_step is not None:
            self.on_step(changed)
        self._release_finished()
        self._start_waiting()

    def _start_waiting(self) -> None:
        """Start the candidates whose prompt is now in the prefix cache: their first candidate has a token (or
        has ended). One finished meanwhile (a stop) is never started, nor one whose prompt the pipeline
        could not schedule for the first."""
        waiting, self.waiting = self.waiting, []
        for sequence, first, prompt_ids, seed in waiting:
            if first.finish_reason is FinishReason.IGNORED:
                sequence.finish(FinishReason.IGNORED)
            if sequence.finished:
                continue
            if first.token_ids or first.finished:
                self._start(sequence, prompt_ids, seed)
            else:
                self.waiting.append((sequence, first, prompt_ids, seed))

    def _release_finished(self) -> None:
        """Let finished sequences go; one the pipeline still runs is stopped, which frees its cache blocks.

        The pipeline frees a stopped request's blocks at its next step: when none of this batch's sequences
        is left to step, one more (empty) step frees them now rather than never (leaked at exit)."""
        from openvino_genai import GenerationStatus

        stopped = False
        for request_id, (handle, sequence, _) in list(self.running.items()):
            if sequence.finished:
                if handle.get_status() == GenerationStatus.RUNNING:
                    handle.stop()
                    stopped = True
                del self.running[request_id]
        if stopped and not self.running and self.pipeline.has_non_finished_requests():
            self.pipeline.step()


_request_ids = itertools.count()
