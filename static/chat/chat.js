// The chat page: conversation list, history, the live socket, ratings.
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
  };

  const state = {
    conversationId: settings.conversationId,
    messages: new Map(), // id -> message dict from the server
    olderCursor: null,
    socket: null,
    reconnectDelay: 500,
    pendingFrame: null, // a frame to send as soon as the socket opens
  };

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
    const data = await api("GET", "/api/conversations/");
    els.list.replaceChildren();
    for (const conversation of data.conversations) {
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
  function inProgress(message) {
    return message.status === "queued" || message.status === "streaming";
  }

  function lastQuestionId() {
    let last = null;
    for (const message of state.messages.values()) {
      if (message.role === "user" && (last === null || message.id > last)) last = message.id;
    }
    return last;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
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
      const retrieved = element("figure", "retrieved");
      retrieved.append(element("blockquote", "", record.retrieved.text));
      let source = `Scripted line · ${record.retrieved.episode || "unknown episode"}`;
      if (record.retrieved.scene) source += `, scene ${record.retrieved.scene}`;
      retrieved.append(element("figcaption", "", source));
      node.append(retrieved);
    }
    if (message.status === "stopped") footer.append(element("span", "tag", "Stopped"));
    if (message.status === "failed") {
      footer.append(element("span", "tag tag-error", message.error || "The reply failed."));
    }
    const isLatest = message.reply_to === lastQuestionId();
    if (!inProgress(message)) {
      if (message.status !== "failed") {
        const rating = element("span", "rating");
        rating.append(ratingButton(message, 5, "Good reply"), ratingButton(message, 1, "Bad reply"));
        footer.append(rating);
      }
      if (isLatest) {
        const again = element("button", "ghost small regenerate", message.status === "failed" ? "Retry" : "Regenerate");
        again.type = "button";
        again.addEventListener("click", () => sendFrame({ type: "regenerate" }));
        footer.append(again);
      }
    }
    if (footer.childElementCount) node.append(footer);
  }

  function renderMessage(message) {
    const node = element("li", `message message-${message.role} status-${message.status}`);
    node.dataset.messageId = String(message.id);
    if (message.role === "bot") node.append(element("div", "avatar", "S"));
    const body = element("div", "message-body");
    const bubble = element("div", "bubble");
    const text = element("span", "message-text", message.text);
    bubble.append(text);
    if (inProgress(message)) bubble.append(element("span", "typing", ""));
    body.append(bubble);
    if (message.role === "bot") renderBotFooter(message, body);
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
    if (!message) return;
    const stick = nearBottom();
    // `offset` says where the piece starts: a page that loaded the partial
    // text from the server may already have part of it.
    message.text = message.text.slice(0, frame.offset) + frame.text;
    message.status = "streaming";
    const node = els.messages.querySelector(`[data-message-id="${message.id}"] .message-text`);
    if (node) node.textContent = message.text;
    else redraw();
    if (stick) scrollToBottom();
  }

  function updateControls() {
    const busy = [...state.messages.values()].some(inProgress);
    els.stop.hidden = !busy;
    els.send.disabled = busy;
    els.rename.hidden = els.remove.hidden = !state.conversationId;
  }

  async function loadNewestPage() {
    const data = await api("GET", `/api/conversations/${state.conversationId}/messages/`);
    for (const message of data.messages) state.messages.set(message.id, message);
    state.olderCursor = data.before;
    els.older.hidden = !data.has_more;
    redraw();
    scrollToBottom();
  }

  els.older.addEventListener("click", async () => {
    const height = els.scroller.scrollHeight;
    const data = await api("GET", `/api/conversations/${state.conversationId}/messages/?before=${state.olderCursor}`);
    for (const message of data.messages) state.messages.set(message.id, message);
    state.olderCursor = data.before;
    els.older.hidden = !data.has_more;
    redraw();
    els.scroller.scrollTop = els.scroller.scrollHeight - height; // keep the reader's place
  });

  async function rate(messageId, score) {
    try {
      const rating = await api("PUT", `/api/messages/${messageId}/rating/`, { score });
      const message = state.messages.get(messageId);
      message.rating = rating;
      redraw();
    } catch (error) {
      showError(error.message);
    }
  }

  // --- The socket --------------------------------------------------------------
  function handleFrame(frame) {
    if (frame.type === "message" || frame.type === "reply_done") {
      upsert(frame.message);
      // The first message names the conversation.
      if (frame.message.role === "user" && els.title.textContent === "New chat") loadConversations();
    }
    else if (frame.type === "token") appendPiece(frame);
    else if (frame.type === "error") {
      if (frame.code !== "not_generating") showError(frame.detail);
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
    });
    socket.addEventListener("message", (event) => handleFrame(JSON.parse(event.data)));
    socket.addEventListener("close", (event) => {
      if (event.code === 4404) {
        showError("This conversation does not exist or is not yours.");
        return;
      }
      showConnection("Reconnecting…");
      setTimeout(async () => {
        connect();
        // Replies that finished while the socket was down.
        try {
          await loadNewestPage();
        } catch (error) {
          showConnection("Offline: retrying…");
        }
      }, state.reconnectDelay);
      state.reconnectDelay = Math.min(state.reconnectDelay * 2, 10000);
    });
  }

  function sendFrame(frame) {
    els.error.hidden = true;
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(frame));
    else state.pendingFrame = frame;
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
    if (!text || els.send.disabled) return;
    if (!state.conversationId) {
      // The first message of a new chat creates the conversation.
      try {
        const conversation = await api("POST", "/api/conversations/", {});
        state.conversationId = conversation.id;
        history.replaceState(null, "", `/c/${conversation.id}/`);
        connect();
        loadConversations();
      } catch (error) {
        showError(error.message);
        return;
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
        connect();
      }
    } catch (error) {
      showError(error.message);
    }
    els.input.focus();
  }
  start();
})();
