"""Turn Kaggle-format transcripts into exchanges and training samples.

Pure Python with no Django, so that training scripts, tests and the import
command share one reading of the data:

    lines = read_transcripts(path)              # scripted lines in order
    exchanges = build_exchanges(lines, "Sheldon")
    train, val = split_episodes(episode_names(lines), seed=42)
    samples = augment(e for e in exchanges if e.episode in train)
"""
import csv
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_COLUMNS = ("episode_name", "dialogue", "person_scene")
SCENE_MARKER = "Scene"
CONTEXT_LINES = 5

_PARENTHESES = re.compile(r"\([^)]*\)?")
_LIST_NUMBER = re.compile(r"^\d+\.\s*")
_SPACES = re.compile(r"\s+")
_SEASON_EPISODE = re.compile(r"Series\s+(\d+)\s+Episode\s+(\d+)", re.IGNORECASE)


class TranscriptError(ValueError):
    """A transcripts file that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class ScriptLine:
    episode: str
    scene: int  # 1-based within the episode
    position: int  # 0-based within the episode, over kept lines only
    speaker: str
    text: str


@dataclass(frozen=True)
class ScriptExchange:
    """A character's answer to the line before it, with its context (stored as the model `data.Exchange`)."""

    character: str
    episode: str
    scene: int
    question: str
    answer: str
    context: tuple = field(default=())  # oldest first, at most CONTEXT_LINES
    answer_position: int = 0


@dataclass(frozen=True)
class Sample:
    """One training sample: a context suffix of an exchange."""

    context: tuple
    question: str
    answer: str
    episode: str


def normalise_speaker(name):
    """`Penny (waking)` -> `Penny`; `4. Sheldon (singing)` -> `Sheldon`."""
    name = _PARENTHESES.sub(" ", name)
    name = _LIST_NUMBER.sub("", name.strip())
    return _SPACES.sub(" ", name).strip()


def clean_dialogue(text):
    """Drop stage directions in parentheses and tidy whitespace."""
    return _SPACES.sub(" ", _PARENTHESES.sub(" ", text)).strip()


def season_and_number(episode_name):
    """(season, episode) from `Series 01 Episode 02 – ...`, or (0, 0)."""
    match = _SEASON_EPISODE.search(episode_name)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def read_transcripts(path):
    """Read a transcripts CSV into ScriptLines, in script order.

    Scenes split at `Scene` rows and at episode changes; speakers are
    normalised; lines left empty after clean-up are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise TranscriptError(f"Transcripts file not found: {path}")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, strict=True)  # strict: a stray quote is an error, not glued rows
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise TranscriptError(
                    f"{path} lacks the column(s) {', '.join(missing)}; expected "
                    f"{', '.join(REQUIRED_COLUMNS)} (the Kaggle transcripts layout), "
                    f"found {', '.join(columns) or 'none'}."
                )
            reader.fieldnames = columns
            return list(_script_lines(reader, path))
    except UnicodeDecodeError as error:
        raise TranscriptError(f"{path} is not UTF-8 text: {error}") from error
    except csv.Error as error:
        raise TranscriptError(f"{path} is not a readable CSV file: {error}") from error


# The database's field lengths (data/models.py): a longer name is no episode or speaker of a transcript.
EPISODE_NAME_MAX = 300
SPEAKER_MAX = 200


def _script_lines(rows: csv.DictReader, path: Path):
    episode, scene, position = None, 0, 0
    finished = set()  # episodes whose rows have ended: an episode's rows come together
    for row in rows:
        where = f"{path}, line {rows.line_num}"
        if None in row:
            raise TranscriptError(
                f"{where} has more fields than its header's {len(rows.fieldnames)} (a comma in an unquoted dialogue?)."
            )
        if None in row.values():
            raise TranscriptError(f"{where} has fewer fields than its header's {len(rows.fieldnames)}.")
        episode_name = row["episode_name"].strip()
        speaker = row["person_scene"].strip()
        if not episode_name:
            continue
        if len(episode_name) > EPISODE_NAME_MAX or len(speaker) > SPEAKER_MAX:
            raise TranscriptError(
                f"{where}: an episode name holds at most {EPISODE_NAME_MAX} characters and a speaker "
                f"{SPEAKER_MAX} (a dialogue in the wrong column?)."
            )
        if episode_name != episode:
            if episode_name in finished:
                raise TranscriptError(
                    f"{where}: the rows of {episode_name!r} come back after another episode's; "
                    "an episode's rows come together, in script order."
                )
            finished.add(episode)
            episode, scene, position = episode_name, 1, 0
        if speaker == SCENE_MARKER:
            if position:  # a heading before any line opens the first scene
                scene += 1
            continue
        text = clean_dialogue(row["dialogue"] or "")
        speaker = normalise_speaker(speaker)
        if not text or not speaker:
            continue
        yield ScriptLine(episode, scene, position, speaker, text)
        position += 1


def episode_names(lines):
    """Episode names in script order, each once."""
    return list(dict.fromkeys(line.episode for line in lines))


def build_exchanges(lines, character="Sheldon"):
    """Every line of `character` (of any speaker, with None) that answers a line of the same scene."""
    exchanges = []
    scene_lines = []
    for line in lines:
        if scene_lines and (line.episode, line.scene) != (scene_lines[-1].episode, scene_lines[-1].scene):
            scene_lines = []
        if scene_lines and character in (None, line.speaker):
            question = scene_lines[-1]
            exchanges.append(
                ScriptExchange(
                    character=line.speaker,
                    episode=line.episode,
                    scene=line.scene,
                    question=question.text,
                    answer=line.text,
                    context=tuple(earlier.text for earlier in scene_lines[-1 - CONTEXT_LINES : -1]),
                    answer_position=line.position,
                )
            )
        scene_lines.append(line)
    return exchanges


def augment(exchanges):
    """The reference augmentation: one sample per context suffix.

    Three context lines give four samples: all three, the last two, the
    last one, and none.
    """
    for exchange in exchanges:
        for start in range(len(exchange.context) + 1):
            yield Sample(exchange.context[start:], exchange.question, exchange.answer, exchange.episode)


def split_episodes(episodes, validation_fraction=0.1, seed=42):
    """Split episode names into (train, validation) sets, reproducibly by seed."""
    ordered = sorted(set(episodes))
    if len(ordered) < 2:
        return set(ordered), set()
    random.Random(seed).shuffle(ordered)
    n_validation = min(len(ordered) - 1, max(1, round(len(ordered) * validation_fraction)))
    return set(ordered[n_validation:]), set(ordered[:n_validation])
