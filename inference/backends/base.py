"""What every backend shares: the backend base class, the batch contract, token counting."""
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..loading import TOKENIZER_LOCK
from ..requests import Sequence, Turn

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from ..loading import Generator
    from ..retrieval import Hit

# Called by a batch after each decode step with the sequences that got new tokens (or ended).
OnStep = Callable[[list[Sequence]], None]


class GenerationBatch(Protocol):
    """What `Backend.open_batch` gives: sequences join between steps and leave as they finish.

    - `add(prompts, sequences)`: start generating each prompt (text) into its
      Sequence; a batch may compute the prompts (and sample their first
      token) at once or at its next step.
    - `step()`: one decode step. Each running sequence gets its next token
      (`Sequence.append`: an end token or the token limit finishes it); a
      sequence finished from outside since the last step (a stop, the
      sentence cap) leaves the batch first, its rows freed and not computed.
      Then `on_step` is called with the sequences that changed.
    - `len(batch)`: the sequences not finished yet (running, or waiting to start).

    Sequences of one request with the same prompt (its candidates) may start at different steps: the
    OpenVINO batch computes the prompt for the first and starts the others once it has its first token,
    from the prompt's key-value blocks in the prefix cache.
    """

    def add(self, prompts: list[str], sequences: list[Sequence]) -> None: ...

    def step(self) -> None: ...

    def __len__(self) -> int: ...


class Backend:
    """Shared batch generation; subclasses say how a dialogue becomes a prompt."""

    sampling: dict = {}  # generate() keyword arguments

    def __init__(self, generator: "Generator", max_new_tokens: int) -> None:
        self.generator = generator
        self.model = generator.model
        self.tokenizer = generator.tokenizer
        self.max_new_tokens = max_new_tokens
        self.eos_ids = set(generator.eos_ids)

    @property
    def parameters(self) -> dict:
        """The generation parameters, as recorded with each reply."""
        return {**self.sampling, "max_new_tokens": self.max_new_tokens}

    def prompt(self, history: list[Turn], message: str, hit: "Hit | None") -> str:
        """The prompt text for a dialogue: history (list of Turn), message, retrieved Hit or None."""
        raise NotImplementedError

    def generate(self, prompts: list[str], sequences: list[Sequence], on_step: OnStep | None = None) -> None:
        """Generate for all prompts together into `sequences` (same order), to their end."""
        batch = self.open_batch(on_step)
        batch.add(prompts, sequences)
        while batch:
            batch.step()

    def open_batch(self, on_step: OnStep | None = None) -> GenerationBatch:
        """An empty batch (see GenerationBatch); `on_step` runs after each of its decode steps."""
        raise NotImplementedError


def count_tokens(tokenizer: "PreTrainedTokenizerBase", text: str) -> int:
    with TOKENIZER_LOCK:
        return len(tokenizer(text, add_special_tokens=False).input_ids)


def cut_to_tokens(tokenizer: "PreTrainedTokenizerBase", text: str, max_tokens: int) -> tuple[str, int]:
    """`text` cut to at most `max_tokens` tokens, and how many tokens the whole text had.

    Cut at a token boundary; the cut text is tokenized again and cut further
    in the rare case that its tokens merge differently, so it never exceeds
    `max_tokens`.
    """
    with TOKENIZER_LOCK:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        total, keep = len(ids), max_tokens
        while len(ids) > max_tokens and keep > 0:
            # A cut inside a character's bytes decodes to U+FFFD: leave that character out.
            text = tokenizer.decode(ids[:keep], skip_special_tokens=True).rstrip("\ufffd")
            ids = tokenizer(text, add_special_tokens=False).input_ids
            keep -= max(1, len(ids) - max_tokens)
        return (text if len(ids) <= max_tokens else ""), total
