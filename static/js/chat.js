// The chat page: one websocket per tab, reconnecting by itself.
// Stored messages carry a seq; the server resends everything after the last seq this tab has
// shown, so a message is never lost and, de-duplicated by seq, never shown twice.
// Model text is only ever placed with textContent / text nodes.
// Screen readers hear each stored message once, from the transcript's live region: the streaming
// bubble and this tab's not-yet-stored message are hidden from them.

const { connectSocket, chatUi } = window; // static/js/socket.js and ui.js, loaded first

const config = JSON.parse(document.getElementById("chat-config").textContent);
const transcript = document.getElementById("transcript");
const activity = document.getElementById("activity");
const connection = document.getElementById("connection");
const form = document.getElementById("composer");
const input = document.getElementById("message");
const sendButton = document.getElementById("send");
const help = document.getElementById("message-help");
const note = chatUi.composerNote(document.getElementById("composer-note"));
const limit = chatUi.lengthLimit({
  input,
  counter: document.getElementById("message-count"),
  note,
  maxChars: config.maxChars,
});
const handoffStatus = document.getElementById("handoff-status");
const talkButton = document.getElementById("talk-to-person");

const ROLE_LABELS = { customer: "You", assistant: "Assistant", staff: "Support team", notice: "Notice" };
const OFFLINE_TEXT = "You're offline. The chat reconnects when you're back online.";
const HELP_TEXT = help.textContent;
const REPLYING_TEXT = "The assistant is still replying…";
const BUSY_NOTE = "Not sent yet: the assistant is still replying. Your message stays here; press Enter again when the reply is done.";
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

const seen = new Set();
let lastSeq = 0;
let link = null; // the page's socket (socket.js), once connected
let running = false;
let outbox = null; // {id, text}: sent, not yet known to be accepted; resent as is after a reconnect
let lastSentText = "";
let streaming = null; // the bubble that reply deltas are appended to
let said = ""; // what the assistant said before its current tool call: status, not a reply
// A running turn this tab did not start (reloaded mid-reply, or another tab's): its end is
// known from the live "ended" event, or else from its reply, notice or question arriving.
let othersTurn = null;
let toolStatus = "";
const endedTurns = new Set(); // deltas can arrive late, through the layer, after their turn ended
const ratings = new Map(Object.entries(config.feedback || {})); // seq -> {score, comment}

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
  transcript.lastElementChild?.scrollIntoView({ block: "end", behavior: reducedMotion.matches ? "auto" : "smooth" });
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
  if (event.preamble) {
    // Said before a tool call ("Let me look that up."): the answer is still to come. Shown as
    // the assistant's status while the turn runs; not a reply of its own, not one to rate.
    if (running) {
      unstream(event.text);
      said = event.text;
      showActivity();
    }
    return;
  }
  if (event.role === "assistant" && streaming) {
    streaming.remove();
    streaming = null;
  }
  if (othersTurn && (event.role === "assistant" || event.role === "notice")) setRunning(false);
  if (event.role === "customer") {
    const pending = [...transcript.querySelectorAll(".msg-pending")].find((node) => node.dataset.text === event.text);
    pending?.remove();
  }
  const item = bubble(event.role, event.text);
  item.dataset.seq = String(event.seq);
  if (event.role === "staff") {
    item.querySelector(".msg-who").textContent = event.name ? `${event.name} · Support team` : "Support team";
  }
  if (event.created_at) item.append(chatUi.timeElement(event.created_at, "msg-time"));
  if (event.role === "assistant" && typeof event.seq === "number") item.append(feedbackControls(event.seq));
  // Keep stored messages in seq order even if a resend arrives after a live one.
  const later = [...transcript.querySelectorAll("[data-seq]")].find((node) => Number(node.dataset.seq) > event.seq);
  transcript.insertBefore(item, later || transcript.querySelector(".msg-streaming, .msg-pending") || null);
  scrollToEnd();
}

function addDelta(event) {
  if (endedTurns.has(event.turn)) return;
  if (!streaming) {
    streaming = bubble("assistant", "", "msg-streaming");
    // Re-read on every delta and again once stored, it would be heard many times over.
    streaming.setAttribute("aria-hidden", "true");
    streaming.dataset.text = "";
    transcript.append(streaming);
  }
  streaming.dataset.text += event.text;
  renderStreaming();
  scrollToEnd();
}

function renderStreaming() {
  renderText(streaming.querySelector(".msg-body"), streaming.dataset.text.trimStart());
}

function dropStreaming() {
  streaming?.remove();
  streaming = null;
}

// Takes text that turned out to be a preamble out of the streaming bubble (all of it when
// `text` is not given: a tool started, so everything streamed so far led up to it).
function unstream(text) {
  if (!streaming) return "";
  const streamed = streaming.dataset.text.trimStart();
  const taken = text === undefined ? streamed.trim() : streamed.startsWith(text) ? text : "";
  streaming.dataset.text = streamed.slice(taken.length);
  if (streaming.dataset.text.trim()) renderStreaming();
  else dropStreaming();
  return taken;
}

function showActivity() {
  activity.replaceChildren();
  if (said) activity.append(el("span", "activity-said", said));
  if (toolStatus) activity.append(el("span", "activity-tool", toolStatus));
}

function setRunning(value) {
  if (value !== running) {
    said = "";
    toolStatus = "";
    showActivity();
  }
  running = value;
  if (!value) othersTurn = null;
  sendButton.disabled = value;
  form.setAttribute("aria-busy", value ? "true" : "false");
  form.classList.toggle("composer-busy", value);
  help.textContent = value ? REPLYING_TEXT : HELP_TEXT;
  if (!value) note.clear("busy");
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
  if (othersTurn) setRunning(false);
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

// --- Rating replies ---------------------------------------------------------------------------

function csrfToken() {
  const cookie = document.cookie.split("; ").find((part) => part.startsWith("csrftoken="));
  return cookie ? decodeURIComponent(cookie.slice("csrftoken=".length)) : config.csrfToken;
}

async function postFeedback(seq, body) {
  const path = config.feedbackPath.replace(/\/0\/feedback\/$/, `/${seq}/feedback/`);
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || "Your rating could not be saved. Please try again.");
  return data;
}

function feedbackControls(seq) {
  const group = el("div", "feedback");
  group.setAttribute("role", "group");
  group.setAttribute("aria-label", "Rate this reply");
  const note = el("span", "feedback-note");
  note.setAttribute("role", "status");
  const form = el("form", "feedback-comment");
  form.hidden = true;
  const commentId = `feedback-comment-${seq}`;
  const label = el("label", "", "Tell us more (optional)");
  label.htmlFor = commentId;
  const comment = el("textarea");
  comment.id = commentId;
  comment.rows = 2;
  comment.maxLength = 1000;
  const sendComment = el("button", "secondary", "Send feedback");
  sendComment.type = "submit";
  form.append(label, comment, sendComment);

  const buttons = [
    [1, "Helpful"],
    [-1, "Not helpful"],
  ].map(([score, name]) => {
    const button = el("button", `feedback-button feedback-${score > 0 ? "up" : "down"}`, name);
    button.type = "button";
    button.dataset.score = String(score);
    button.setAttribute("aria-pressed", "false");
    return button;
  });
  const show = (rating) => {
    for (const button of buttons) {
      button.setAttribute("aria-pressed", String(Boolean(rating) && Number(button.dataset.score) === rating.score));
    }
  };
  const save = async (body, done) => {
    note.textContent = "";
    try {
      const saved = await postFeedback(seq, body);
      ratings.set(String(seq), { score: saved.score, comment: saved.comment });
      show(ratings.get(String(seq)));
      note.textContent = done;
      return true;
    } catch (error) {
      note.textContent = error.message;
      return false;
    }
  };
  for (const button of buttons) {
    button.addEventListener("click", async () => {
      const score = Number(button.dataset.score);
      const previous = ratings.get(String(seq));
      if (await save({ score, comment: previous?.comment || "" }, "Thanks for your feedback.")) {
        form.hidden = false;
      }
    });
  }
  form.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const current = ratings.get(String(seq));
    if (!current) return;
    if (await save({ score: current.score, comment: comment.value }, "Thanks, we've noted your comment.")) {
      form.hidden = true;
    }
  });
  const existing = ratings.get(String(seq));
  show(existing);
  if (existing) comment.value = existing.comment || "";
  group.append(...buttons, note, form);
  return group;
}

// --- Talking to a person ----------------------------------------------------------------------

function showHandoff(status, name) {
  let text = "";
  if (status === "waiting_for_agent") text = "Waiting for a person from our support team…";
  if (status === "with_agent") text = `You're chatting with ${name || "our support team"}.`;
  handoffStatus.textContent = text;
  handoffStatus.hidden = !text;
  talkButton.hidden = Boolean(text);
  talkButton.disabled = false;
}

talkButton.addEventListener("click", () => {
  if (sendFrame({ type: "handoff" })) talkButton.disabled = true;
});

function handle(event) {
  switch (event.type) {
    case "message":
      addMessage(event);
      break;
    case "delta":
      addDelta(event);
      break;
    case "status":
      said = unstream() || said;
      toolStatus = event.text;
      showActivity();
      break;
    case "confirm":
      addConfirm(event);
      break;
    case "action_resolved":
      resolveConfirm(event);
      break;
    case "turn":
      if (event.state === "started") {
        // Also sent on a resume while the turn runs, e.g. to a page reloaded mid-reply.
        if (!endedTurns.has(event.turn)) {
          if (!running) othersTurn = event.turn;
          setRunning(true);
        }
      } else {
        endedTurns.add(event.turn);
        // The stored reply replaces the streamed text; it came before this event (the server
        // reads any stored message whose live event was lost before it relays a turn's end).
        dropStreaming();
        // A failure itself arrives as a stored notice; offer to send the message again.
        if (event.outcome === "failed" && event.retryable) addError("", true);
        setRunning(false);
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
    case "handoff":
      showHandoff(event.status, event.agent_name);
      break;
    case "live":
      // Live updates (the server's channel layer) stopped or came back; the socket stayed open
      // and messages are still answered, so only the connection line says so.
      if (event.state === "paused") link?.show("paused", event.text);
      else link?.show("online", "Connected");
      break;
    case "handoff_requested":
      talkButton.disabled = false;
      break;
    case "error":
      if (event.code) {
        // The server refused the frame: the message was not stored.
        transcript.querySelectorAll(".msg-pending").forEach((node) => node.remove());
        outbox = null;
      }
      dropStreaming();
      setRunning(false);
      talkButton.disabled = false;
      addError(event.text, event.retryable !== false);
      break;
    default:
      break;
  }
}

// --- The socket -----------------------------------------------------------------------------

function sendFrame(frame) {
  return link ? link.send(frame) : false;
}

// --- Composing -------------------------------------------------------------------------------

function submit(text) {
  const id = newId();
  outbox = { id, text };
  lastSentText = text;
  const pending = bubble("customer", text, "msg-pending");
  // Heard once, when the stored message replaces it.
  pending.setAttribute("aria-hidden", "true");
  pending.dataset.id = id;
  pending.dataset.text = text;
  transcript.append(pending);
  scrollToEnd();
  setRunning(true);
  if (!sendFrame({ type: "send", text, client_message_id: id })) {
    link?.show("reconnecting", "Reconnecting… your message is sent when the connection is back.");
  }
}

form.addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  if (running) {
    note.show("busy", BUSY_NOTE);
    return;
  }
  if (limit.refuse()) return;
  input.value = "";
  limit.update();
  submit(text);
});

input.addEventListener("keydown", (key) => {
  if (key.key === "Enter" && !key.shiftKey && !key.isComposing) {
    key.preventDefault();
    form.requestSubmit();
  }
});

showHandoff(config.status, config.agentName);
for (const event of config.events) handle(event);
link = connectSocket({
  path: config.websocketPath,
  status: connection,
  texts: {
    online: "Connected",
    reconnecting: "Reconnecting…",
    offline: OFFLINE_TEXT,
    closed: {
      4401: { text: "Your session has ended.", href: config.signInUrl, label: "Sign in again" },
      4404: { text: "This conversation is gone.", href: config.conversationsUrl, label: "Go to your conversations" },
      4429: { text: "Too many connections from your account.", href: window.location.pathname, label: "Reload in a minute" },
    },
  },
  onEnded() {
    // Nothing typed is lost: a message not yet accepted goes back into the box, which keeps
    // its text; it just cannot be sent from this page any more.
    if (outbox) {
      input.value = outbox.text;
      transcript.querySelectorAll(".msg-pending").forEach((node) => node.remove());
      outbox = null;
    }
    setRunning(false);
    for (const control of [input, sendButton, talkButton]) control.disabled = true;
  },
  onOpen(send) {
    send({ type: "resume", after_seq: lastSeq });
    if (outbox) send({ type: "send", text: outbox.text, client_message_id: outbox.id });
  },
  onEvent: handle,
});
