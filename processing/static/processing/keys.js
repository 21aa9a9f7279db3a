// A new Idempotency-Key for a form the pages post to the JSON API: the same key sent again
// after the network lost an answer gets the first answer instead of doing the work twice.
(function () {
  "use strict";

  window.newIdempotencyKey = function () {
    if (window.crypto.randomUUID) return window.crypto.randomUUID(); // secure contexts only
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  };
})();
