// The upload form: send the CSV to the JSON API, then open the request's page; an invalid
// CSV lists every problem by row and column, as the API reports them.
"use strict";

(function () {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("csv-file");
  const zone = document.getElementById("drop-zone");
  const label = document.getElementById("drop-label");
  const result = document.getElementById("upload-result");
  const button = document.getElementById("upload-button");
  // Disabled in the page: without this script the form would post to the JSON API.
  document.getElementById("upload-fields").disabled = false;

  function showFileName() {
    label.textContent = input.files.length ? input.files[0].name : "Drop a CSV here, or pick one";
  }

  input.addEventListener("change", showFileName);
  ["dragenter", "dragover"].forEach((type) =>
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    })
  );
  ["dragleave", "drop"].forEach((type) =>
    zone.addEventListener(type, () => zone.classList.remove("dragging"))
  );
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      showFileName();
    }
  });

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }

  // A form field as the form labels it ("Webhook URL (optional)"), not by its API name.
  function fieldLabel(field) {
    if (field === "file") return "CSV file";
    const name = field === "quality_mode" || field === "target" ? "quality_choice" : field;
    const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
    const label = input && input.closest("label");
    const words = label && label.firstChild ? label.firstChild.textContent.trim() : "";
    return words || field;
  }

  function showError(body) {
    result.replaceChildren();
    result.className = "problems";
    const heading = document.createElement("p");
    heading.className = "error";
    heading.textContent = body.error || "The upload failed.";
    result.appendChild(heading);
    const details = body.details || [];
    if (!details.length) return;
    const table = document.createElement("table");
    table.className = "problems-table";
    const head = table.createTHead().insertRow();
    ["Row", "Column or field", "Problem"].forEach((name) => {
      const th = document.createElement("th");
      th.textContent = name;
      head.appendChild(th);
    });
    const tbody = table.createTBody();
    details.forEach((detail) => {
      const row = tbody.insertRow();
      cell(row, detail.row === undefined || detail.row === null ? "" : String(detail.row));
      cell(row, detail.column || (detail.field ? fieldLabel(detail.field) : ""));
      cell(row, detail.message || "");
    });
    result.appendChild(table);
  }

  // Set once the service has made the request and the page is on its way to it: a click
  // while the next page loads would otherwise be a second upload, under a new key.
  let made = false;
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted || !made) return;
    // Back from the request's page, out of the browser's cache: the form is free again.
    made = false;
    button.disabled = false;
    result.textContent = "";
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (made) return;
    // Past the limit, told before the file is sent: the service refused it only once all
    // of it had arrived (13 s of a 12 MB file on a slow line).
    const chosen = input.files[0];
    const most = Number(form.dataset.maxBytes);
    if (chosen && most && chosen.size > most) {
      showError({
        error: `The file is larger than the limit of ${most.toLocaleString("en")} bytes: split it.`,
      });
      return;
    }
    const data = new FormData(form);
    // The score box sits after a hidden "false" (an unticked box sends nothing): the
    // last value is the box's, and the API refuses a field given twice.
    const scores = data.getAll("score");
    if (scores.length) data.set("score", scores[scores.length - 1]);
    // "perceptual:low" is the mode and its target; the others, the mode alone.
    const [mode, target] = String(data.get("quality_choice")).split(":");
    data.delete("quality_choice");
    data.set("quality_mode", mode);
    if (target) data.set("target", target);
    ["webhook_url", "quality", "score"].forEach((name) => {
      if (!data.get(name)) data.delete(name);
    });
    button.disabled = true;
    result.className = "";
    result.textContent = "Uploading…";
    try {
      // The session's CSRF token, which Django checks on every logged-in POST.
      const csrf = data.get("csrfmiddlewaretoken");
      // The upload's Idempotency-Key, one per form as filled in: sent again after the
      // network lost the answer, or after Back from the request it made, the upload gets
      // that request instead of a second one.
      const { response, body } = await window.formSendKeyed("upload", data, async (key) => {
        const answer = await fetch(form.action, {
          method: "POST",
          body: data,
          headers: { "X-CSRFToken": csrf, "Idempotency-Key": key },
          credentials: "same-origin",
        });
        const said = await answer.json().catch(() => ({ error: `HTTP ${answer.status}` }));
        return { response: answer, body: said };
      });
      if (response.status === 202) {
        made = true;
        result.textContent = "Uploaded: opening the request…";
        window.location.assign(`/requests/${body.request_id}/`);
        return;
      }
      if (response.status === 401) {
        result.className = "error";
        result.replaceChildren("You are logged out. ");
        const link = document.createElement("a");
        link.href = "/login/?next=/";
        link.textContent = "Log in again";
        result.appendChild(link);
        return;
      }
      const stale = window.staleFormWords(response.status, body);
      showError(stale ? { error: stale } : body);
    } catch (error) {
      showError({ error: `The upload did not reach the service (${error.message}).` });
    } finally {
      button.disabled = made;
    }
  });
})();
