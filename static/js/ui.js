// Small helpers the customer's chat, the staff conversation and the inbox share: how a time is
// shown, and the composer's character limit. A plain script like socket.js (loaded before the
// page's module); it defines window.chatUi.

(() => {
  "use strict";

  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }

  // "14:03" today; "Mon 3 Mar, 14:03" on another day ("… 2024, 14:03" in another year), so a
  // conversation from last week never passes for one from this morning.
  function when(iso, now = new Date()) {
    const date = new Date(iso);
    const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (sameDay(date, now)) return time;
    const day = date.toLocaleDateString([], {
      weekday: "short",
      day: "numeric",
      month: "short",
      ...(date.getFullYear() === now.getFullYear() ? {} : { year: "numeric" }),
    });
    return `${day}, ${time}`;
  }

  function timeElement(iso, className) {
    const node = document.createElement("time");
    if (className) node.className = className;
    node.dateTime = iso;
    node.textContent = when(iso);
    node.title = new Date(iso).toLocaleString();
    return node;
  }

  // One polite status line under the composer, shared by whoever needs to say why nothing was
  // sent. Each message has a kind, so one concern clears its own message and not another's.
  function composerNote(element) {
    let kind = "";
    return {
      show(newKind, text) {
        kind = newKind;
        if (element.textContent === text) {
          // The same words again (Enter pressed twice): empty the region first, so it is heard.
          element.textContent = "";
          window.setTimeout(() => {
            if (kind === newKind) element.textContent = text;
          }, 100);
          return;
        }
        element.textContent = text;
      },
      clear(oldKind) {
        if (kind !== oldKind) return;
        kind = "";
        element.textContent = "";
      },
    };
  }

  // The composer's character limit, without a maxlength (which silently cuts a paste): a live
  // count near the limit, one announcement on crossing it, and refuse() to stop a send while the
  // text is too long. The whole text always stays in the box. Counts what is sent (the trimmed
  // text) in characters, as the server does, not UTF-16 units.
  function lengthLimit({ input, counter, note, maxChars }) {
    const warnFrom = Math.max(0, maxChars - Math.max(100, Math.round(maxChars / 10)));
    const limitText = `${maxChars.toLocaleString()}-character limit`;
    let state = "fine";

    function length() {
      return [...input.value.trim()].length;
    }

    function update() {
      const count = length();
      const over = count - maxChars;
      const next = over > 0 ? "over" : count >= warnFrom ? "near" : "fine";
      counter.hidden = next === "fine";
      counter.classList.toggle("char-count-over", over > 0);
      counter.textContent =
        over > 0
          ? `${count.toLocaleString()} / ${maxChars.toLocaleString()} · ${over.toLocaleString()} too many`
          : `${count.toLocaleString()} / ${maxChars.toLocaleString()}`;
      if (over <= 0) input.removeAttribute("aria-invalid");
      if (next !== state) {
        if (next === "over") note.show("limit", `Your message is over the ${limitText}.`);
        else if (next === "near") note.show("limit", `You are close to the ${limitText}.`);
        else note.clear("limit");
        state = next;
      }
    }

    // True (and says why) when the text is too long to send.
    function refuse() {
      const over = length() - maxChars;
      if (over <= 0) return false;
      input.setAttribute("aria-invalid", "true");
      note.show(
        "limit",
        `Not sent: your message is ${over.toLocaleString()} ${over === 1 ? "character" : "characters"} ` +
          `over the ${limitText}. Shorten it and send again; your text is still in the box.`,
      );
      return true;
    }

    input.addEventListener("input", update);
    update();
    return { update, refuse };
  }

  window.chatUi = { when, timeElement, composerNote, lengthLimit };
})();
