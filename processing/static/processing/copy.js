// A Copy button beside a secret shown once (the account page's new API key): the whole
// text to the clipboard. Where the clipboard is refused (a page over plain http, which
// browsers give no clipboard, or a permission denied), the whole text is selected and
// copied the old way, or left selected for Ctrl+C.
(function () {
  "use strict";

  function selectWhole(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copiedTheOldWay() {
    try {
      return document.execCommand("copy");
    } catch (error) {
      return false;
    }
  }

  for (const button of document.querySelectorAll("button[data-copy]")) {
    const source = document.getElementById(button.dataset.copy);
    const said = document.querySelector(`[data-copied-for="${button.dataset.copy}"]`);
    if (!source) continue;
    button.hidden = false; // without this script it would do nothing
    button.addEventListener("click", async function () {
      const text = source.textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
        selectWhole(source);
        said.textContent = "Copied.";
      } catch (error) {
        selectWhole(source);
        said.textContent = copiedTheOldWay()
          ? "Copied."
          : "Selected: press Ctrl+C (\u2318C on a Mac) to copy it.";
      }
    });
  }
})();
