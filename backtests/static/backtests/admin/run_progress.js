/* A backtest run's admin page: live progress over the run's WebSocket (session cookie auth),
   then a reload once it finishes. A file of its own, as the Content-Security-Policy allows no
   inline script; the page names the socket in <progress data-ws>. */
(function () {
  "use strict";
  const bar = document.getElementById("run-progress");
  if (!bar || !bar.dataset.ws) return;  // a finished run: nothing to follow
  const label = document.getElementById("run-status");
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + bar.dataset.ws);
  ws.onmessage = function (event) {
    const m = JSON.parse(event.data);
    bar.value = m.progress;
    const eta = m.eta_seconds != null ? ", about " + Math.round(m.eta_seconds) + " s left" : "";
    label.textContent = m.status + " · " + m.progress.toFixed(1) + "% (" + m.bars_done +
      " / " + m.bars_total + " bars" + eta + ")";
    if (m.type === "final") { ws.close(); setTimeout(function () { location.reload(); }, 300); }
  };
})();
