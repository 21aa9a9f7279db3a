// Every <time datetime="..."> of the page in the reader's own time zone, as their browser
// words a date, with the zone named; the UTC the server wrote stays in its title. The
// server cannot know the zone: a browser does not send it.
(function () {
  "use strict";

  function localTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach((element) => {
      if (element.dataset.local) return;
      const when = new Date(element.dateTime);
      if (Number.isNaN(when.getTime())) return;
      const written = element.textContent.trim();
      const options = { dateStyle: "medium", timeStyle: /\d:\d\d:\d\d/.test(written) ? "long" : "short" };
      let shown = when.toLocaleString(undefined, options);
      if (options.timeStyle === "short") {
        // "short" names no zone: added, so that a time is never read as another zone's
        const zone = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
          .formatToParts(when)
          .find((part) => part.type === "timeZoneName");
        if (zone) shown += " " + zone.value;
      }
      element.title = written;
      element.textContent = shown;
      element.dataset.local = "true";
    });
  }

  window.localTimes = localTimes;
  localTimes(document);
})();
