// A new Idempotency-Key for a form the pages post to the JSON API: the same key sent again
// after the network lost an answer gets the first answer instead of doing the work twice.
(function () {
  "use strict";

  window.newIdempotencyKey = function () {
    if (window.crypto.randomUUID) return window.crypto.randomUUID(); // secure contexts only
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  };

  // The key of a form as filled in (the file chosen, by its name, size and time; every
  // other field's value): the same form sent again, after Back from the request it made,
  // gets that request instead of a second one. Kept in the tab's sessionStorage, since
  // the page may come back without its script's memory; another file or value, a new key.
  const memory = new Map(); // where sessionStorage is refused
  // Only a page the browser brings back from its history sends its form's key again: on a
  // visit of its own (a link, a reload) the same file uploaded again is meant as a new
  // upload, and its key had made a request that may since have been deleted.
  // (This page's keys alone: the page a form's request opens starts afresh too.)
  const prefix = `idempotency-key:${window.location.pathname}:`;
  const visit = window.performance.getEntriesByType("navigation")[0];
  if (!visit || visit.type !== "back_forward") {
    try {
      Object.keys(window.sessionStorage)
        .filter((stored) => stored.startsWith(prefix))
        .forEach((stored) => window.sessionStorage.removeItem(stored));
    } catch (error) {
      // storage refused: the memory's, which a new page starts without
    }
  }
  window.formStateKey = function (name, data) {
    const state = JSON.stringify(
      [...data.entries()]
        .filter(([field]) => field !== "csrfmiddlewaretoken")
        .map(([field, value]) =>
          value instanceof File
            ? [field, value.name, value.size, value.lastModified]
            : [field, value]
        )
    );
    const stored = prefix + name;
    let kept = memory.get(stored) || null;
    try {
      kept = JSON.parse(window.sessionStorage.getItem(stored) || "null");
    } catch (error) {
      // storage refused: the memory's
    }
    if (kept && kept.state === state) return kept.key;
    const made = { state, key: window.newIdempotencyKey() };
    memory.set(stored, made);
    try {
      window.sessionStorage.setItem(stored, JSON.stringify(made));
    } catch (error) {
      // storage refused: the memory's alone
    }
    return made.key;
  };

  // The key of a form as filled in forgotten: the same form sent next gets a new one.
  function formStateKeyForget(name) {
    memory.delete(prefix + name);
    try {
      window.sessionStorage.removeItem(prefix + name);
    } catch (error) {
      // storage refused: the memory's alone
    }
  }

  // Whether the request of a 202 that answered a form sent again with its key was deleted
  // since (in this tab or another, or by expiry): its status answers 404 or 410.
  async function replayedGone(response, body) {
    if (response.status !== 202 || response.headers.get("Idempotent-Replayed") !== "true")
      return false;
    const status = await fetch(`/api/status/${encodeURIComponent(body.request_id)}/`, {
      cache: "no-store",
      credentials: "same-origin",
    });
    return status.status === 404 || status.status === 410;
  }

  // Send a form under its key (send(key) answers {response, body}). The API answers the
  // same form sent again with the request it made even once that was deleted (Back from
  // it within IDEMPOTENCY_KEY_HOURS, then the same form): the person landed on a deleted
  // request, where they meant a new one; the form is then sent again under a new key.
  window.formSendKeyed = async function (name, data, send) {
    const sent = await send(window.formStateKey(name, data));
    if (!(await replayedGone(sent.response, sent.body))) return sent;
    formStateKeyForget(name);
    return send(window.formStateKey(name, data));
  };

  // The words for a form sent from a page whose CSRF token is no longer the session's
  // (logged out and in again in another tab since the page was shown): DRF's 403 said
  // "CSRF Failed: CSRF token from POST incorrect.", which told a person nothing.
  window.staleFormWords = function (status, body) {
    if (status !== 403 || !String(body.error || "").startsWith("CSRF Failed")) return null;
    return (
      "This page is out of date (you logged out and in again since it was shown), so " +
      "nothing was sent. Reload the page and try again."
    );
  };
})();
