// A customer's conversation seen by a support agent: the live transcript, join / hand back /
// resolve, and replies. Stored messages carry a seq and are de-duplicated by it; the server
// resends everything after the last seq shown. Text is only ever placed with textContent.

const { connectSocket, chatUi } = window; // static/js/socket.js and ui.js, loaded first

const config = JSON.parse(document.getElementById("staff-config").textContent);
const transcript = document.getElementById("transcript");
const activity = document.getElementById("activity");
const connection = document.getElementById("connection");
const handoffStatus = document.getElementById("handoff-status");
const form = document.getElementById("composer");
const input = document.getElementById("message");
const sendButton = document.getElementById("send");
const limit = chatUi.lengthLimit({
  input,
  counter: document.getElementById("message-count"),
  note: chatUi.composerNote(document.getElementById("composer-note")),
  maxChars: config.maxChars,
});
const buttons = {
  claim: document.getElementById("claim"),
  release: document.getElementById("release"),
  resolve: document.getElementById("resolve"),
};

const LABELS = { customer: "Customer", assistant: "Assistant", staff: "Support team", notice: "Notice" };
const NOT_YOURS = "This conversation is not available to you. Please sign in again.";

const seen = new Set();
let lastSeq = 0;
let link = null; // the page's socket (socket.js), once connected
let state = config.state;
let busy = false;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function newId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  return `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}`;
}

function addMessage(event) {
  if (typeof event.seq !== "number" || seen.has(event.seq)) return;
  seen.add(event.seq);
  lastSeq = Math.max(lastSeq, event.seq);
  const item = el("li", `msg msg-${event.role}`);
  item.dataset.seq = String(event.seq);
  const who = event.role === "staff" && event.name ? `${event.name} · Support team` : LABELS[event.role] || event.role;
  item.append(el("span", "msg-who", who));
  const body = el("div", "msg-body msg-plain", event.text);
  item.append(body);
  if (event.created_at) item.append(chatUi.timeElement(event.created_at, "msg-time"));
  const later = [...transcript.querySelectorAll("[data-seq]")].find((node) => Number(node.dataset.seq) > event.seq);
  transcript.insertBefore(item, later || null);
  item.scrollIntoView({ block: "end" });
}

// A question the app put to the customer (a cancellation), and whether they have answered.
function addConfirm(event) {
  if (transcript.querySelector(`[data-action-id="${CSS.escape(event.action_id)}"]`)) return;
  const item = el("li", "prompt prompt-open");
  item.dataset.actionId = event.action_id;
  item.append(
    el("span", "msg-who", "Asked the customer"),
    el("p", "prompt-text", event.text),
    el("p", "prompt-result", "Waiting for the customer to answer."),
  );
  transcript.append(item);
  item.scrollIntoView({ block: "end" });
}

function resolveConfirm(event) {
  const item = transcript.querySelector(`[data-action-id="${CSS.escape(event.action_id)}"]`);
  if (!item) return;
  item.classList.remove("prompt-open");
  item.querySelector(".prompt-result").textContent = event.approved ? "The customer confirmed." : "The customer chose to keep it.";
}

function mine() {
  return state.status === "with_agent" && state.agent_id === config.me;
}

function showState() {
  const texts = {
    with_bot: "The assistant is answering this customer.",
    waiting_for_agent: "The customer is waiting for a person.",
    with_agent: mine() ? "You're in this conversation." : `${state.agent_name || "Another agent"} is in this conversation.`,
    resolved: "Resolved. The assistant answers if the customer writes again.",
  };
  handoffStatus.textContent = texts[state.status] || "";
  const held = state.status === "waiting_for_agent" || state.status === "with_agent";
  buttons.claim.hidden = state.status !== "waiting_for_agent";
  buttons.release.hidden = !(state.status === "waiting_for_agent" || mine());
  buttons.resolve.hidden = !(state.status === "waiting_for_agent" || mine());
  for (const button of Object.values(buttons)) button.disabled = busy;
  input.disabled = !mine();
  sendButton.disabled = !mine() || busy;
  form.setAttribute("aria-disabled", String(!mine()));
  if (!held) activity.textContent = "";
}

function addError(text) {
  const item = el("li", "msg msg-error");
  item.append(el("span", "msg-who", "Problem"), el("p", "", text));
  transcript.append(item);
  item.scrollIntoView({ block: "end" });
}

function handle(event) {
  switch (event.type) {
    case "message":
      addMessage(event);
      break;
    case "confirm":
      addConfirm(event);
      break;
    case "action_resolved":
      resolveConfirm(event);
      break;
    case "handoff":
      state = event;
      showState();
      break;
    case "turn":
      activity.textContent = event.state === "started" ? "The assistant is answering…" : "";
      break;
    case "done":
    case "replied":
      busy = false;
      showState();
      break;
    case "error":
      busy = false;
      showState();
      addError(event.text);
      break;
    default:
      break;
  }
}

function sendFrame(frame) {
  return link ? link.send(frame) : false;
}

for (const [action, button] of Object.entries(buttons)) {
  button.addEventListener("click", () => {
    if (busy || !sendFrame({ type: action })) return;
    busy = true;
    showState();
  });
}

form.addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  const text = input.value.trim();
  if (!mine() || busy || !text || limit.refuse()) return;
  if (!sendFrame({ type: "reply", text, client_message_id: newId() })) return;
  busy = true;
  input.value = "";
  limit.update();
  showState();
});

input.addEventListener("keydown", (key) => {
  if (key.key === "Enter" && !key.shiftKey && !key.isComposing) {
    key.preventDefault();
    form.requestSubmit();
  }
});

for (const event of config.events) handle(event);
showState();
link = connectSocket({
  path: config.websocketPath,
  status: connection,
  texts: {
    online: "Connected",
    reconnecting: "Reconnecting…",
    closed: { 4401: NOT_YOURS, 4403: NOT_YOURS, 4404: NOT_YOURS },
  },
  onOpen(send) {
    send({ type: "resume", after_seq: lastSeq });
  },
  onEvent: handle,
  onClose() {
    busy = false;
  },
});
