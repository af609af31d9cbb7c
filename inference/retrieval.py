"""The retrieval index: the character's scripted lines, found by what they answer.

The retriever is a response selector: a bi-encoder that embeds a dialogue
(`inference.prompts.selector_query`: its last lines, then the line to answer)
and a reply so that the true reply is the nearest (`train_retriever` fine-tunes
it on the show's exchanges). An exchange's vector is the unit embedding of its
scripted answer; a query's, the embedding of the dialogue and the user's
message. The same model scores generated candidates against the dialogue
(`similarities`), so retrieval and ranking share one model and one scale.

On disk an index is a folder:

    manifest.json    retriever model, data fingerprint, sizes
    vectors.npy      float32, one row per exchange
    exchanges.json   the exchanges, in the rows' order

An index built with another retriever or from other data is stale: loading
it raises StaleIndexError, and `manage.py build_index` rebuilds it.
"""
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from .loading import load_retriever, weights_digest
from .prompts import selector_query

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

FORMAT_VERSION = 2  # 1: [emb(context); emb(question)] per exchange; 2: emb(answer)
# The retriever's tokenizer, shared by a worker's threads, fails when two use it at once
# (see inference.loading.TOKENIZER_LOCK); encoding holds this lock.
RETRIEVER_LOCK = threading.Lock()
MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
EXCHANGES = "exchanges.json"


class RetrievalIndexError(RuntimeError):
    """An index that cannot be used; the message says why and what to run."""


class IndexMissingError(RetrievalIndexError):
    pass


class StaleIndexError(RetrievalIndexError):
    pass


@dataclass(frozen=True)
class IndexedExchange:
    question: str
    answer: str
    episode: str
    scene: int
    context: tuple = field(default=())


@dataclass(frozen=True)
class Hit:
    """A scripted exchange close to the query: `text` is the scripted answer."""

    text: str
    question: str
    score: float
    episode: str
    scene: int
    context: tuple = field(default=())


def exchanges_from_database(character: str) -> list[IndexedExchange]:
    """The character's exchanges from the database, in a stable order."""
    from data.models import Exchange

    rows = (
        Exchange.objects.filter(character=character)
        .order_by("pk")
        .values_list("question", "answer", "episode__name", "scene", "context")
    )
    return [IndexedExchange(q, a, episode, scene, tuple(context)) for q, a, episode, scene, context in rows]


def fingerprint(exchanges: Iterable[IndexedExchange]) -> str:
    """A hash of the exchanges' content: it changes whenever the data does."""
    digest = hashlib.sha256()
    for exchange in exchanges:
        digest.update(json.dumps(asdict(exchange), ensure_ascii=False).encode())
        digest.update(b"\n")
    return f"sha256:{digest.hexdigest()}"


def read_manifest(path: str | Path) -> dict | None:
    try:
        return json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def staleness(manifest: dict | None, retriever_model: str, data_fingerprint: str | None) -> str | None:
    """Why an index with this manifest cannot serve, or None when it can."""
    if manifest is None:
        return "there is no index"
    if manifest.get("format") != FORMAT_VERSION:
        return f"it has format {manifest.get('format')}, this code reads format {FORMAT_VERSION}"
    if manifest.get("retriever_model") != retriever_model:
        return f"it was built with the retriever {manifest.get('retriever_model')!r}, not {retriever_model!r}"
    if "retriever_weights" not in manifest:
        return "it was built before indexes recorded their retriever's weights"
    if manifest["retriever_weights"] != weights_digest(retriever_model):
        return f"the retriever {retriever_model!r} changed (trained again, or a new base) since it was built"
    if data_fingerprint is not None and manifest.get("data_fingerprint") != data_fingerprint:
        return "the exchanges changed since it was built"
    return None


def embed_texts(
    retriever: "SentenceTransformer", texts: list[str], batch_size: int = 64, progress: bool = False
) -> np.ndarray:
    """Unit vectors, one row per text; each distinct text is embedded once."""
    # Shortest first: texts of a batch have similar lengths, so little is padded.
    distinct = sorted(set(texts), key=len)
    vectors = []
    for start in tqdm(range(0, len(distinct), batch_size), desc="Embedding", unit="batch", disable=not progress):
        with RETRIEVER_LOCK:
            vectors.append(
                retriever.encode(
                    distinct[start : start + batch_size],
                    batch_size=batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,  # the bar above counts batches
                )
            )
    if not texts:
        return np.zeros((0, retriever.get_embedding_dimension()), dtype=np.float32)
    by_text = dict(zip(distinct, np.concatenate(vectors)))
    return np.stack([by_text[text] for text in texts]).astype(np.float32)


def build_index(
    path: str | Path, retriever_model: str, exchanges: list[IndexedExchange], batch_size: int = 64,
    progress: bool = False,
) -> dict:
    """Embed `exchanges` and save the index at `path`, replacing any index there."""
    if not exchanges:
        raise RetrievalIndexError(
            "There are no exchanges to index: import the transcripts first (manage.py import_transcripts PATH)."
        )
    path = Path(path)
    weights = weights_digest(retriever_model)  # before embedding: the weights the vectors come from
    retriever = load_retriever(retriever_model)
    vectors = embed_texts(retriever, [exchange.answer for exchange in exchanges], batch_size, progress)
    manifest = {
        "format": FORMAT_VERSION,
        "retriever_model": retriever_model,
        "retriever_weights": weights,
        "data_fingerprint": fingerprint(exchanges),
        "exchanges": len(exchanges),
        "dimension": int(vectors.shape[1]),
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Written in full beside the target, then swapped in: a reader never sees half an index.
    staging = path.with_name(path.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    np.save(staging / VECTORS, vectors)
    (staging / EXCHANGES).write_text(json.dumps([asdict(e) for e in exchanges], ensure_ascii=False))
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
    old = path.with_name(path.name + ".old")
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
    staging.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def cached_index(folder: str | Path, retriever_model: str, exchanges: list[IndexedExchange]) -> "RetrievalIndex":
    """The index of `exchanges` under `folder`, built on first use: one per retriever and data.

    For evaluations, which index the training episodes only (the validation episodes' lines would
    give the answers away).
    """
    data = fingerprint(exchanges)
    key = hashlib.sha256(f"{retriever_model}\n{data}".encode()).hexdigest()[:16]
    path = Path(folder) / f"index-{key}"
    if staleness(read_manifest(path), retriever_model, data):
        build_index(path, retriever_model, exchanges, progress=True)
    return RetrievalIndex.load(path, retriever_model, data)


class RetrievalIndex:
    """An index in memory with the retriever that embeds queries for it."""

    def __init__(
        self, retriever_model: str, retriever: "SentenceTransformer", vectors: np.ndarray,
        exchanges: list[IndexedExchange], manifest: dict,
    ) -> None:
        self.retriever_model = retriever_model
        self.retriever = retriever
        self.vectors = vectors
        self.exchanges = exchanges
        self.manifest = manifest

    @classmethod
    def load(cls, path: str | Path, retriever_model: str, data_fingerprint: str | None = None) -> "RetrievalIndex":
        """Load the index at `path`, refusing one that is missing or stale.

        With `data_fingerprint` (see `fingerprint`), an index built from other
        data is refused too.
        """
        path = Path(path)
        manifest = read_manifest(path)
        if manifest is None:
            raise IndexMissingError(
                f"No retrieval index at {path} (RETRIEVAL_INDEX_PATH): run `python manage.py build_index`, "
                f"or set RETRIEVER_MODEL=none to reply without retrieval."
            )
        reason = staleness(manifest, retriever_model, data_fingerprint)
        if reason:
            raise StaleIndexError(
                f"The retrieval index at {path} is stale: {reason}. "
                f"Run `python manage.py build_index` to rebuild it."
            )
        vectors = np.load(path / VECTORS)
        exchanges = [
            IndexedExchange(**{**row, "context": tuple(row["context"])})
            for row in json.loads((path / EXCHANGES).read_text())
        ]
        return cls(retriever_model, load_retriever(retriever_model), vectors, exchanges, manifest)

    def queries(self, dialogues: list[list[str]], messages: list[str]) -> np.ndarray:
        """The query vectors of (dialogue lines, message) pairs."""
        return embed_texts(self.retriever, [selector_query(d, m) for d, m in zip(dialogues, messages)])

    def similarities(self, query: np.ndarray, texts: Iterable[str]) -> np.ndarray:
        """The cosine of one query vector with each text: how well each answers the dialogue."""
        return embed_texts(self.retriever, list(texts)) @ query

    def search_many(
        self, dialogues: list[list[str]], messages: list[str], k: int = 1, queries: np.ndarray | None = None
    ) -> list[list[Hit]]:
        """For each (dialogue lines, message), its k best scripted answers (distinct texts), best first."""
        queries = self.queries(dialogues, messages) if queries is None else queries
        found = []
        for scores in queries @ self.vectors.T:
            hits, texts = [], set()
            for row in np.argsort(-scores):
                if len(hits) == k:
                    break
                if self.exchanges[row].answer not in texts:
                    texts.add(self.exchanges[row].answer)
                    hits.append(self._hit(int(row), float(scores[row])))
            found.append(hits)
        return found

    def search(self, dialogue: list[str], message: str, k: int = 1) -> list[Hit]:
        return self.search_many([dialogue], [message], k)[0]

    def _hit(self, row: int, score: float) -> Hit:
        exchange = self.exchanges[row]
        return Hit(
            text=exchange.answer,
            question=exchange.question,
            score=score,
            episode=exchange.episode,
            scene=exchange.scene,
            context=exchange.context,
        )
