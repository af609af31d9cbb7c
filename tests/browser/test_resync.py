"""Frames lost or out of order, made to happen: the page still shows each reply as it is.

A reply whose last frame never came: the reply ends in the database and its
`reply_done` frame never reaches the page (a channel layer delivers at most
once); the page reads its messages again and shows how it ended. Frames of two
senders (the socket that queued a reply, the worker that writes it) can cross on
the way: the page keeps the newer state.
"""
import asyncio
import threading

import pytest
from channels.layers import get_channel_layer
from django.utils import timezone
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from chat.frames import message_frame, reply_done_frame, send_now, token_frame
from chat.models import Conversation, Message
from chat.notify import user_group

from ..chat.live import live_stack  # noqa: F401  (fixtures)
from .test_chat_features import amy, logged_in_page, server  # noqa: F401  (fixtures)
from .test_chat_page import browser, chromium  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.timeout(300), pytest.mark.django_db(transaction=True)]

END = "Thursday is anything-can-happen Thursday."


def reply_to(question, status, **fields):
    """A reply to `question` in `status` (one that a worker took has `attempts=1`)."""
    return Message.objects.create(
        conversation=question.conversation, role=Message.Role.BOT, reply_to=question, status=status, **fields
    )


def asked(user, title, status, **fields):
    """A conversation of `user`: "What day is it?" and its reply in `status`; (conversation, question, reply)."""
    conversation = Conversation.objects.create(owner=user, title=title)
    question = Message.objects.create(conversation=conversation, role=Message.Role.USER, text="What day is it?")
    return conversation, question, reply_to(question, status, **fields)


def test_a_reply_whose_last_frame_was_lost_ends_on_the_page(browser, server, amy):  # noqa: F811
    conversation, _, reply = asked(amy, "Lost frames", Message.Status.STREAMING, text="Thursday is", attempts=1)
    page = page_on(browser, server, amy, conversation)
    page.wait_for_selector(".message-bot.status-streaming")
    assert page.is_visible("#stop-button") and page.is_disabled("#send-button")

    # The worker ends the reply; its frame is lost on the way.
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.DONE, text=END, updated=timezone.now())

    # Well before the stale-reply sweep (CHAT_REPLY_STALE_SECONDS, 20 s), which would fail it instead.
    page.wait_for_selector(".message-bot.status-done", timeout=12000)
    assert page.inner_text(".message-bot .message-text") == END
    assert page.is_hidden("#stop-button") and page.is_enabled("#send-button")


def run_apart(coroutine):
    """Run a coroutine to its end on a thread of its own: Playwright's sync API holds an event loop in this one."""
    thread = threading.Thread(target=asyncio.run, args=(coroutine,))
    thread.start()
    thread.join(timeout=30)


# Notes when the page's socket opens: its consumer joins the conversation's group before it accepts, so frames sent
# from then on reach the page (sent before, they reach no one, as a channel layer promises).
def wrapping_sockets(make: str) -> str:
    """An init script that makes each of the page's sockets with `make`: JavaScript that returns the socket,
    from `url`, `protocols` and the browser's own `PageSocket`."""
    return (
        "const PageSocket = window.WebSocket;\n"
        f"window.WebSocket = function (url, protocols) {{ {make} }};\n"
        "window.WebSocket.OPEN = PageSocket.OPEN;\n"
    )


SOCKET_OPEN_NOTED = wrapping_sockets(
    'const socket = new PageSocket(url, protocols); socket.addEventListener("open", () => (window.socketOpen = true));'
    " return socket;"
)


def page_on(browser, server, user, conversation, *scripts):  # noqa: F811
    """A page of `user` on `conversation`, each of `scripts` run in it before the page's own."""
    page = logged_in_page(browser, server, user)
    for script in scripts:
        page.add_init_script(script)
    page.goto(f"{server}/c/{conversation.pk}/")
    return page


def opened(browser, server, user, conversation):  # noqa: F811
    """A page of `user` on `conversation`, once its socket is open (frames sent from then on reach it)."""
    page = page_on(browser, server, user, conversation, SOCKET_OPEN_NOTED)
    page.wait_for_function("() => window.socketOpen === true")
    return page


def send_frames(conversation_id, *frames):
    """Frames to the conversation's sockets, in this order, as one sender sends them."""

    async def send_all():
        for frame in frames:
            await send_now(conversation_id, frame)

    run_apart(send_all())


def test_a_workers_frames_that_overtake_the_sockets_are_kept(browser, server, amy):  # noqa: F811
    conversation, question, old = asked(amy, "Crossed frames", Message.Status.STREAMING, text="Monday", attempts=1)
    page = page_on(browser, server, amy, conversation)
    page.wait_for_selector(".message-bot.status-streaming")

    # The old reply ends, and this page misses its reply_done; then the question is edited (in another tab):
    # the old reply is deleted and a new one queued, whose worker starts at once.
    old_id = old.pk
    old.delete()
    question.text = "What day is it today?"
    question.save()
    new = reply_to(question, Message.Status.QUEUED)
    queued = message_frame(new)
    new.status = Message.Status.STREAMING
    new.save()  # its worker claimed it
    streaming = message_frame(new)

    # The worker's frames come first (sent again until the page's socket has joined: the same state each time).
    for _ in range(50):
        send_frames(conversation.pk, streaming)
        try:
            page.wait_for_selector(f'[data-message-id="{new.pk}"]', timeout=200)
            break
        except PlaywrightTimeout:
            pass
    # Then the socket's frames of the edit (as chat/consumers.py sends them), older than the worker's, cross
    # the worker's next pieces.
    send_frames(
        conversation.pk,
        token_frame(new.pk, 0, "Thursday is"),
        queued,
        message_frame(question),  # the new text: the replies to the old one go
        token_frame(new.pk, len("Thursday is"), " anything-can-happen Thursday."),
    )
    shown = f'[data-message-id="{new.pk}"] .message-text'
    page.wait_for_function(f"t => document.querySelector('{shown}')?.textContent === t", arg=END, timeout=10000)
    assert page.is_visible(f'[data-message-id="{new.pk}"].status-streaming')
    assert page.query_selector(f'[data-message-id="{old_id}"]') is None and "Monday" not in page.inner_text("body")
    assert "What day is it today?" in page.inner_text(".message-user .message-text")

    # The new reply ends: nothing is left in progress (the old reply, gone from the page, does not keep it busy).
    new.status, new.text = Message.Status.DONE, END
    new.save()
    send_frames(conversation.pk, reply_done_frame(new))
    page.wait_for_selector(f'[data-message-id="{new.pk}"].status-done')
    assert page.is_hidden("#stop-button") and page.is_enabled("#send-button")


def test_an_edit_resent_unchanged_keeps_only_its_new_reply(browser, server, amy):  # noqa: F811
    conversation, question, old = asked(amy, "Resent", Message.Status.DONE, text="Monday")
    page = opened(browser, server, amy, conversation)
    page.wait_for_selector(f'[data-message-id="{old.pk}"]')

    # "Save and resend" with the text as it was: the server deletes the reply and queues a new one, and the
    # socket sends the new reply's frame, then the question's, whose text has not changed.
    old_id = old.pk
    old.delete()
    new = reply_to(question, Message.Status.QUEUED)
    send_frames(conversation.pk, message_frame(new), message_frame(question))
    page.wait_for_selector(f'[data-message-id="{new.pk}"]')
    page.wait_for_function(f"() => !document.querySelector('[data-message-id=\"{old_id}\"]')", timeout=5000)
    new.status, new.text = Message.Status.DONE, END
    new.save()
    send_frames(conversation.pk, reply_done_frame(new))
    page.wait_for_selector(f'[data-message-id="{new.pk}"].status-done')
    assert page.query_selector(".alt-position") is None  # no "2/2" leading to the deleted reply


def test_a_piece_after_the_end_does_not_reopen_the_reply(browser, server, amy):  # noqa: F811
    conversation, _, reply = asked(amy, "Late piece", Message.Status.STREAMING, text="Thursday is", attempts=1)
    page = opened(browser, server, amy, conversation)
    page.wait_for_selector(".message-bot.status-streaming")

    # The web process ends the reply (a stop it enforced); the worker's last piece comes after its frame.
    reply.status = Message.Status.STOPPED
    reply.save()
    later = Message.objects.create(conversation=conversation, role=Message.Role.USER, text="Never mind.")
    send_frames(
        conversation.pk,
        reply_done_frame(reply),
        token_frame(reply.pk, len("Thursday is"), " anything"),
        message_frame(later),  # from the same sender: once it shows, the piece before it was handled
    )
    page.wait_for_selector(f'[data-message-id="{later.pk}"]')
    assert page.inner_text(f'[data-message-id="{reply.pk}"] .message-text') == "Thursday is"
    assert page.is_visible(f'[data-message-id="{reply.pk}"].status-stopped')
    assert page.is_hidden("#stop-button") and page.is_enabled("#send-button")


# Records, in the page, when a history page has been read and when a socket is opened.
SOCKETS_AND_HISTORY_IN_ORDER = """
window.order = [];
const pageFetch = window.fetch;
window.fetch = async (url, options) => {
  const response = await pageFetch(url, options);
  if (String(url).includes("/messages/")) window.order.push("history read");
  return response;
};
""" + wrapping_sockets('window.order.push("socket"); return new PageSocket(url, protocols);')


def test_a_dropped_socket_reads_the_history_first_and_drops_what_was_deleted(browser, server, amy):  # noqa: F811
    conversation, question, old = asked(amy, "Dropped", Message.Status.DONE, text="Monday")
    page = page_on(browser, server, amy, conversation, SOCKETS_AND_HISTORY_IN_ORDER)
    page.wait_for_selector(f'[data-message-id="{old.pk}"]')
    assert page.evaluate("window.order") == ["history read", "socket"]

    # While this tab's socket is down, the question is edited in another tab: its reply is deleted and a new one
    # answers it. No frame of that reaches this tab.
    old_id = old.pk
    old.delete()
    new = reply_to(question, Message.Status.DONE, text=END)
    run_apart(get_channel_layer().group_send(user_group(amy.pk), {"type": "session_changed"}))  # closes its socket

    page.wait_for_function("() => document.querySelectorAll('.message-bot').length === 1", timeout=10000)
    page.wait_for_selector(f'[data-message-id="{new.pk}"]')
    assert page.query_selector(f'[data-message-id="{old_id}"]') is None and "Monday" not in page.inner_text("body")
    page.wait_for_function("() => window.order.length === 4")
    # The history read to its end, then the socket, as at the start: the other way round, an answer read while the
    # new socket's frames came in could take the page back behind them.
    assert page.evaluate("window.order") == ["history read", "socket", "history read", "socket"]


# Holds the page's first history read, its answer already read, until the test lets it go; and puts the quiet
# spell's resync out of reach, so that only what the page does when its socket opens can end the reply.
FIRST_HISTORY_HELD = """
window.historyRead = false;
window.historyHeld = new Promise((resolve) => { window.letHistoryGo = resolve; });
const pageParse = JSON.parse;
JSON.parse = (text, reviver) => {
  const value = pageParse(text, reviver);
  if (value && typeof value === "object" && "resyncSeconds" in value) value.resyncSeconds = 600;
  return value;
};
const pageFetch = window.fetch;
window.fetch = async (url, options) => {
  const response = await pageFetch(url, options);
  if (!String(url).includes("/messages/") || window.historyRead) return response;
  window.historyRead = true;
  const body = await response.text();
  await window.historyHeld;
  return new Response(body, { status: response.status, headers: response.headers });
};
"""


def test_a_reply_that_ends_before_the_socket_joins_ends_on_the_page(browser, server, amy):  # noqa: F811
    conversation, _, reply = asked(amy, "Ended unheard", Message.Status.STREAMING, text="Thursday is", attempts=1)
    page = page_on(browser, server, amy, conversation, FIRST_HISTORY_HELD)
    page.wait_for_function("() => window.historyRead")

    # The history the page holds shows the reply streaming; the worker ends it before the page's socket has
    # joined the conversation, so its last frame reaches no one (the same window follows a reconnect).
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.DONE, text=END, updated=timezone.now())
    page.evaluate("window.letHistoryGo()")

    page.wait_for_selector(".message-bot.status-done", timeout=10000)
    assert page.inner_text(".message-bot .message-text") == END
    assert page.is_hidden("#stop-button") and page.is_enabled("#send-button")


def test_a_question_sent_from_another_tab_before_the_socket_joins_shows(browser, server, amy):  # noqa: F811
    conversation, question, _ = asked(amy, "Other tab", Message.Status.DONE, text="Thursday.")
    page = page_on(browser, server, amy, conversation, FIRST_HISTORY_HELD)
    page.wait_for_function("() => window.historyRead")

    # Another tab sends a question while this page holds its history: its frames reach no socket of this page,
    # whose socket then sends the new reply (in progress) and nothing of the question.
    later = Message.objects.create(conversation=conversation, role=Message.Role.USER, text="And tomorrow?")
    reply = reply_to(later, Message.Status.QUEUED)
    page.evaluate("window.letHistoryGo()")

    page.wait_for_selector(f'[data-message-id="{later.pk}"]', timeout=10000)
    assert page.inner_text(f'[data-message-id="{later.pk}"] .message-text') == "And tomorrow?"
    assert page.query_selector(f'[data-message-id="{reply.pk}"]') is not None
    # The edit button sits on the newest question, not on the one before it.
    assert page.query_selector(f'[data-message-id="{question.pk}"] .edit-button') is None


def test_pieces_after_an_emoji_join_where_their_offsets_say(browser, server, amy):  # noqa: F811
    so_far = "Bazinga! \N{GRINNING FACE}"  # one character in Python's count and the protocol's, two UTF-16 units
    conversation, _, reply = asked(amy, "Emoji", Message.Status.STREAMING, text=so_far, attempts=1)
    page = opened(browser, server, amy, conversation)
    page.wait_for_selector(".message-bot.status-streaming")

    send_frames(
        conversation.pk,
        token_frame(reply.pk, len(so_far), " I am not"),
        token_frame(reply.pk, len(so_far + " I am not"), " crazy."),
    )
    shown = f'[data-message-id="{reply.pk}"] .message-text'
    expected = so_far + " I am not crazy."
    page.wait_for_function(f"t => document.querySelector('{shown}')?.textContent === t", arg=expected, timeout=10000)


# Once window.dropFrames is set, the page's sockets hear no frame: a channel layer that lost them (a Redis restart).
FRAMES_DROPPED = "window.dropFrames = false;\n" + wrapping_sockets(
    "const socket = new PageSocket(url, protocols); const listen = socket.addEventListener.bind(socket);"
    " socket.addEventListener = (type, listener, options) => listen(type, type === 'message'"
    " ? (event) => window.dropFrames || listener(event) : listener, options); return socket;"
)


def test_an_edit_whose_frames_were_lost_shows_its_new_text_and_only_its_new_reply(browser, server, amy):  # noqa: F811
    conversation, question, old = asked(amy, "Lost edit", Message.Status.DONE, text="Monday")
    page = page_on(browser, server, amy, conversation, FRAMES_DROPPED)
    page.wait_for_selector(f'[data-message-id="{old.pk}"]')
    page.evaluate("window.dropFrames = true")
    page.click(f'[data-message-id="{question.pk}"] .edit-button')
    page.fill(".edit-form textarea", "What day is it today?")
    page.click(".edit-form button[type=submit]")

    # The server takes the new text, deletes the old reply and a worker answers anew; no frame of it is heard. The
    # quiet spell's read shows it all: no frame came while it was read, so it is the newest state.
    shown = f'[data-message-id="{question.pk}"] .message-text'
    page.wait_for_function(
        f"t => document.querySelector('{shown}')?.textContent === t", arg="What day is it today?", timeout=30000
    )
    page.wait_for_function(f"() => !document.querySelector('[data-message-id=\"{old.pk}\"]')", timeout=30000)
    assert "Monday" not in page.inner_text("#message-list") and page.query_selector(".alt-position") is None


# Once window.blockSockets is set, every new socket of the page fails to connect (the site's HTTP still answers).
SOCKETS_BLOCKABLE = "window.blockSockets = false;\n" + wrapping_sockets(
    'window.lastSocket = new PageSocket(window.blockSockets ? "ws://127.0.0.1:9/" : url, protocols);'
    " return window.lastSocket;"
)


def test_a_message_waiting_for_the_socket_is_neither_replaced_nor_lost(browser, server, amy):  # noqa: F811
    conversation, _, reply = asked(amy, "Waiting", Message.Status.DONE, text="Monday")
    page = page_on(browser, server, amy, conversation, SOCKETS_BLOCKABLE)
    page.wait_for_selector(f'[data-message-id="{reply.pk}"]')
    page.wait_for_function("() => window.lastSocket && window.lastSocket.readyState === 1")
    page.evaluate("window.blockSockets = true; window.lastSocket.close()")
    page.wait_for_selector("#connection-status:not([hidden])")
    page.fill("#message-input", "First message")
    page.press("#message-input", "Enter")
    assert page.is_disabled("#send-button")

    # The quiet spell's history read (after CHAT_RESYNC_SECONDS, 5) answers, but the message has not gone out yet:
    # Send stays off, so no second message takes its place in the queue.
    page.wait_for_timeout(7000)
    assert page.is_disabled("#send-button")
    page.evaluate("window.blockSockets = false")
    page.wait_for_function("() => !document.querySelector('#send-button').disabled", timeout=30000)
    assert list(Message.objects.filter(conversation=conversation, role="user").values_list("text", flat=True)) == [
        "What day is it?",
        "First message",
    ]
