"""How a training sample is shown to each kind of generator.

Training must show a model the prompts it will get at reply time, so these
follow `inference.prompts` exactly:

    chat_messages(sample, own_lines)   # causal chat models: persona system prompt + turns
    seq2seq_input(sample)              # T5 family: `context: ...</s>question: ...`

Plain Python (no Django), so training runs anywhere, a GPU box included.
"""

from inference.prompts import persona_messages, seq2seq_prompt


def chat_messages(sample, own_lines=frozenset()):
    """The persona, the scene's earlier lines and the question as chat turns.

    The character's own earlier lines (`(episode, text)` in `own_lines`) are
    assistant turns, everyone else's are user turns; neighbours of one role
    are merged by the same helper as the reply-time prompt.
    """
    turns = [("assistant" if (sample.episode, line) in own_lines else "user", line) for line in sample.context]
    turns.append(("user", sample.question))
    return persona_messages(turns)


def seq2seq_input(sample):
    """The encoder's input text, as the reference design's prompt without a retrieved line."""
    return seq2seq_prompt(sample.context, sample.question)
