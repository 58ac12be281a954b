// The staff inbox: customers waiting for a person, and conversations with an agent.
// The server sends the whole list on connect and after every handoff; it is small.
// Customer text is only ever placed with textContent.

const { connectSocket, chatUi } = window; // static/js/socket.js and ui.js, loaded first

const config = JSON.parse(document.getElementById("inbox-config").textContent);
const connection = document.getElementById("connection");
const waiting = document.getElementById("waiting");
const held = document.getElementById("held");
const waitingEmpty = document.getElementById("waiting-empty");
const heldEmpty = document.getElementById("held-empty");
const waitingCount = document.getElementById("waiting-count");

const SIGNED_OUT = "Your session has ended or you no longer have access. Please sign in again.";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function row(item) {
  const li = el("li", `inbox-item inbox-${item.status}`);
  li.dataset.conversation = item.id;
  const link = el("a", "inbox-customer", item.customer);
  link.href = item.url;
  const title = el("span", "inbox-title", item.title);
  const detail = el("span", "inbox-detail");
  if (item.status === "waiting_for_agent") {
    detail.append("Waiting since ", chatUi.timeElement(item.since, "muted"));
  } else {
    detail.append(`With ${item.agent_name || "an agent"} · asked at `, chatUi.timeElement(item.since, "muted"));
  }
  li.append(link, title, detail);
  if (item.note) li.append(el("span", "inbox-note", item.note));
  return li;
}

function render(items) {
  const open = items.filter((item) => item.status === "waiting_for_agent");
  const taken = items.filter((item) => item.status === "with_agent");
  waiting.replaceChildren(...open.map(row));
  held.replaceChildren(...taken.map(row));
  waitingEmpty.hidden = open.length > 0;
  heldEmpty.hidden = taken.length > 0;
  waitingCount.textContent = `(${open.length})`;
  document.title = `${open.length ? `(${open.length}) ` : ""}Inbox · AnyCompany Support`;
}

render(config.items);
connectSocket({
  path: config.websocketPath,
  status: connection,
  texts: { online: "Live", reconnecting: "Reconnecting…", closed: { 4401: SIGNED_OUT, 4403: SIGNED_OUT } },
  onEvent(event) {
    if (event.type === "inbox") render(event.items);
  },
});
