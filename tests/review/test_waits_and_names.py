"""What people waited, in the ratings overview and the admin; model names short, with the full one on hover."""

import pytest
from django.urls import reverse

from chat.models import Message
from review.overview import finished_replies, reply_stats, short_model_name

from .conftest import SMOLLM
from .test_pages import page, staff  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def test_short_model_names():
    assert short_model_name("/srv/app/var/models/SmolLM2-135M-Instruct.Q4_1.gguf") == "SmolLM2-135M-Instruct.Q4_1"
    assert short_model_name("google/flan-t5-base") == "flan-t5-base"
    assert short_model_name("/srv/models/sheldon-lora/") == "sheldon-lora"
    assert short_model_name("plain") == "plain"


def test_the_overview_shows_the_time_people_waited(staff, transcripts):
    # b1b and b2 recorded their waits; b1 and b5 are from before waits were recorded.
    Message.objects.filter(pk=transcripts.b1b.pk).update(waited_seconds=30.0, queue_seconds=0.5, warmup_seconds=27.0)
    Message.objects.filter(pk=transcripts.b2.pk).update(waited_seconds=4.0, queue_seconds=0.2, warmup_seconds=0.0)
    _, overall = reply_stats(finished_replies())
    offline = next(stats for stats in overall if stats.model == SMOLLM)
    assert offline.median_seconds == pytest.approx(2.0)  # generation only: 0.5, 1.5, 2.5, 3.0
    assert offline.median_waited_seconds == pytest.approx(17.0)  # (30 + 4) / 2: unknown waits left out

    html = page(staff, reverse("review:overview"))
    assert "median waited s" in html and "17.00" in html
    assert f'title="{SMOLLM}"' in html

    reply_page = page(staff, reverse("admin:chat_message_change", args=[transcripts.b1b.pk]))
    assert "waited 30.00 s · queue 0.50 s · model warm-up 27.00 s" in reply_page
    assert "generated in 1.50 s" in reply_page
