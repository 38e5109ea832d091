// Solves the room's proof of work, then joins the line by posting the answer: a nonce such
// that SHA-256(challenge + nonce) starts with `bits` zero bits. About 2^bits hashes on
// average. The words the page may show are in the page; this file holds none.
(function () {
  "use strict";
  var form = document.getElementById("wr-challenge");
  if (!form) return;
  var subtle = window.crypto && window.crypto.subtle;
  if (!subtle || !window.TextEncoder) {
    // crypto.subtle exists only in secure contexts (https, or localhost).
    document.getElementById("wr-failed").hidden = false;
    return;
  }
  document.getElementById("wr-working").hidden = false;
  var challenge = form.dataset.challenge;
  var bits = Number(form.dataset.bits);
  var encoder = new TextEncoder();
  // Many digests in flight at once: each call's promise costs more than the hash itself.
  var BATCH = 256;
  // Every 50 ms the page yields to the browser (a message, not a timer: timers are clamped
  // to 4 ms), so the page stays responsive and its load completes.
  var YIELD_MS = 50;
  var lastYield = performance.now();
  var channel = new MessageChannel();
  var resume = null;
  channel.port1.onmessage = function () { resume(); };
  function yieldThen(next) { resume = next; channel.port2.postMessage(0); }

  function zeroBits(buffer) {
    var bytes = new Uint8Array(buffer), n = 0;
    for (var i = 0; i < bytes.length; i++) {
      if (bytes[i] !== 0) return n + Math.clz32(bytes[i]) - 24;
      n += 8;
    }
    return n;
  }

  function batch(first) {
    var work = [];
    for (var i = 0; i < BATCH; i++) work.push(subtle.digest("SHA-256", encoder.encode(challenge + (first + i))));
    Promise.all(work).then(function (digests) {
      for (var i = 0; i < digests.length; i++) {
        if (zeroBits(digests[i]) >= bits) return found(first + i);
      }
      if (performance.now() - lastYield < YIELD_MS) return batch(first + BATCH);
      yieldThen(function () { lastYield = performance.now(); batch(first + BATCH); });
    }, failed);
  }

  function found(nonce) {
    form.elements.nonce.value = String(nonce);
    form.submit();
  }

  function failed() {
    document.getElementById("wr-working").hidden = true;
    document.getElementById("wr-failed").hidden = false;
  }

  function start() { batch(0); }
  if (document.readyState === "complete") start();
  else window.addEventListener("load", start);
})();
