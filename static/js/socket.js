// The one websocket of a page, shared by the chat, the staff conversation and the inbox.
// It connects to a path on this host (wss: on https pages), reconnects by itself with a
// jittered exponential backoff, pings to keep idle proxies from closing it, and calls onOpen
// after every (re)connect so the page can resume from the last seq it has shown. Close codes
// the server uses for "not yours" or "signed out" stop it for good.
//
// A plain script, loaded before the page's module: static files may be served from signed
// URLs, which a module's relative import could not reach. It defines window.connectSocket.

(() => {
  "use strict";

  const PING_MS = 30000;
  const MAX_BACKOFF_MS = 30000;

  // status: the element that shows the connection ("data-state" online, reconnecting, offline
  // or ended). texts: {online, reconnecting, offline?, closed: {code: text or {text, href,
  // label}}}; a closed code stops the socket for good and shows its text, with a link to what to
  // do next when given (e.g. sign in again). With "offline", the socket waits for the browser to
  // be back online instead of retrying in vain. onEnded(code) hears that the socket stopped.
  // Returns {send(frame) -> bool, show(state, text)}.
  function connectSocket({ path, status, texts, onOpen, onEvent, onClose, onEnded }) {
    let socket = null;
    let attempts = 0;
    let reconnectTimer = null;
    let pingTimer = null;
    let stopped = false;
    const watchOffline = Boolean(texts.offline);

    function show(state, text) {
      status.dataset.state = state;
      status.textContent = text;
    }

    function showEnded(final) {
      const { text, href, label } = typeof final === "string" ? { text: final } : final;
      show("ended", text);
      if (href) {
        const link = document.createElement("a");
        link.href = href;
        link.textContent = label;
        status.append(" ", link);
      }
    }

    function send(frame) {
      if (!socket || socket.readyState !== WebSocket.OPEN) return false;
      socket.send(JSON.stringify(frame));
      return true;
    }

    function connect() {
      clearTimeout(reconnectTimer);
      if (stopped) return;
      if (watchOffline && !navigator.onLine) {
        show("offline", texts.offline);
        return;
      }
      const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
      socket = new WebSocket(`${scheme}//${window.location.host}${path}`);
      socket.addEventListener("open", () => {
        attempts = 0;
        show("online", texts.online);
        onOpen?.(send);
        clearInterval(pingTimer);
        pingTimer = setInterval(() => send({ type: "ping" }), PING_MS);
      });
      socket.addEventListener("message", (message) => {
        let frame;
        try {
          frame = JSON.parse(message.data);
        } catch {
          return;
        }
        // Events sent together arrive as one frame; the page hears them one by one, in order.
        const events = frame?.type === "events" && Array.isArray(frame.events) ? frame.events : [frame];
        for (const event of events) onEvent(event);
      });
      socket.addEventListener("close", (closed) => {
        clearInterval(pingTimer);
        socket = null;
        onClose?.();
        const final = texts.closed?.[closed.code];
        if (final) {
          stopped = true;
          showEnded(final);
          onEnded?.(closed.code);
          return;
        }
        scheduleReconnect();
      });
    }

    function scheduleReconnect() {
      if (watchOffline && !navigator.onLine) {
        show("offline", texts.offline);
        return;
      }
      const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** attempts) * (0.75 + Math.random() / 2);
      attempts += 1;
      show("reconnecting", texts.reconnecting);
      reconnectTimer = setTimeout(connect, delay);
    }

    if (watchOffline) {
      window.addEventListener("online", () => {
        attempts = 0;
        if (!socket) connect();
      });
      window.addEventListener("offline", () => {
        show("offline", texts.offline);
        socket?.close();
      });
    }

    connect();
    return { send, show };
  }

  window.connectSocket = connectSocket;
})();
