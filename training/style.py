"""Does a line sound like the character? A small classifier that says how likely.

Trained on the training episodes only: the character's lines against everyone
else's, TF-IDF over words and word pairs plus character n-grams, then logistic
regression. Classes are weighted to balance, so a reply with nothing of the
character in it scores near 0.5 or below and a very typical line near 1.

Training takes a few seconds; the fitted classifier is cached on disk, keyed by
everything that would change it (the lines, the character, this module's
version), so a second evaluation run loads it instantly.
"""

import hashlib
import logging
from pathlib import Path

import joblib
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline, make_union

logger = logging.getLogger(__name__)

# Raise when the features or the model change, so old caches are not reused.
CLASSIFIER_VERSION = 1


def build_style_classifier():
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True)
    characters = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=3, sublinear_tf=True)
    return make_pipeline(
        make_union(words, characters),
        LogisticRegression(C=2.0, class_weight="balanced", max_iter=2000),
    )


class StyleScorer:
    """P(character) for any text, from a classifier fitted on scripted lines."""

    def __init__(self, classifier, held_out_accuracy=None):
        self.classifier = classifier
        self.held_out_accuracy = held_out_accuracy

    @classmethod
    def fit(cls, lines, character, seed=42):
        """Fit on ScriptLines (training episodes only); report held-out accuracy."""
        texts = [line.text for line in lines]
        labels = [int(line.speaker == character) for line in lines]
        if not 0 < sum(labels) < len(labels):
            raise ValueError(
                f"The style classifier needs lines of {character} and of others; "
                f"got {sum(labels)} of {len(labels)} lines by {character}."
            )
        # A held-out slice measures the classifier, then it is refitted on all lines.
        accuracy = None
        if min(sum(labels), len(labels) - sum(labels)) >= 10:
            train_texts, test_texts, train_labels, test_labels = train_test_split(
                texts, labels, test_size=0.1, random_state=seed, stratify=labels
            )
            probe = build_style_classifier().fit(train_texts, train_labels)
            accuracy = float(probe.score(test_texts, test_labels))
        classifier = build_style_classifier().fit(texts, labels)
        return cls(classifier, accuracy)

    @classmethod
    def cached(cls, lines, character, cache_dir, seed=42):
        """Load the classifier for these lines from cache_dir, fitting it once if absent."""
        digest = hashlib.sha256(f"{CLASSIFIER_VERSION}\n{character}\n{seed}".encode())
        for line in lines:
            digest.update(f"{line.speaker}\t{line.text}\n".encode())
        path = Path(cache_dir) / f"style-{digest.hexdigest()[:16]}.joblib"
        if path.is_file():
            stored = joblib.load(path)
            return cls(stored["classifier"], stored["held_out_accuracy"])
        logger.info("Fitting the style classifier on %d lines", len(lines))
        scorer = cls.fit(lines, character, seed=seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"classifier": scorer.classifier, "held_out_accuracy": scorer.held_out_accuracy}, path)
        return scorer

    def probabilities(self, texts):
        """P(character) of each text, as a list of floats."""
        return [float(p) for p in self.classifier.predict_proba(list(texts))[:, 1]]
