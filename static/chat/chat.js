// The chat page: conversation list, search, history, the live socket, ratings,
// alternatives, editing the last message.
// Everything a user or the model wrote is put on the page with textContent,
// never as HTML.
"use strict";

(function () {
  const settings = JSON.parse(document.getElementById("page-settings").textContent);
  const $ = (id) => document.getElementById(id);
  const els = {
    list: $("conversation-list"),
    title: $("conversation-title"),
    rename: $("rename-conversation"),
    remove: $("delete-conversation"),
    scroller: $("messages"),
    messages: $("message-list"),
    empty: $("empty-state"),
    older: $("load-older"),
    composer: $("composer"),
    input: $("message-input"),
    send: $("send-button"),
    stop: $("stop-button"),
    count: $("char-count"),
    error: $("error-banner"),
    errorText: $("error-text"),
    connection: $("connection-status"),
    sidebar: $("sidebar"),
    backdrop: $("sidebar-backdrop"),
    toggle: $("sidebar-toggle"),
    search: $("search-input"),
    results: $("search-results"),
    waking: $("waking-up"),
    wakingDetail: $("waking-up-detail"),
    wakingProgress: $("waking-up-progress"),
  };

  const state = {
    conversationId: settings.conversationId,
    messages: new Map(), // id -> message dict from the server
    olderCursor: null,
    socket: null,
    reconnectDelay: 500,
    pendingFrame: null, // a frame to send as soon as the socket opens
    editing: null, // {id, draft} while the last message is being edited
    commenting: null, // {id, draft} while a rating's comment is being written
    highlight: null, // a message id to show (from a search result's link)
    unsent: false, // a new chat's first message was sent and the server has not stored it yet
    unanswered: null, // the message, edit or regenerate frame sent that no frame has answered yet
    creating: false, // a new chat's conversation is being created (its first message was sent)
  };
  const hashMatch = location.hash.match(/^#message-(\d+)$/);
  if (hashMatch) state.highlight = Number(hashMatch[1]);

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // "14:05" today, "Nov 27, 14:05" before; the full date and time on hover.
  function timestamp(iso) {
    const when = new Date(iso);
    const time = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const sameDay = when.toDateString() === new Date().toDateString();
    const text = sameDay ? time : `${when.toLocaleDateString([], { month: "short", day: "numeric" })}, ${time}`;
    const node = element("time", "timestamp", text);
    node.dateTime = iso;
    node.title = when.toLocaleString();
    return node;
  }

  // --- HTTP ---------------------------------------------------------------
  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(method, url, body) {
    const options = { method, headers: { "X-CSRFToken": csrfToken() }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    if (response.status === 401) {
      window.location.href = "/accounts/login/?next=" + encodeURIComponent(location.pathname);
      throw new Error("Log in first.");
    }
    const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `The server answered ${response.status}.`);
    return data;
  }

  // --- Errors and status ----------------------------------------------------
  function showError(text) {
    els.errorText.textContent = text;
    els.error.hidden = false;
  }
  $("error-close").addEventListener("click", () => (els.error.hidden = true));

  function showConnection(text) {
    els.connection.textContent = text || "";
    els.connection.hidden = !text;
  }

  // --- Conversation list -----------------------------------------------------
  async function loadConversations() {
    // Every page: an account keeps at most CHAT_MAX_CONVERSATIONS (500), a few pages of 200.
    const conversations = [];
    let next = null;
    do {
      const data = await api("GET", "/api/conversations/" + (next ? `?after=${encodeURIComponent(next)}` : ""));
      conversations.push(...data.conversations);
      next = data.next;
    } while (next);
    els.list.replaceChildren();
    for (const conversation of conversations) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = `/c/${conversation.id}/`;
      link.textContent = conversation.title || "New chat";
      link.className = "conversation-link";
      if (conversation.id === state.conversationId) {
        link.classList.add("active");
        link.setAttribute("aria-current", "page");
        els.title.textContent = conversation.title || "New chat";
      }
      item.append(link);
      els.list.append(item);
    }
  }

  // --- Search -------------------------------------------------------------------
  // Text with each match of `query` in a <mark>, built as text nodes (never HTML).
  function markMatches(text, query) {
    const fragment = document.createDocumentFragment();
    const lower = text.toLowerCase();
    const needle = query.toLowerCase();
    let at = 0;
    for (let found = lower.indexOf(needle); needle && found >= 0; found = lower.indexOf(needle, at)) {
      fragment.append(text.slice(at, found), element("mark", "", text.slice(found, found + needle.length)));
      at = found + needle.length;
    }
    fragment.append(text.slice(at));
    return fragment;
  }

  let searchTimer = null;
  async function runSearch() {
    const query = els.search.value.trim();
    if (query.length < 2) {
      els.results.hidden = true;
      els.list.hidden = false;
      return;
    }
    try {
      const data = await api("GET", `/api/search/?q=${encodeURIComponent(query)}`);
      if (els.search.value.trim() !== query) return; // typed on meanwhile
      els.results.replaceChildren();
      for (const result of data.results) {
        const link = element("a", "search-result");
        link.href = `/c/${result.conversation.id}/#message-${result.message.id}`;
        link.append(
          element("span", "search-title", result.conversation.title || "New chat"),
          element("span", "search-snippet"),
          timestamp(result.message.created),
        );
        link.querySelector(".search-snippet").append(markMatches(result.snippet, query));
        const item = document.createElement("li");
        item.append(link);
        els.results.append(item);
      }
      if (!data.results.length) els.results.append(element("li", "muted search-empty", "Nothing found."));
      els.results.hidden = false;
      els.list.hidden = true;
    } catch (error) {
      showError(error.message);
    }
  }
  els.search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, 250);
  });

  function setSidebar(open) {
    document.body.classList.toggle("sidebar-open", open);
    els.backdrop.hidden = !open;
    els.toggle.setAttribute("aria-expanded", String(open));
  }
  els.toggle.addEventListener("click", () => setSidebar(!document.body.classList.contains("sidebar-open")));
  els.backdrop.addEventListener("click", () => setSidebar(false));

  $("new-conversation").addEventListener("click", () => (window.location.href = "/"));

  els.rename.addEventListener("click", async () => {
    const title = window.prompt("New name for this conversation:", els.title.textContent);
    if (title === null || !title.trim()) return;
    try {
      const conversation = await api("PATCH", `/api/conversations/${state.conversationId}/`, { title });
      els.title.textContent = conversation.title;
      await loadConversations();
    } catch (error) {
      showError(error.message);
    }
  });

  els.remove.addEventListener("click", async () => {
    if (!window.confirm("Delete this conversation? This cannot be undone.")) return;
    try {
      await api("DELETE", `/api/conversations/${state.conversationId}/`);
      window.location.href = "/";
    } catch (error) {
      showError(error.message);
    }
  });

  // --- Messages ------------------------------------------------------------
  // A message moves forward only: queued, streaming, then ended (done, stopped or failed).
  function stage(message) {
    return { queued: 0, streaming: 1 }[message.status] ?? 2;
  }

  function inProgress(message) {
    return stage(message) < 2;
  }

  function lastQuestionId() {
    let last = null;
    for (const message of state.messages.values()) {
      if (message.role === "user" && (last === null || message.id > last)) last = message.id;
    }
    return last;
  }

  function lastQuestion() {
    const id = lastQuestionId();
    return id === null ? null : state.messages.get(id);
  }

  function busy() {
    return [...state.messages.values()].some(inProgress);
  }

  function alternativesOf(message) {
    return [...state.messages.values()]
      .filter((m) => m.role === "bot" && m.reply_to === message.reply_to)
      .sort((a, b) => a.id - b.id);
  }

  // A thumb drawn as SVG (Material Design's thumb_up, Apache 2.0): emoji
  // fonts are missing on many machines.
  const THUMB = "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 " +
    "7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z";

  function thumbIcon(down) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    if (down) svg.setAttribute("transform", "rotate(180)");
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", THUMB);
    svg.append(path);
    return svg;
  }

  function ratingButton(message, score, label) {
    const button = element("button", "rate");
    button.append(thumbIcon(score === 1));
    button.type = "button";
    button.title = label;
    button.setAttribute("aria-label", label);
    button.dataset.score = String(score);
    const pressed = Boolean(message.rating && message.rating.score === score);
    button.setAttribute("aria-pressed", String(pressed));
    button.addEventListener("click", () => rate(message.id, score));
    return button;
  }

  function renderBotFooter(message, node) {
    const footer = element("div", "message-footer");
    const record = message.record || {};
    if (record.retrieved && record.retrieved.text) {
      // A reply that is a scripted line names its episode; the line itself is shown only if it differs.
      const retrieved = element("figure", "retrieved");
      if (record.retrieved.text !== message.text) retrieved.append(element("blockquote", "", record.retrieved.text));
      let source = `Scripted line · ${record.retrieved.episode || "unknown episode"}`;
      if (record.retrieved.scene) source += `, scene ${record.retrieved.scene}`;
      retrieved.append(element("figcaption", "", source));
      node.append(retrieved);
    }
    if (message.status === "stopped") footer.append(element("span", "tag", "Stopped"));
    const cut = (record.parameters || {}).message_cut;
    if (cut) footer.append(element("span", "tag", `Your message was too long: Sheldon read its first ${cut.kept} of ${cut.tokens} tokens.`));
    if (message.status === "failed") {
      footer.append(element("span", "tag tag-error", message.error || "The reply failed."));
    }
    const isLatest = message.reply_to === lastQuestionId();
    const alternatives = alternativesOf(message);
    if (alternatives.length > 1) footer.append(alternativeSwitcher(message, alternatives));
    if (!inProgress(message)) {
      if (message.status !== "failed") {
        const rating = element("span", "rating");
        rating.append(ratingButton(message, 5, "Good reply"), ratingButton(message, 1, "Bad reply"));
        footer.append(rating);
        if (message.rating) {
          const comment = smallButton(message.rating.comment ? "Edit comment" : "Add a comment", "comment-button", () => {
            state.commenting = { id: message.id, draft: message.rating.comment };
            redraw();
            const box = els.messages.querySelector(".comment-form textarea");
            if (box) box.focus();
          });
          footer.append(comment);
        }
        footer.append(copyButton(message));
      }
      if (isLatest) {
        const label = message.status === "failed" ? "Retry" : "Regenerate";
        footer.append(smallButton(label, "regenerate", () => sendFrame({ type: "regenerate" })));
      }
    }
    if (footer.childElementCount) node.append(footer);
    if (message.rating && message.rating.comment && !(state.commenting && state.commenting.id === message.id)) {
      node.append(element("p", "rating-comment", message.rating.comment));
    }
    if (state.commenting && state.commenting.id === message.id) node.append(commentForm(message));
  }

  function smallButton(label, className, onClick) {
    const button = element("button", `ghost small ${className}`, label);
    button.type = "button";
    button.addEventListener("click", onClick);
    return button;
  }

  // ‹ 2/3 ›: the regenerated replies to one message; the one shown is the chosen one.
  function alternativeSwitcher(message, alternatives) {
    const position = alternatives.findIndex((m) => m.id === message.id);
    const locked = alternatives.some(inProgress);
    const switcher = element("span", "alternatives");
    const previous = element("button", "alt-prev", "‹");
    const next = element("button", "alt-next", "›");
    previous.setAttribute("aria-label", "Previous reply");
    next.setAttribute("aria-label", "Next reply");
    for (const [button, step] of [[previous, -1], [next, 1]]) {
      button.type = "button";
      const target = alternatives[position + step];
      button.disabled = locked || !target;
      if (target) button.addEventListener("click", () => choose(target.id));
    }
    const label = element("span", "alt-position", `${position + 1}/${alternatives.length}`);
    label.setAttribute("aria-label", `Reply ${position + 1} of ${alternatives.length}`);
    switcher.append(previous, label, next);
    return switcher;
  }

  async function choose(messageId) {
    try {
      upsert(await api("POST", `/api/messages/${messageId}/choose/`));
    } catch (error) {
      showError(error.message);
    }
  }

  // navigator.clipboard needs a secure context (https or localhost); elsewhere the old way.
  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    const area = element("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    if (!copied) throw new Error("The browser did not allow copying.");
  }

  function copyButton(message) {
    const button = smallButton("Copy", "copy-button", async () => {
      try {
        await copyText(message.text);
        button.textContent = "Copied";
        setTimeout(() => (button.textContent = "Copy"), 1500);
      } catch (error) {
        showError(`Could not copy: ${error.message}`);
      }
    });
    return button;
  }

  function commentForm(message) {
    const form = element("form", "comment-form");
    const box = element("textarea");
    box.maxLength = 2000;
    box.rows = 2;
    box.placeholder = "What was good or bad about this reply?";
    box.setAttribute("aria-label", "Comment on this reply");
    box.value = state.commenting.draft;
    box.addEventListener("input", () => (state.commenting.draft = box.value));
    const save = element("button", "primary small", "Save comment");
    save.type = "submit";
    const cancel = smallButton("Cancel", "comment-cancel", () => {
      state.commenting = null;
      redraw();
    });
    form.append(box, save, cancel);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      await rate(message.id, message.rating.score, box.value);
      state.commenting = null;
      redraw();
    });
    return form;
  }

  function renderUserFooter(message, body) {
    const editable = message.id === lastQuestionId() && !busy();
    if (!editable) return;
    const footer = element("div", "message-footer");
    footer.append(smallButton("Edit", "edit-button", () => {
      state.editing = { id: message.id, draft: message.text };
      redraw();
      const box = els.messages.querySelector(".edit-form textarea");
      if (box) {
        box.focus();
        box.setSelectionRange(box.value.length, box.value.length);
      }
    }));
    body.append(footer);
  }

  // The last message, editable in place: "Save and resend" replaces it and its replies.
  function editForm(message) {
    const form = element("form", "edit-form");
    const box = element("textarea");
    box.maxLength = settings.maxChars;
    box.rows = 3;
    box.value = state.editing.draft;
    box.setAttribute("aria-label", "Edit your message");
    box.addEventListener("input", () => (state.editing.draft = box.value));
    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
      if (event.key === "Escape") cancel.click();
    });
    const save = element("button", "primary small", "Save and resend");
    save.type = "submit";
    const cancel = smallButton("Cancel", "edit-cancel", () => {
      state.editing = null;
      redraw();
    });
    const actions = element("div", "edit-actions");
    actions.append(cancel, save);
    form.append(box, actions);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = box.value.trim();
      if (!text || !sendFrame({ type: "edit", message_id: message.id, text })) return;
      state.editing = null;
      redraw();
    });
    return form;
  }

  function renderMessage(message) {
    const node = element("li", `message message-${message.role} status-${message.status}`);
    node.dataset.messageId = String(message.id);
    node.id = `message-${message.id}`;
    if (message.id === state.highlight) node.classList.add("highlight");
    if (message.role === "bot") node.append(element("div", "avatar", "S"));
    const body = element("div", "message-body");
    if (state.editing && state.editing.id === message.id) {
      body.append(editForm(message));
      node.append(body);
      return node;
    }
    const bubble = element("div", "bubble");
    const text = element("span", "message-text", message.text);
    bubble.append(text);
    if (inProgress(message)) bubble.append(element("span", "typing", ""));
    body.append(bubble, timestamp(message.created));
    if (message.role === "bot") renderBotFooter(message, body);
    else renderUserFooter(message, body);
    node.append(body);
    return node;
  }

  function nearBottom() {
    const s = els.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function scrollToBottom() {
    els.scroller.scrollTop = els.scroller.scrollHeight;
  }

  // Put a message on the page, or refresh it: one element per message id,
  // in id order; unchosen alternatives of a reply are not shown.
  function upsert(message) {
    const stick = nearBottom();
    state.unsent = false; // the server stored a message: the conversation is not empty
    const known = state.messages.get(message.id);
    // A reply only moves forward (queued, streaming, finished), but its frames come from two senders: the
    // socket that queued it and the worker that writes it. A "queued" frame that comes after the worker's
    // first pieces is older than what the page shows.
    if (known && message.role === "bot" && stage(message) < stage(known)) return;
    // Frames carry no rating (the API's answers do): keep the one this page knows.
    if (known && known.rating && message.role === "bot" && message.rating === null) message.rating = known.rating;
    if (message.role === "user" && known) {
      // A question the page knows comes again only when it was edited and resent (with its text changed or
      // not): the server deleted its replies and queued a new one, whose frame came first (the socket sends
      // it before the question's; its worker's may come earlier still). That reply is the newest; the rest
      // go, also one this page still thinks is in progress.
      const replies = [...state.messages.values()].filter((other) => other.reply_to === message.id);
      const newest = Math.max(...replies.map((other) => other.id));
      for (const other of replies) {
        if (other.id !== newest) state.messages.delete(other.id);
      }
    }
    if (message.role === "bot" && message.is_chosen) {
      for (const other of state.messages.values()) {
        if (other.role === "bot" && other.reply_to === message.reply_to && other.id !== message.id) {
          other.is_chosen = false;
        }
      }
    }
    state.messages.set(message.id, message);
    redraw();
    if (stick) scrollToBottom();
  }

  function redraw() {
    const visible = [...state.messages.values()]
      .filter((m) => m.role === "user" || m.is_chosen)
      .sort((a, b) => a.id - b.id);
    els.messages.replaceChildren(...visible.map(renderMessage));
    els.empty.hidden = visible.length > 0;
    updateControls();
  }

  function appendPiece(frame) {
    const message = state.messages.get(frame.message_id);
    // A worker's last piece can come after the web process ended the reply (a stop it enforced): ended is final.
    if (!message || !inProgress(message)) return;
    const stick = nearBottom();
    // `offset` says where the piece starts: a page that loaded the partial
    // text from the server may already have part of it. It counts characters
    // (code points), not JavaScript's UTF-16 units: an emoji is one, not two.
    message.text = Array.from(message.text).slice(0, frame.offset).join("") + frame.text;
    message.status = "streaming";
    const node = els.messages.querySelector(`[data-message-id="${message.id}"] .message-text`);
    if (node) node.textContent = message.text;
    else redraw();
    if (stick) scrollToBottom();
  }

  // --- Waking up --------------------------------------------------------------------
  // While a reply waits in the queue, ask whether the models are loaded yet; if
  // not, say so, with the step and the time against the last load's.
  let statusTimer = null;
  function watchWakingUp() {
    const waiting = [...state.messages.values()].some((m) => m.status === "queued");
    if (!waiting) {
      els.waking.hidden = true;
      clearTimeout(statusTimer);
      statusTimer = null;
      return;
    }
    if (statusTimer === null) statusTimer = setTimeout(checkModels, 0);
  }

  async function checkModels() {
    try {
      const models = (await api("GET", "/api/status/")).models;
      showWakingUp(models);
    } catch (error) {
      els.waking.hidden = true; // the status is a courtesy: the reply comes anyway
    }
    const waiting = [...state.messages.values()].some((m) => m.status === "queued");
    statusTimer = waiting ? setTimeout(checkModels, 1000) : null;
    if (!waiting) els.waking.hidden = true;
  }

  function showWakingUp(models) {
    if (models.state === "ready" || models.state === "unknown") {
      els.waking.hidden = true;
      return;
    }
    if (models.state === "failed") {
      els.waking.hidden = true;
      showError(models.error);
      return;
    }
    if (models.state === "no_worker") {
      // Every worker is gone: the message waits in the queue until one starts again.
      els.wakingDetail.textContent = "no worker is running; your message waits until one starts";
      els.wakingProgress.removeAttribute("value");
      els.waking.hidden = false;
      return;
    }
    const elapsed = models.elapsed_seconds || 0;
    let detail = `${models.step} (step ${models.step_number} of ${models.steps}), ${Math.round(elapsed)} s`;
    if (models.expected_seconds) {
      detail += ` of about ${Math.round(models.expected_seconds)} s`;
      els.wakingProgress.value = Math.min(95, (100 * elapsed) / models.expected_seconds);
    } else {
      els.wakingProgress.removeAttribute("value"); // no estimate yet: an indeterminate bar
    }
    els.wakingDetail.textContent = detail;
    els.waking.hidden = false;
  }

  function updateControls() {
    watchWakingUp();
    watchForLostFrames();
    const replying = busy();
    els.stop.hidden = !replying;
    els.send.disabled = replying || state.unanswered !== null;
    els.rename.hidden = els.remove.hidden = !state.conversationId;
  }

  function newestPage() {
    return api("GET", `/api/conversations/${state.conversationId}/messages/`);
  }

  // A message this page knows within a history page's ids that the page lacks was deleted meanwhile (an edit's
  // replies, in another tab or with its frames lost); those above the page's ids came after it was read.
  function dropDeleted(data) {
    const ids = new Set(data.messages.map((message) => message.id));
    const oldest = data.messages.length ? data.messages[0].id : Infinity;
    const newest = data.messages.length ? data.messages[data.messages.length - 1].id : -Infinity;
    for (const id of state.messages.keys()) {
      if (id >= oldest && id <= newest && !ids.has(id)) state.messages.delete(id);
    }
  }

  async function loadNewestPage() {
    const data = await newestPage();
    dropDeleted(data);
    for (const message of data.messages) state.messages.set(message.id, message);
    state.olderCursor = data.before;
    els.older.hidden = !data.has_more;
    redraw();
    scrollToBottom();
  }

  async function loadOlderPage() {
    const data = await api("GET", `/api/conversations/${state.conversationId}/messages/?before=${state.olderCursor}`);
    for (const message of data.messages) state.messages.set(message.id, message);
    state.olderCursor = data.before;
    els.older.hidden = !data.has_more;
  }

  els.older.addEventListener("click", async () => {
    const height = els.scroller.scrollHeight;
    await loadOlderPage();
    redraw();
    els.scroller.scrollTop = els.scroller.scrollHeight - height; // keep the reader's place
  });

  // A search result's message: earlier pages are read until it is on the page.
  async function showHighlighted() {
    while (!state.messages.has(state.highlight) && state.olderCursor && state.highlight < state.olderCursor) {
      await loadOlderPage();
    }
    redraw();
    const node = document.getElementById(`message-${state.highlight}`);
    if (node) node.scrollIntoView({ block: "center" });
  }

  // A search result in the conversation already open only changes the hash.
  window.addEventListener("hashchange", async () => {
    const match = location.hash.match(/^#message-(\d+)$/);
    if (!match || !state.conversationId) return;
    state.highlight = Number(match[1]);
    try {
      await showHighlighted();
    } catch (error) {
      showError(error.message);
    }
  });

  async function rate(messageId, score, comment) {
    try {
      const message = state.messages.get(messageId);
      // Changing the thumb keeps the comment written before.
      if (comment === undefined) comment = message.rating ? message.rating.comment : "";
      const rating = await api("PUT", `/api/messages/${messageId}/rating/`, { score, comment });
      message.rating = rating;
      redraw();
    } catch (error) {
      showError(error.message);
    }
  }

  // --- Frames that never came -------------------------------------------------------
  // A channel layer delivers a frame at most once (Channels' channel layer spec):
  // if a reply's last frame is lost, the page would wait for it forever. So while a
  // reply is in progress, or a sent frame's answer has not come, and no frame has
  // come for resyncSeconds, the page reads the newest messages again and takes the
  // ones it missed: new messages, and replies that ended meanwhile.
  let lastFrameAt = Date.now();
  let resyncTimer = null;
  let resyncing = false;
  function watchForLostFrames() {
    clearTimeout(resyncTimer);
    const waiting = busy() || state.unanswered !== null;
    resyncTimer = waiting ? setTimeout(resync, lastFrameAt + settings.resyncSeconds * 1000 - Date.now()) : null;
  }

  // From a history page read while frames come in: the messages this page lacks, and replies that ended.
  // Not a reply still in progress that the page knows: the read may be older than its frames. `current`: no
  // frame came while it was read, so nothing here is newer: it also drops what was deleted and takes a question's
  // new text (an edit whose frames were lost).
  function takeMissed(data, current = false) {
    if (current) dropDeleted(data);
    for (const message of data.messages) {
      const known = state.messages.get(message.id);
      const edited = current && known && message.role === "user" && message.text !== known.text;
      if (!known || edited || (inProgress(known) && !inProgress(message))) upsert(message);
    }
    if (current) redraw();
  }

  async function resync() {
    if (!resyncing && Date.now() - lastFrameAt >= settings.resyncSeconds * 1000) {
      resyncing = true;
      const asked = Date.now();
      lastFrameAt = asked; // the next try after another quiet spell
      try {
        const data = await newestPage();
        // A frame still waiting for the socket has not been answered: it stays the one in flight.
        if (state.pendingFrame === null) state.unanswered = null;
        takeMissed(data, lastFrameAt === asked);
      } catch (error) {
        // Offline: the socket's reconnect reads the messages, or the next quiet spell tries again.
      } finally {
        resyncing = false;
      }
    }
    updateControls();
  }

  // The newest page read again, for what this page missed (offline: the resync's quiet spell tries again).
  function readMissed() {
    newestPage().then(takeMissed, () => {});
  }

  function newestKnownId() {
    return Math.max(-Infinity, ...state.messages.keys());
  }

  // A refused message or edit goes back into the box (unless something new was typed there): nothing typed is lost.
  function giveBackText() {
    const text = state.unanswered && state.unanswered.text;
    if (text && !els.input.value) {
      els.input.value = text;
      resizeInput();
    }
  }

  // --- The socket --------------------------------------------------------------
  function handleFrame(frame) {
    lastFrameAt = Date.now();
    if (frame.type === "error") giveBackText();
    if (frame.type === "message" || frame.type === "error") state.unanswered = null;
    if (frame.type === "message" || frame.type === "reply_done") {
      // A reply to a question newer than every message here: the question was sent (from another tab) between
      // this page's history read and its socket's joining, so no frame will bring it.
      const question = frame.message.reply_to;
      if (question !== null && !state.messages.has(question) && question > newestKnownId()) readMissed();
      upsert(frame.message);
      // The first message names the conversation.
      if (frame.message.role === "user" && els.title.textContent === "New chat") loadConversations();
    }
    else if (frame.type === "token") appendPiece(frame);
    else if (frame.type === "error") {
      if (frame.code !== "not_generating") showError(frame.detail);
      if (state.unsent && state.messages.size === 0) discardNewConversation();
      updateControls();
    }
  }

  // A new chat whose first message was refused leaves no empty conversation
  // behind (the message went back into the box).
  async function discardNewConversation() {
    const id = state.conversationId;
    state.unsent = false;
    const socket = state.socket;
    state.socket = null; // its close is no reason to reconnect
    if (socket) socket.close();
    state.conversationId = null;
    history.replaceState(null, "", "/");
    updateControls();
    try {
      await api("DELETE", `/api/conversations/${id}/`);
    } finally {
      els.title.textContent = "New chat";
      await loadConversations();
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/conversations/${state.conversationId}/`);
    state.socket = socket;
    socket.addEventListener("open", () => {
      state.reconnectDelay = 500;
      showConnection("");
      if (state.pendingFrame) {
        socket.send(JSON.stringify(state.pendingFrame));
        state.pendingFrame = null;
      }
      // A reply that ended after the history was read and before the socket joined the conversation sent its
      // last frame to no one. The socket joins before it opens (chat/consumers.py), so a read now shows every
      // end before this point, and frames bring the ends after it.
      if (busy()) readMissed();
    });
    socket.addEventListener("message", (event) => {
      if (state.socket === socket) handleFrame(JSON.parse(event.data)); // not one of a socket this page let go of
    });
    socket.addEventListener("close", (event) => {
      if (state.socket !== socket) return; // a socket this page let go of
      // Refusals that another try would not change: say why and stop reconnecting.
      if (event.code === 4404) {
        showError("This conversation does not exist or is not yours.");
        return;
      }
      if (event.code === 4401) {
        showConnection("You are logged out.");
        showError("You are logged out: log in again to go on.");
        return;
      }
      showConnection("Reconnecting…");
      setTimeout(async () => {
        // As at the start: the history first (what happened while the socket was down), then the socket,
        // which sends the replies still in progress and every piece after them. The other way round, the
        // history's answer could take the page back behind pieces the new socket had already brought.
        try {
          await loadNewestPage();
        } catch (error) {
          showConnection("Offline: retrying…");
        }
        connect();
      }, state.reconnectDelay);
      state.reconnectDelay = Math.min(state.reconnectDelay * 2, 10000);
    });
  }

  // Sends a frame now, or once the socket opens. One message, edit or regenerate at a time: a second one before
  // the first's answer would be refused as busy (offline, it would take the first one's place): false then.
  function sendFrame(frame) {
    if (frame.type !== "stop") {
      if (state.unanswered !== null) return false;
      state.unanswered = frame;
    }
    els.error.hidden = true;
    lastFrameAt = Date.now(); // the quiet spell of its answer starts now
    updateControls(); // Send waits for the answer
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(frame));
    else state.pendingFrame = frame;
    return true;
  }

  els.stop.addEventListener("click", () => sendFrame({ type: "stop" }));

  // --- The composer ------------------------------------------------------------
  function resizeInput() {
    els.input.style.height = "auto";
    els.input.style.height = Math.min(els.input.scrollHeight, 160) + "px";
    const left = settings.maxChars - els.input.value.length;
    els.count.hidden = left > 200;
    els.count.textContent = String(left);
  }
  els.input.addEventListener("input", resizeInput);
  els.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      els.composer.requestSubmit();
    }
  });

  els.composer.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = els.input.value.trim();
    if (!text || els.send.disabled || state.creating) return;
    if (!state.conversationId) {
      // The first message of a new chat creates the conversation, once: a second Send while it is being
      // created would make a second one.
      state.creating = true;
      try {
        const conversation = await api("POST", "/api/conversations/", {});
        state.conversationId = conversation.id;
        state.unsent = true;
        history.replaceState(null, "", `/c/${conversation.id}/`);
        connect();
        loadConversations();
      } catch (error) {
        showError(error.message);
        return;
      } finally {
        state.creating = false;
      }
    }
    sendFrame({ type: "user_message", text });
    els.input.value = "";
    resizeInput();
  });

  // --- Start -------------------------------------------------------------------
  async function start() {
    updateControls();
    try {
      await loadConversations();
      if (state.conversationId) {
        await loadNewestPage();
        if (state.highlight) await showHighlighted();
        connect();
      }
    } catch (error) {
      showError(error.message);
    }
    els.input.focus();
  }
  start();
})();
