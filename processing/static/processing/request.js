// A request's page: move the progress bar from the status API until the request has
// finished, showing each image's result as it ends, then load the page again (and again
// if it changes once finished). The cancel, retry, re-run and webhook forms post to the
// JSON API, as the upload form does.
"use strict";

(function () {
  const section = document.getElementById("request");
  const bar = document.getElementById("progress");
  const fill = document.getElementById("progress-fill");
  const text = document.getElementById("progress-text");
  const statusLabel = document.getElementById("status");
  const FINISHED = ["completed", "completed_with_errors", "failed", "cancelled"];
  const LABELS = {
    pending: "Pending",
    processing: "Processing",
    completed: "Completed",
    completed_with_errors: "Completed with errors",
    failed: "Failed",
    cancelled: "Cancelled",
  };
  // The products shown again at most this often while images end, in milliseconds.
  const PRODUCTS_EVERY = 3000;
  // The counts read out to a screen reader at most this often while they change.
  const COUNTS_SAID_EVERY = 10000;
  const actionResult = document.getElementById("action-result");
  const said = document.getElementById("progress-said");
  const pollProblem = document.getElementById("poll-problem");
  const goneSaid = document.getElementById("request-gone");
  // How often a finished request's page asks whether the request is still as shown, in
  // milliseconds (and whenever the tab is looked at again): it may be deleted or expire,
  // be retried from another tab, the API or an operator's retry_failed, or its webhook
  // be sent again, and nothing else tells the page. One small answer a minute, a 304
  // without a body while nothing has changed, and none from a hidden tab.
  const CHANGES_ASKED_EVERY = 60000;
  // The forms come disabled: without this script they would post to the JSON API.
  document.querySelectorAll("fieldset.needs-script").forEach((fields) => {
    fields.disabled = false;
  });

  function showLoggedOut() {
    actionResult.className = "error";
    actionResult.replaceChildren("You are logged out. ");
    const link = document.createElement("a");
    link.href = `/login/?next=${encodeURIComponent(window.location.pathname)}`;
    link.textContent = "Log in again";
    actionResult.appendChild(link);
  }

  // An error of the API: its message, and each detail's field and message on a line.
  function showError(body, status) {
    actionResult.className = "error";
    const stale = window.staleFormWords(status, body);
    actionResult.replaceChildren(stale || body.error || `HTTP ${status}`);
    if (stale) return;
    const details = body.details || [];
    if (!details.length) return;
    const list = document.createElement("ul");
    details.forEach((detail) => {
      const item = document.createElement("li");
      const where = detail.field || detail.column || "";
      item.textContent = where ? `${where}: ${detail.message || ""}` : detail.message || "";
      list.appendChild(item);
    });
    actionResult.appendChild(list);
  }

  // Whether an answer of the API says the request is gone: deleted or expired since the
  // page was shown (in another tab, by the retention), or no longer found at all.
  function isGone(status, body) {
    return (
      (status === 410 && body.code === "expired") || (status === 404 && body.code === "not_found")
    );
  }

  // The request gone, said in words (read out), and its buttons and links, which could
  // no longer work, taken away: a stale tab kept them, and its download failed silently.
  let gone = false;
  function showGone(status, body) {
    gone = true;
    goneSaid.replaceChildren(
      status === 410
        ? `${body.error || "The request's results were deleted."} `
        : "This request no longer exists. "
    );
    const link = document.createElement("a");
    link.href = "/";
    link.textContent = "Upload the CSV again";
    goneSaid.append(link, " to process it anew.");
    document.querySelectorAll("fieldset.needs-script").forEach((fields) => {
      fields.disabled = true;
    });
    ["download-csv", "delete-link"].forEach((id) => {
      const offered = document.getElementById(id);
      if (offered) offered.hidden = true;
    });
    actionResult.className = "";
    actionResult.textContent = "";
  }

  // What a person typed into the re-run form outlives the page's reloads (the request
  // finishing, a cancel, a retry), which reset it to the request's own settings.
  const rerun = document.getElementById("rerun-form");
  const typedKey = `rerun-typed:${window.location.pathname}`;
  const typedFields = () =>
    rerun
      ? [...rerun.querySelectorAll("input, select")].filter((field) => field.type !== "hidden")
      : [];
  // So does the keyboard's focus: the page loaded again put it back at the top, and a
  // screen reader's or keyboard user's place was lost. Where it was is found again (an
  // element by its id, a form's field by its name, a link by its address); where that
  // is gone (the Cancel or Retry button pressed), the request's status takes it.
  const focusKey = `focus:${window.location.pathname}`;
  const statusLine = document.getElementById("status-line");
  function focusPlace() {
    const focused = document.activeElement;
    if (!focused || !section.closest("main").contains(focused)) return null; // the top, as loaded
    if (focused.id) return { id: focused.id };
    const form = focused.closest("form[id]");
    if (form) return { form: form.id, tag: focused.tagName, name: focused.name || "" };
    const href = focused.getAttribute("href");
    if (href === null) return {};
    const same = [...document.querySelectorAll("a[href]")].filter(
      (link) => link.getAttribute("href") === href
    );
    return { href, index: same.indexOf(focused) };
  }
  function focusFound(place) {
    if (place.id) return document.getElementById(place.id);
    if (place.form) {
      const form = document.getElementById(place.form);
      const fields = form ? [...form.querySelectorAll(place.tag)] : [];
      return fields.find((field) => (field.name || "") === place.name) || null;
    }
    if (place.href !== undefined) {
      const same = [...document.querySelectorAll("a[href]")].filter(
        (link) => link.getAttribute("href") === place.href
      );
      return same[place.index] || same[0] || null;
    }
    return null;
  }

  function reload(place = focusPlace()) {
    const typed = {};
    typedFields().forEach((field) => {
      typed[field.name] = field.type === "checkbox" ? field.checked : field.value;
    });
    window.sessionStorage.setItem(typedKey, JSON.stringify(typed));
    if (place) window.sessionStorage.setItem(focusKey, JSON.stringify(place));
    window.location.reload();
  }
  const kept = JSON.parse(window.sessionStorage.getItem(typedKey) || "null");
  window.sessionStorage.removeItem(typedKey);
  if (kept) {
    typedFields().forEach((field) => {
      if (!(field.name in kept)) return;
      if (field.type === "checkbox") field.checked = kept[field.name];
      else field.value = kept[field.name];
    });
  }
  const focusedBefore = JSON.parse(window.sessionStorage.getItem(focusKey) || "null");
  window.sessionStorage.removeItem(focusKey);

  document.querySelectorAll("form.action").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      // Delete asks on a page of its own; a cancel, as final for the images not started
      // (a retry starts them anew), asked nothing.
      if (
        form.id === "cancel-form" &&
        !window.confirm(
          "Cancel the request? The images not started yet are not processed; " +
            "the ones under way finish. You can retry them afterwards."
        )
      )
        return;
      const data = new FormData(form);
      const csrf = data.get("csrfmiddlewaretoken");
      data.delete("csrfmiddlewaretoken");
      // An emptied quality keeps the source's, as the API does when none is given: sent
      // as JSON's "", it was refused ("A valid integer is required").
      if (data.get("quality") === "") data.delete("quality");
      // The re-run's target: one asks for the perceptual mode; none leaves the source's
      // mode, but for a perceptual source, which it takes back to the fixed quality. A
      // quality changed on a source at half its images' own asks for that quality.
      const mode = form.dataset.mode;
      if (data.has("target")) {
        const quality = form.querySelector("input[name=quality]");
        if (data.get("target")) data.set("quality_mode", "perceptual");
        else {
          data.delete("target");
          if (mode === "perceptual") data.set("quality_mode", "fixed");
          else if (mode === "relative" && quality.value && quality.value !== quality.defaultValue)
            data.set("quality_mode", "fixed");
        }
      }
      const button = form.querySelector("button");
      // (Taken before the button is disabled, which sends the focus away.)
      const pressed = focusPlace();
      button.disabled = true;
      actionResult.className = "";
      actionResult.textContent = "";
      const headers = { "Content-Type": "application/json", "X-CSRFToken": csrf };
      // The re-run's Idempotency-Key (the form that opens what it makes), one per form as
      // filled in: sent again after the network lost the answer (Chromium resends a POST
      // by itself when a kept connection fails), or after Back from the re-run it made,
      // it gets that re-run instead of a second one.
      // (A re-run deleted since is not opened again: the form then makes a new one.)
      const send = async (key) => {
        const answer = await fetch(form.action, {
          method: "POST",
          body: JSON.stringify(Object.fromEntries(data)),
          headers: key ? { ...headers, "Idempotency-Key": key } : headers,
          credentials: "same-origin",
        });
        const said = await answer.json().catch(() => ({ error: `HTTP ${answer.status}` }));
        return { response: answer, body: said };
      };
      try {
        const { response, body } =
          form.dataset.then === "open"
            ? await window.formSendKeyed(`rerun:${window.location.pathname}`, data, send)
            : await send(null);
        if (response.status === 202) {
          if (form.dataset.then === "open") window.location.assign(`/requests/${body.request_id}/`);
          else reload(pressed);
          return;
        }
        if (response.status === 401) showLoggedOut();
        else if (isGone(response.status, body)) showGone(response.status, body);
        else showError(body, response.status);
      } catch (error) {
        actionResult.className = "error";
        actionResult.textContent = `The service could not be reached (${error.message}).`;
      }
      button.disabled = gone;
      // The button pressed, disabled meanwhile, had lost the focus: given it back.
      if (!gone && document.activeElement === document.body) button.focus();
    });
  });

  if (focusedBefore) {
    const again = focusFound(focusedBefore);
    if (again && !again.disabled && !again.closest("fieldset:disabled")) {
      again.focus({ preventScroll: true });
    } else {
      statusLine.focus();
    }
  }

  function show(percent) {
    fill.style.width = `${percent}%`;
    bar.setAttribute("aria-valuenow", String(percent));
  }

  let countsSaidAt = 0;
  function showCounts(percent, words) {
    show(percent);
    text.textContent = words;
    bar.setAttribute("aria-valuetext", `${percent}%: ${words}`);
    if (Date.now() - countsSaidAt < COUNTS_SAID_EVERY || said.textContent === words) return;
    countsSaidAt = Date.now();
    said.textContent = words;
  }

  // Said while the status cannot be asked (the service restarting, the network away), and
  // gone once it answers: the bar stood still without a word.
  function showReachable(reached) {
    pollProblem.textContent = reached ? "" : "Cannot reach the service; retrying…";
  }

  // The products and the totals as the server renders them now: each image's result as
  // it ends, not only once the whole request has.
  let productsShownAt = 0;
  let endedShown = null;
  async function showProducts(ended) {
    if (ended === endedShown || Date.now() - productsShownAt < PRODUCTS_EVERY) return;
    productsShownAt = Date.now();
    const response = await fetch(window.location.href, { cache: "no-store" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const refocus = focusKept();
    ["products", "totals"].forEach((id) => {
      const now = fresh.getElementById(id);
      if (now) {
        document.getElementById(id).replaceWith(now);
        if (window.localTimes) window.localTimes(now);
      }
    });
    refocus();
    endedShown = ended;
  }

  // The link a person reached with the keyboard inside the products, focused again once
  // they have been shown anew: each refresh sent the focus back to the top of the page.
  function focusKept() {
    const focused = document.activeElement;
    const products = document.getElementById("products");
    const href = focused && products.contains(focused) ? focused.getAttribute("href") : null;
    if (href === null) return () => {};
    const same = [...products.querySelectorAll("a[href]")].filter(
      (link) => link.getAttribute("href") === href
    );
    const index = same.indexOf(focused);
    return () => {
      const again = [...document.getElementById("products").querySelectorAll("a[href]")].filter(
        (link) => link.getAttribute("href") === href
      );
      (again[index] || again[0])?.focus({ preventScroll: true });
    };
  }

  show(Number(fill.dataset.percent));
  if (section.dataset.finished === "true") {
    // Nothing to follow, unless the request changes while the tab is open: it is shown
    // anew then (followed again, once retried), or said to be gone.
    const shownEtag = section.dataset.statusEtag;
    const askChanged = async () => {
      if (gone || document.visibilityState === "hidden") return;
      try {
        const response = await fetch(section.dataset.statusUrl, {
          cache: "no-store",
          headers: { "If-None-Match": shownEtag },
        });
        if (response.status === 304 || response.status === 401) return;
        const body = await response.json().catch(() => ({}));
        if (response.ok) {
          // Another ETag, or one the way lost, but no longer finished: a retry started
          // elsewhere, which the page kept showing as finished, its Retry then refused.
          const etag = response.headers.get("ETag");
          if ((etag && etag !== shownEtag) || !FINISHED.includes(body.status)) reload();
          return;
        }
        if (isGone(response.status, body)) showGone(response.status, body);
      } catch (error) {
        // The service may be restarting: asked again later.
      }
    };
    window.setInterval(askChanged, CHANGES_ASKED_EVERY);
    document.addEventListener("visibilitychange", askChanged);
    return;
  }

  async function poll() {
    try {
      const response = await fetch(section.dataset.statusUrl, { cache: "no-store" });
      if (response.status === 401) {
        showLoggedOut();
        return;
      }
      showReachable(response.ok || response.status < 500);
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        if (isGone(response.status, body)) {
          showGone(response.status, body);
          return;
        }
      }
      if (response.ok) {
        const body = await response.json();
        const { total, succeeded, failed, cancelled, pending } = body.progress;
        const finished = FINISHED.includes(body.status);
        if (finished) {
          reload();
          return;
        }
        // As counts_words (page_words.py) says them.
        const reused = body.outputs ? body.outputs.reused : 0;
        const reusedText = reused ? `${reused} re-used unchanged, ` : "";
        const cancelledText = cancelled ? `${cancelled} cancelled, ` : "";
        showCounts(
          total ? Math.floor(((total - pending) * 100) / total) : 0,
          `${succeeded - reused} compressed, ${reusedText}${failed} failed, ` +
            `${cancelledText}${pending} to go`
        );
        statusLabel.textContent = LABELS[body.status] || body.status;
        statusLabel.className = `status status-${body.status}`;
        await showProducts(succeeded + failed + cancelled);
      }
    } catch (error) {
      // The service may be restarting: keep asking.
      showReachable(false);
    }
    window.setTimeout(poll, 1000);
  }
  window.setTimeout(poll, 500);
})();
