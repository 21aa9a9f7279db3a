// A request's page: move the progress bar from the status API until the request has
// finished, then load the page again to show every image's result. The cancel, retry and
// re-run forms post to the JSON API, as the upload form does.
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
  const actionResult = document.getElementById("action-result");

  document.querySelectorAll("form.action").forEach((form) =>
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const csrf = data.get("csrfmiddlewaretoken");
      data.delete("csrfmiddlewaretoken");
      // The re-run's target: one asks for the perceptual mode; none leaves the source's
      // mode, but for a perceptual source, which it takes back to the fixed quality.
      if (data.has("target")) {
        if (data.get("target")) data.set("quality_mode", "perceptual");
        else {
          data.delete("target");
          if (form.dataset.perceptual === "true") data.set("quality_mode", "fixed");
        }
      }
      const button = form.querySelector("button");
      button.disabled = true;
      actionResult.className = "";
      actionResult.textContent = "";
      try {
        const response = await fetch(form.action, {
          method: "POST",
          body: JSON.stringify(Object.fromEntries(data)),
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
          credentials: "same-origin",
        });
        const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
        if (response.status === 202) {
          if (form.dataset.then === "open") window.location.assign(`/requests/${body.request_id}/`);
          else window.location.reload();
          return;
        }
        actionResult.className = "error";
        actionResult.textContent = body.error || `HTTP ${response.status}`;
      } catch (error) {
        actionResult.className = "error";
        actionResult.textContent = `The service could not be reached (${error.message}).`;
      }
      button.disabled = false;
    })
  );

  function show(percent) {
    fill.style.width = `${percent}%`;
    bar.setAttribute("aria-valuenow", String(percent));
  }

  show(Number(fill.dataset.percent));
  if (section.dataset.finished === "true") return;

  async function poll() {
    try {
      const response = await fetch(section.dataset.statusUrl, { cache: "no-store" });
      if (response.ok) {
        const body = await response.json();
        const { total, succeeded, failed, cancelled, pending } = body.progress;
        const finished = FINISHED.includes(body.status);
        show(finished ? 100 : total ? Math.floor(((total - pending) * 100) / total) : 0);
        const cancelledText = cancelled ? `${cancelled} cancelled, ` : "";
        text.textContent = `${succeeded} compressed, ${failed} failed, ${cancelledText}${pending} to go`;
        statusLabel.textContent = LABELS[body.status] || body.status;
        statusLabel.className = `status status-${body.status}`;
        if (finished) {
          window.location.reload();
          return;
        }
      }
    } catch (error) {
      // The service may be restarting: keep asking.
    }
    window.setTimeout(poll, 1000);
  }
  window.setTimeout(poll, 500);
})();
