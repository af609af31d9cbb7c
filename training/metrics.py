"""Text metrics for generated replies, in plain Python (no hub downloads).

rouge_l("the cat sat on the mat", "the cat on the mat")  # 10/11
distinct_n(["a b a b"], 2)                               # 2 of 3 bigrams: 2/3
"""

import re

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text):
    """Lower-case word tokens; punctuation is dropped, `don't` stays one word."""
    return _WORD.findall(text.lower())


def ngrams(tokens, n):
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts, n):
    """Distinct n-grams over all n-grams of all texts (0.0 when there are none).

    Measured over the whole set of replies, so a model that says the same
    thing to everyone scores low even when each reply is varied within itself.
    """
    all_ngrams = [gram for text in texts for gram in ngrams(words(text), n)]
    return len(set(all_ngrams)) / len(all_ngrams) if all_ngrams else 0.0


def longest_common_subsequence(first, second):
    """Length of the longest common subsequence of two token lists."""
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for j, other in enumerate(second):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate, reference):
    """ROUGE-L F1 of two texts over word tokens (as rouge-score's rougeL, without stemming)."""
    candidate_words, reference_words = words(candidate), words(reference)
    common = longest_common_subsequence(candidate_words, reference_words)
    if not common:
        return 0.0
    precision = common / len(candidate_words)
    recall = common / len(reference_words)
    return 2 * precision * recall / (precision + recall)


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else 0.0
