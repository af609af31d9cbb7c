"""Which transcripts the product runs on."""
from pathlib import Path

from django.conf import settings

DEMO_TRANSCRIPTS = Path(__file__).resolve().parent / "demo" / "demo_transcripts.csv"
DEMO_EPISODE_PREFIX = "Demo Series"
DEMO_NOTICE = (
    "The show's transcripts were not found, so Sheldon runs on a small demo corpus written for this project. "
    "Set TRANSCRIPTS to the Kaggle file (1_10_seasons_tbbt.csv) for the real thing."
)


def find_transcripts():
    """The first transcripts file that exists, and whether it is the demo corpus."""
    candidates = [
        settings.TRANSCRIPTS,
        settings.BASE_DIR / "data" / "raw" / "1_10_seasons_tbbt.csv",
        settings.BASE_DIR.parent / "shared" / "data" / "tbbt_transcripts.csv",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate), False
    return DEMO_TRANSCRIPTS, True


def demo_corpus_in_use():
    from .models import Episode

    return Episode.objects.filter(name__startswith=DEMO_EPISODE_PREFIX).exists()
