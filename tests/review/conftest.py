"""A small, fully known set of conversations for the review tests.

    numbers  (alice, consents, Sheldon, 24 days ago)
      u1 "What is your favourite number?"
        b1  offline/smollm, retrieved, rated 5, alternative not shown
        b1b offline/smollm, rated 1, labelled off_character, the shown one
      u2 "Do you like trains?"
        b2  offline/smollm, rated 4, labelled great
    greeting (bob, no profile: no consent, Sheldon, 16 days ago)
      u3 "Hi"        b3 reference/flan-t5, failed, unrated
      u4 "Hello?"    b4 reference/flan-t5, stopped, rated 2
    physics  (carol, consents, Leonard, 6 days ago)
      u5 "Help me with physics"   b5 offline/smollm, rated 3, labelled repetitive
"""
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from accounts.models import AccountSettings
from chat.models import Conversation, Message, Rating
from review.models import ReviewLabel

SMOLLM = "SmolLM2-135M-Instruct.Q4_1.gguf"
FLAN = "google/flan-t5-base"
MINILM = "all-MiniLM-L6-v2"


def conversation(owner, title, character, days_ago):
    created = timezone.now() - timedelta(days=days_ago)
    chat = Conversation.objects.create(owner=owner, title=title, character=character)
    Conversation.objects.filter(pk=chat.pk).update(created=created)  # auto_now_add ignores a given value
    chat.refresh_from_db()
    return chat


def message(chat, minute, role, text, **record):
    made = Message.objects.create(conversation=chat, role=role, text=text, **record)
    Message.objects.filter(pk=made.pk).update(created=chat.created + timedelta(minutes=minute))
    made.refresh_from_db()
    return made


def reply(chat, minute, question, text, model, **record):
    defaults = {
        "profile": "offline" if model == SMOLLM else "reference",
        "generator_model": model,
        "retriever_model": MINILM,
        "parameters": {"temperature": 0.7, "top_p": 0.8},
        "seconds": 1.0,
        "new_tokens": 12,
        "worker": "celery@test",
    }
    return message(chat, minute, Message.Role.BOT, text, reply_to=question, **{**defaults, **record})


@pytest.fixture
def transcripts(db):
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    carol = User.objects.create_user("carol")
    reviewer = User.objects.create_superuser("reviewer")
    AccountSettings.objects.create(user=alice, allow_training_use=True)
    AccountSettings.objects.create(user=carol, allow_training_use=True)

    numbers = conversation(alice, "numbers", "Sheldon", days_ago=24)
    u1 = message(numbers, 0, "user", "What is your favourite number?")
    b1 = reply(
        numbers, 1, u1, "73. It is the best number.", SMOLLM, is_chosen=False, seconds=0.5,
        retrieved_text="73 is the Chuck Norris of numbers.",
        retrieved_score=0.93,
        retrieved_episode="Series 04 Episode 10",
    )
    b1b = reply(numbers, 2, u1, "I do not have a favourite.", SMOLLM, seconds=1.5)
    u2 = message(numbers, 3, "user", "Do you like trains?")
    b2 = reply(numbers, 4, u2, "Trains are the pinnacle of human engineering.", SMOLLM, seconds=2.5)

    greeting = conversation(bob, "greeting", "Sheldon", days_ago=16)
    u3 = message(greeting, 0, "user", "Hi")
    b3 = reply(greeting, 1, u3, "", FLAN, status="failed", error="worker died", seconds=None, new_tokens=None)
    u4 = message(greeting, 2, "user", "Hello?")
    b4 = reply(greeting, 3, u4, "Well, as I was", FLAN, status="stopped", seconds=4.0)

    physics = conversation(carol, "physics", "Leonard", days_ago=6)
    u5 = message(physics, 0, "user", "Help me with physics")
    b5 = reply(physics, 1, u5, "Sure, physics is physics is physics.", SMOLLM, seconds=3.0)

    for reply_message, user, score in ((b1, alice, 5), (b1b, alice, 1), (b2, alice, 4), (b4, bob, 2), (b5, carol, 3)):
        Rating.objects.create(message=reply_message, user=user, score=score, comment=f"scored {score}")
    ReviewLabel.objects.create(message=b1b, label="off_character", note="Sheldon always has one", author=reviewer)
    ReviewLabel.objects.create(message=b2, label="great", author=reviewer)
    ReviewLabel.objects.create(message=b5, label="repetitive", note="loops", author=reviewer)

    return SimpleNamespace(**locals())


@pytest.fixture
def staff_without_permissions(db):
    return User.objects.create_user("intern", is_staff=True)


@pytest.fixture
def reviewer_with_view_permissions(db):
    """Staff with only the view permissions and labelling: the least a reviewer needs."""
    user = User.objects.create_user("viewer", is_staff=True)
    codenames = ["view_conversation", "view_message", "view_rating", "view_reviewlabel", "add_reviewlabel"]
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user
