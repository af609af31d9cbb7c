"""Store transcripts in the database, episode by episode, idempotently."""
import hashlib
import json
from collections import Counter, defaultdict

from django.db import transaction

from .models import Episode, Exchange, Line
from .pipeline import build_exchanges, season_and_number


def episode_hash(lines):
    payload = json.dumps([(line.scene, line.speaker, line.text) for line in lines], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def import_lines(lines, characters, progress=None):
    """Save ScriptLines and the exchanges of `characters`.

    Episodes whose lines are unchanged are left as they are, as are the
    exchanges of characters they already have; a changed episode is replaced
    whole. Returns a summary: episodes and lines seen, episodes written,
    exchanges per character.
    """
    by_episode = defaultdict(list)
    for line in lines:
        by_episode[line.episode].append(line)

    written = 0
    for name, episode_lines in by_episode.items():
        with transaction.atomic():
            written += _import_episode(name, episode_lines, characters)
        if progress:
            progress(1)

    exchange_counts = Counter(
        Exchange.objects.filter(character__in=characters, episode__name__in=by_episode).values_list(
            "character", flat=True
        )
    )
    return {
        "episodes": len(by_episode),
        "lines": len(lines),
        "episodes_written": written,
        "exchanges": {c: exchange_counts.get(c, 0) for c in characters},
    }


def _import_episode(name, lines, characters):
    """Bring one episode up to date; True when anything was written."""
    digest = episode_hash(lines)
    season, number = season_and_number(name)
    episode = Episode.objects.filter(name=name).first()
    changed = episode is None or episode.content_hash != digest
    if episode is None:
        episode = Episode.objects.create(name=name, season=season, number=number, content_hash=digest)
    elif changed:
        episode.lines.all().delete()  # cascades to the exchanges
        episode.content_hash = digest
        episode.save(update_fields=["content_hash"])

    if changed:
        Line.objects.bulk_create(
            Line(episode=episode, scene=line.scene, position=line.position, speaker=line.speaker, text=line.text)
            for line in lines
        )
    present = set(episode.exchanges.values_list("character", flat=True).distinct())
    missing = [c for c in characters if c not in present]
    if not missing:
        return changed
    line_ids = dict(episode.lines.values_list("position", "id"))
    Exchange.objects.bulk_create(
        Exchange(
            character=exchange.character,
            episode=episode,
            scene=exchange.scene,
            answer_line_id=line_ids[exchange.answer_position],
            question=exchange.question,
            answer=exchange.answer,
            context=list(exchange.context),
        )
        for character in missing
        for exchange in build_exchanges(lines, character)
    )
    return True
