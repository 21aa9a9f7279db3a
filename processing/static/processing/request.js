// A request's page: move the progress bar from the status API until the request has
// finished, then load the page again to show every image's result.
"use strict";

(function () {
  const section = document.getElementById("request");
  const bar = document.getElementById("progress");
  const fill = document.getElementById("progress-fill");
  const text = document.getElementById("progress-text");
  const statusLabel = document.getElementById("status");
  const FINISHED = ["completed", "completed_with_errors", "failed"];
  const LABELS = {
    pending: "Pending",
    processing: "Processing",
    completed: "Completed",
    completed_with_errors: "Completed with errors",
    failed: "Failed",
  };

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
        const { total, succeeded, failed, pending } = body.progress;
        const finished = FINISHED.includes(body.status);
        show(finished ? 100 : total ? Math.floor(((succeeded + failed) * 100) / total) : 0);
        text.textContent = `${succeeded} compressed, ${failed} failed, ${pending} to go`;
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
