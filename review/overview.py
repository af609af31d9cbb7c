"""Ratings overview: how each profile/model does, week by week, and its chart."""
import base64
import io
import statistics
from collections import defaultdict
from dataclasses import dataclass

from django.db.models import BooleanField, ExpressionWrapper, Q

from chat.models import Message, Rating

LOW_SCORE = 2  # a rating of this or lower counts as low


@dataclass
class GroupStats:
    profile: str
    model: str
    week: str  # ISO week, "2026-W48"; "all weeks" in the totals
    replies: int  # finished replies
    rated: int  # replies with at least one rating
    mean_score: float | None  # over all ratings of these replies
    low_share: float | None  # share of those ratings at LOW_SCORE or below
    retrieved_share: float  # share of replies that used a retrieved line
    median_seconds: float | None  # generating only
    median_waited_seconds: float | None  # what people waited: queue, model warm-up and generation

    @property
    def model_name(self) -> str:
        return short_model_name(self.model)


def short_model_name(model: str) -> str:
    """A model's name without its folder or hub owner: "/srv/var/models/SmolLM2.Q4_1.gguf" -> "SmolLM2.Q4_1"."""
    name = model.rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".gguf") or model


def iso_week(moment):
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def finished_replies(since=None):
    replies = Message.objects.filter(role=Message.Role.BOT, status=Message.Status.DONE)
    return replies.filter(created__gte=since) if since else replies


def reply_stats(replies):
    """(per profile/model and week, per profile/model over all weeks), sorted."""
    rows = list(
        replies.annotate(used_retrieval=ExpressionWrapper(~Q(retrieved_text=""), output_field=BooleanField())).values_list(
            "id", "profile", "generator_model", "created", "used_retrieval", "seconds", "waited_seconds"
        )
    )
    scores = defaultdict(list)
    for message_id, score in Rating.objects.filter(message__in=replies).values_list("message_id", "score"):
        scores[message_id].append(score)
    weekly, overall = defaultdict(list), defaultdict(list)
    for row in rows:
        message_id, profile, model, created, used_retrieval, seconds, waited = row
        weekly[(profile, model, iso_week(created))].append((scores[message_id], used_retrieval, seconds, waited))
        overall[(profile, model, "all weeks")].append((scores[message_id], used_retrieval, seconds, waited))
    return _summarise(weekly), _summarise(overall)


def _summarise(groups):
    summaries = []
    for (profile, model, week), replies in sorted(groups.items(), key=lambda item: (item[0][2], item[0][:2])):
        ratings = [score for reply_scores, *_ in replies for score in reply_scores]
        seconds = [s for _, _, s, _ in replies if s is not None]
        # Replies stored before the waits were recorded have none: left out, not counted as 0.
        waited = [w for *_, w in replies if w is not None]
        summaries.append(
            GroupStats(
                profile=profile,
                model=model,
                week=week,
                replies=len(replies),
                rated=sum(1 for reply_scores, *_ in replies if reply_scores),
                mean_score=statistics.fmean(ratings) if ratings else None,
                low_share=sum(score <= LOW_SCORE for score in ratings) / len(ratings) if ratings else None,
                retrieved_share=sum(used for _, used, *_ in replies) / len(replies),
                median_seconds=statistics.median(seconds) if seconds else None,
                median_waited_seconds=statistics.median(waited) if waited else None,
            )
        )
    return summaries


def chart_png(weekly):
    """A PNG (as a data: URL) of mean score, low-score share and median seconds per week."""
    # Imported here so the web process loads matplotlib only when staff open this page.
    # A Figure without pyplot renders through Agg: no display, safe in threads.
    from matplotlib.figure import Figure

    weeks = sorted({stats.week for stats in weekly})
    figure = Figure(figsize=(10, 7.5), layout="constrained")
    axes = figure.subplots(3, 1, sharex=True)
    panels = (
        ("mean score (1-5)", "mean_score"),
        (f"share of scores ≤ {LOW_SCORE}", "low_share"),
        ("median seconds people waited (queue + model warm-up + generation)", "median_waited_seconds"),
    )
    by_group = defaultdict(dict)
    for stats in weekly:
        by_group[(stats.profile, stats.model)][stats.week] = stats
    for axis, (title, attribute) in zip(axes, panels):
        for (profile, model), per_week in sorted(by_group.items()):
            values = [getattr(per_week[w], attribute) if w in per_week else None for w in weeks]
            values = [float("nan") if v is None else v for v in values]
            axis.plot(weeks, values, marker="o", label=f"{profile} · {short_model_name(model)}")
        axis.set_title(title, loc="left", fontsize=10)
        axis.grid(alpha=0.3)
    axes[0].set_ylim(0.8, 5.2)
    axes[1].set_ylim(-0.05, 1.05)
    axes[0].legend(fontsize=8, loc="best")
    axes[-1].set_xlabel("ISO week")
    axes[-1].tick_params(axis="x", labelrotation=45)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
