"""How likely the generator finds a reply, and how much of that it owes to what was said.

    log_likelihoods(generator, prompts, replies)   # mean log-probability per token of each reply
    dialogue_pmi(backend, history, message, texts)  # per token: log p(text | dialogue) - log p(text | persona)

The pointwise mutual information of a reply and the dialogue rewards a reply
that the dialogue makes likelier (one that answers it) and cancels what makes
any line likely without it (a generic, fluent, in-character line). Both
scores are one forward pass of the generator per distinct prompt and one over
its replies together, which reuse the prompt's key-value cache.

Scores come from a torch model in float32 (`scoring_model`): the
generator's own model when torch serves it, else (OpenVINO, which gives the
log-probabilities of the tokens it samples only) a float32 copy read from the
same files, once per process. Not int8: torch's dynamic int8 gives a whole
input one activation scale, which blurred the probabilities of a long
prompt's continuation so much that the pmi found his true line among 10
(Hits@1) 0.13 of the time, against 0.42 in float32 (docs/evaluation.md,
round 4). Only `model`, `tokenizer`, `name` and `adapter` of the loaded
Generator are used, so the scoring does not depend on the decoding engine.
"""
import copy
import threading
import weakref
from collections import OrderedDict, defaultdict
from typing import TYPE_CHECKING

import torch

from .loading import TOKENIZER_LOCK, apply_adapter, device, read_generator
from .prompts import persona_messages

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from transformers.cache_utils import Cache

    from .backends import Backend
    from .loading import Generator

ALONE_CACHE_SIZE = 4096  # texts whose likelihood after the persona alone is kept (retrieved lines recur)

_scoring_models = {}
_scoring_lock = threading.Lock()
_prefixes = weakref.WeakKeyDictionary()  # model -> (the persona turn's token ids, their key-value cache)
_alone = OrderedDict()
_alone_lock = threading.Lock()


def scoring_model(generator: "Generator") -> "PreTrainedModel":
    """A float32 torch model of `generator`: its own model when torch serves it, else a copy loaded once."""
    if isinstance(generator.model, torch.nn.Module):
        return generator.model
    with _scoring_lock:
        key = (generator.name, generator.adapter)
        if key not in _scoring_models:
            torch_model, _, _ = read_generator(generator.name)
            if generator.adapter:
                torch_model = apply_adapter(torch_model, generator.adapter)
            _scoring_models[key] = torch_model.to(device()).eval()
        return _scoring_models[key]


@torch.inference_mode()
def _persona_prefix(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase") -> "tuple[list[int], Cache]":
    """The persona's turn, with which every chat prompt begins: (token ids, key-value cache), computed once."""
    with _scoring_lock:
        if model not in _prefixes:
            text = tokenizer.apply_chat_template(persona_messages([]), tokenize=False)
            with TOKENIZER_LOCK:
                ids = tokenizer(text, add_special_tokens=False).input_ids
            output = model(torch.tensor([ids], device=model.device), use_cache=True, logits_to_keep=1)
            _prefixes[model] = (ids, output.past_key_values)
        return _prefixes[model]


def log_likelihoods(generator: "Generator", prompts: list[str], replies: list[str]) -> list[float]:
    """The mean log-probability per token of each reply right after its prompt (0.0 for an empty reply).

    `generator`: a loaded decoder-only Generator (`scoring_model` says which
    torch model scores); prompts and replies pair up in order.
    """
    if len(prompts) != len(replies):
        raise ValueError(f"{len(prompts)} prompts for {len(replies)} replies: they pair up one to one.")
    model, tokenizer = scoring_model(generator), generator.tokenizer
    with TOKENIZER_LOCK:
        reply_ids = [tokenizer(reply, add_special_tokens=False).input_ids for reply in replies]
        by_prompt = defaultdict(list)
        for position, prompt in enumerate(prompts):
            if reply_ids[position]:
                by_prompt[prompt].append(position)
        prompt_ids = {prompt: tokenizer(prompt, add_special_tokens=False).input_ids for prompt in by_prompt}
    scores = [0.0] * len(replies)
    prefix = _persona_prefix(model, tokenizer) if by_prompt else None
    for prompt, positions in by_prompt.items():
        means = _after_prompt(model, prompt_ids[prompt], [reply_ids[position] for position in positions], prefix)
        for position, mean in zip(positions, means, strict=True):
            scores[position] = mean
    return scores


@torch.inference_mode()
def _after_prompt(
    model: "PreTrainedModel", prompt_ids: list[int], replies: list[list[int]],
    prefix: "tuple[list[int], Cache] | None" = None,
) -> list[float]:
    """Mean token log-probability of each (non-empty) reply after one prompt: the prompt is computed once,
    from the cached `prefix` (ids, cache) when it begins with it."""
    device = model.device
    start, cache = 0, None
    if prefix and len(prompt_ids) > len(prefix[0]) and prompt_ids[: len(prefix[0])] == prefix[0]:
        start, cache = len(prefix[0]), copy.deepcopy(prefix[1])
    output = model(
        torch.tensor([prompt_ids[start:]], device=device),
        position_ids=torch.arange(start, len(prompt_ids), device=device)[None],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    first = torch.log_softmax(output.logits[0, -1].float(), dim=-1)  # each reply's first token
    longest = max(len(ids) for ids in replies)
    targets = torch.tensor([ids + [0] * (longest - len(ids)) for ids in replies], device=device)
    mask = torch.tensor([[1.0] * len(ids) + [0.0] * (longest - len(ids)) for ids in replies], device=device)
    token_scores = first[targets[:, :1]]
    if longest > 1:
        # The replies' tokens but the last, after the prompt's cache, one row each. Right padding needs no
        # attention mask: a causal model's real positions never see the padding that follows them.
        cache = output.past_key_values
        cache.batch_repeat_interleave(len(replies))
        inputs = targets[:, :-1]
        positions = torch.arange(len(prompt_ids), len(prompt_ids) + longest - 1, device=device).expand_as(inputs)
        logits = model(inputs, position_ids=positions, past_key_values=cache, use_cache=True).logits.float()
        later = logits.gather(-1, targets[:, 1:, None])[..., 0] - torch.logsumexp(logits, dim=-1)
        token_scores = torch.cat([token_scores, later], dim=1)
    return ((token_scores * mask).sum(dim=1) / mask.sum(dim=1)).tolist()


def persona_prompt(tokenizer: "PreTrainedTokenizerBase") -> str:
    """The chat prompt with the persona and nothing said yet: what a reply is likely to be without a dialogue."""
    return tokenizer.apply_chat_template(persona_messages([]), tokenize=False, add_generation_prompt=True)


def dialogue_pmi(backend: "Backend", history: list, message: str, texts: list[str]) -> list[float]:
    """Per token, log p(text | persona + dialogue) - log p(text | persona alone), for each text.

    The dialogue prompt is the reply's own prompt without the retrieved
    exchange: a scripted line shown there would be likely because it was
    shown, not because it answers.
    """
    given = log_likelihoods(backend.generator, [backend.prompt(history, message, None)] * len(texts), texts)
    return [score - without for score, without in zip(given, likelihoods_alone(backend.generator, texts), strict=True)]


def likelihoods_alone(generator: "Generator", texts: list[str]) -> list[float]:
    """`log_likelihoods` of each text after the persona alone; the latest ALONE_CACHE_SIZE texts are remembered."""
    key = (generator.name, generator.adapter)
    with _alone_lock:
        missing = sorted({text for text in texts if (key, text) not in _alone})
    if missing:
        scores = log_likelihoods(generator, [persona_prompt(generator.tokenizer)] * len(missing), missing)
        with _alone_lock:
            _alone.update(((key, text), score) for text, score in zip(missing, scores, strict=True))
            while len(_alone) > ALONE_CACHE_SIZE:
                _alone.popitem(last=False)
    with _alone_lock:
        found = []
        for text in texts:
            _alone.move_to_end((key, text))
            found.append(_alone[(key, text)])
        return found
