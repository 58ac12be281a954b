// The chat page: one websocket per tab, reconnecting by itself.
// Stored messages carry a seq; the server resends everything after the last seq this tab has
// shown, so a message is never lost and, de-duplicated by seq, never shown twice.
// Model text is only ever placed with textContent / text nodes.

const config = JSON.parse(document.getElementById("chat-config").textContent);
const transcript = document.getElementById("transcript");
const activity = document.getElementById("activity");
const connection = document.getElementById("connection");
const form = document.getElementById("composer");
const input = document.getElementById("message");
const sendButton = document.getElementById("send");

const ROLE_LABELS = { customer: "You", assistant: "Assistant", staff: "Support team", notice: "Notice" };
const PING_MS = 30000;
const MAX_BACKOFF_MS = 30000;

const seen = new Set();
let lastSeq = 0;
let socket = null;
let attempts = 0;
let reconnectTimer = null;
let pingTimer = null;
let running = false;
let stopped = false;
let outbox = null; // {id, text}: sent, not yet known to be accepted; resent as is after a reconnect
let lastSentText = "";
let streaming = null; // the bubble that reply deltas are appended to
const endedTurns = new Set(); // deltas can arrive late, through the layer, after their turn ended

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function newId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  return `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}-${Math.random().toString(16).slice(2)}`;
}

// A small Markdown subset (paragraphs, line breaks, "- " lists, **bold**), built from DOM nodes.
function appendInline(parent, text) {
  for (const part of text.split(/(\*\*[^*\n]+\*\*)/)) {
    if (part.length > 4 && part.startsWith("**") && part.endsWith("**")) {
      parent.append(el("strong", "", part.slice(2, -2)));
    } else if (part) {
      parent.append(document.createTextNode(part));
    }
  }
}

function renderText(container, text) {
  container.replaceChildren();
  for (const block of text.split(/\n{2,}/)) {
    const lines = block.split("\n").filter((line, index, all) => line.trim() || all.length === 1);
    if (lines.length && lines.every((line) => /^\s*[-*•]\s+/.test(line))) {
      const list = el("ul");
      for (const line of lines) {
        const item = el("li");
        appendInline(item, line.replace(/^\s*[-*•]\s+/, ""));
        list.append(item);
      }
      container.append(list);
    } else {
      const paragraph = el("p");
      lines.forEach((line, index) => {
        if (index) paragraph.append(el("br"));
        appendInline(paragraph, line);
      });
      container.append(paragraph);
    }
  }
}

function scrollToEnd() {
  transcript.lastElementChild?.scrollIntoView({ block: "end", behavior: "smooth" });
}

function bubble(role, text, extraClass) {
  const item = el("li", `msg msg-${role}${extraClass ? ` ${extraClass}` : ""}`);
  item.append(el("span", "msg-who", ROLE_LABELS[role] || role));
  const body = el("div", "msg-body");
  renderText(body, text);
  item.append(body);
  return item;
}

function addMessage(event) {
  if (typeof event.seq === "number") {
    if (seen.has(event.seq)) return;
    seen.add(event.seq);
    lastSeq = Math.max(lastSeq, event.seq);
  }
  if (event.role === "assistant" && streaming) {
    streaming.remove();
    streaming = null;
  }
  if (event.role === "customer") {
    const pending = [...transcript.querySelectorAll(".msg-pending")].find((node) => node.dataset.text === event.text);
    pending?.remove();
  }
  const item = bubble(event.role, event.text);
  item.dataset.seq = String(event.seq);
  if (event.created_at) {
    const time = el("time", "msg-time", new Date(event.created_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    time.dateTime = event.created_at;
    item.append(time);
  }
  // Keep stored messages in seq order even if a resend arrives after a live one.
  const later = [...transcript.querySelectorAll("[data-seq]")].find((node) => Number(node.dataset.seq) > event.seq);
  transcript.insertBefore(item, later || transcript.querySelector(".msg-streaming, .msg-pending") || null);
  scrollToEnd();
}

function addDelta(event) {
  if (endedTurns.has(event.turn)) return;
  if (!streaming) {
    streaming = bubble("assistant", "", "msg-streaming");
    streaming.dataset.text = "";
    transcript.append(streaming);
  }
  streaming.dataset.text += event.text;
  renderText(streaming.querySelector(".msg-body"), streaming.dataset.text);
  scrollToEnd();
}

function dropStreaming() {
  streaming?.remove();
  streaming = null;
}

function setRunning(value) {
  running = value;
  sendButton.disabled = value;
  form.setAttribute("aria-busy", value ? "true" : "false");
  if (!value) activity.textContent = "";
}

function addError(text, retryable) {
  const item = el("li", `msg msg-error${text ? "" : " msg-retry"}`);
  if (text) {
    item.append(el("span", "msg-who", "Problem"));
    item.append(el("p", "", text));
  }
  const retryText = lastSentText || lastCustomerText();
  if (!text && !(retryable && retryText)) return;
  if (retryable && retryText) {
    const retry = el("button", "secondary", "Retry");
    retry.type = "button";
    retry.setAttribute("aria-label", `Retry: send "${retryText.slice(0, 60)}" again`);
    retry.addEventListener("click", () => {
      retry.disabled = true;
      submit(retryText);
    });
    item.append(retry);
  }
  transcript.append(item);
  scrollToEnd();
}

function lastCustomerText() {
  const all = transcript.querySelectorAll(".msg-customer[data-seq] .msg-body");
  return all.length ? all[all.length - 1].textContent : "";
}

function addConfirm(event) {
  if (transcript.querySelector(`[data-action-id="${CSS.escape(event.action_id)}"]`)) return;
  const item = el("li", "prompt prompt-open");
  item.dataset.actionId = event.action_id;
  item.setAttribute("role", "group");
  const question = el("p", "prompt-text", event.text);
  question.id = `prompt-${event.action_id}`;
  item.setAttribute("aria-labelledby", question.id);
  const buttons = el("div", "prompt-buttons");
  const yes = el("button", "danger", "Yes, cancel");
  const no = el("button", "secondary", "Keep it");
  for (const [button, approve] of [[yes, true], [no, false]]) {
    button.type = "button";
    button.addEventListener("click", () => {
      if (!sendFrame({ type: "decide", action_id: event.action_id, approve })) return;
      yes.disabled = true;
      no.disabled = true;
      setRunning(true);
    });
    buttons.append(button);
  }
  item.append(question, buttons);
  transcript.append(item);
  scrollToEnd();
}

function resolveConfirm(event) {
  const item = transcript.querySelector(`[data-action-id="${CSS.escape(event.action_id)}"]`);
  if (!item) return;
  item.classList.remove("prompt-open");
  for (const button of item.querySelectorAll("button")) button.disabled = true;
  if (!item.querySelector(".prompt-result")) {
    item.append(el("p", "prompt-result", event.approved ? "You confirmed." : "You chose to keep it."));
  }
}

function handle(event) {
  switch (event.type) {
    case "message":
      addMessage(event);
      break;
    case "delta":
      addDelta(event);
      break;
    case "status":
      activity.textContent = event.text;
      break;
    case "confirm":
      addConfirm(event);
      break;
    case "action_resolved":
      resolveConfirm(event);
      break;
    case "turn":
      if (event.state === "started") {
        setRunning(true);
      } else {
        endedTurns.add(event.turn);
        // The stored reply replaces the streamed text (the resume below fetches it if needed).
        dropStreaming();
        // A failure itself arrives as a stored notice; offer to send the message again.
        if (event.outcome === "failed" && event.retryable) addError("", true);
        setRunning(false);
        // A cheap safety net: fetch any stored message whose live signal was lost.
        sendFrame({ type: "resume", after_seq: lastSeq });
      }
      break;
    case "submitted":
      if (outbox && outbox.id === event.client_message_id) {
        outbox = null;
        transcript.querySelector(`.msg-pending[data-id="${CSS.escape(event.client_message_id)}"]`)?.remove();
      }
      // This tab's turn is over (or the message had been accepted before).
      setRunning(false);
      break;
    case "decided":
      setRunning(false);
      break;
    case "error":
      if (event.code) {
        // The server refused the frame: the message was not stored.
        transcript.querySelectorAll(".msg-pending").forEach((node) => node.remove());
        outbox = null;
      }
      dropStreaming();
      setRunning(false);
      addError(event.text, event.retryable !== false);
      break;
    default:
      break;
  }
}

// --- The socket -----------------------------------------------------------------------------

function setConnection(state, text) {
  connection.dataset.state = state;
  connection.textContent = text;
}

function sendFrame(frame) {
  if (!socket || socket.readyState !== WebSocket.OPEN) return false;
  socket.send(JSON.stringify(frame));
  return true;
}

function connect() {
  clearTimeout(reconnectTimer);
  if (stopped) return;
  if (!navigator.onLine) {
    setConnection("offline", "You're offline. The chat reconnects when you're back online.");
    return;
  }
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${window.location.host}${config.websocketPath}`);
  socket.addEventListener("open", () => {
    attempts = 0;
    setConnection("online", "Connected");
    sendFrame({ type: "resume", after_seq: lastSeq });
    if (outbox) sendFrame({ type: "send", text: outbox.text, client_message_id: outbox.id });
    clearInterval(pingTimer);
    pingTimer = setInterval(() => sendFrame({ type: "ping" }), PING_MS);
  });
  socket.addEventListener("message", (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    handle(event);
  });
  socket.addEventListener("close", (closed) => {
    clearInterval(pingTimer);
    socket = null;
    if (closed.code === 4401 || closed.code === 4404) {
      stopped = true;
      setConnection("offline", closed.code === 4401 ? "Your session has ended. Please sign in again." : "This conversation is not available.");
      return;
    }
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  if (!navigator.onLine) {
    setConnection("offline", "You're offline. The chat reconnects when you're back online.");
    return;
  }
  const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** attempts) * (0.75 + Math.random() / 2);
  attempts += 1;
  setConnection("reconnecting", "Reconnecting…");
  reconnectTimer = setTimeout(connect, delay);
}

window.addEventListener("online", () => {
  attempts = 0;
  if (!socket) connect();
});
window.addEventListener("offline", () => {
  setConnection("offline", "You're offline. The chat reconnects when you're back online.");
  socket?.close();
});

// --- Composing -------------------------------------------------------------------------------

function submit(text) {
  const id = newId();
  outbox = { id, text };
  lastSentText = text;
  const pending = bubble("customer", text, "msg-pending");
  pending.dataset.id = id;
  pending.dataset.text = text;
  transcript.append(pending);
  scrollToEnd();
  setRunning(true);
  if (!sendFrame({ type: "send", text, client_message_id: id })) {
    setConnection("reconnecting", "Reconnecting… your message is sent when the connection is back.");
  }
}

form.addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  const text = input.value.trim();
  if (running || !text) return;
  if (text.length > config.maxChars) {
    addError(`Your message is too long. Please keep it under ${config.maxChars} characters.`, false);
    return;
  }
  input.value = "";
  submit(text);
});

input.addEventListener("keydown", (key) => {
  if (key.key === "Enter" && !key.shiftKey && !key.isComposing) {
    key.preventDefault();
    form.requestSubmit();
  }
});

for (const event of config.events) handle(event);
connect();
