/* The lab's backtest run page. Shared helpers (api, liveSection, eta) come from lab.js's window.Lab. */
(function () {
  "use strict";
  const { api, liveSection, eta } = window.Lab;

  function run(pk) {
    liveSection(m => `${m.progress.toFixed(1)}% · ${m.bars_done.toLocaleString()} / ${m.bars_total.toLocaleString()} bars${eta(m.eta_seconds)}`);
    const cancel = document.getElementById("cancel");
    if (cancel) cancel.addEventListener("click", async () => {
      const result = await api("POST", `/api/v1/backtests/${pk}/cancel/`);
      if (result.ok || result.status === 409) location.reload();
    });
    const node = document.getElementById("chart-data");
    if (!node) return;
    const data = JSON.parse(node.textContent);
    const xs = data.equity.ts.map(t => Date.parse(t));
    Charts.candles(document.getElementById("chart-price"), data.candles, data.trades);
    Charts.line(document.getElementById("chart-equity"), xs, [{ values: data.equity.equity, color: "#2f6fd0", fill: "rgba(47,111,208,.08)" }]);
    const drawdownPct = data.equity.drawdown.map(v => Math.abs(v) <= 1 ? v * 100 : v);
    Charts.line(document.getElementById("chart-drawdown"), xs, [{ values: drawdownPct.map(v => -Math.abs(v)), color: "#d2413a", fill: "rgba(210,65,58,.15)" }],
      { zeroTop: true, yFormat: v => v.toFixed(1) + "%" });
    const body = document.querySelector("#trades tbody");
    const fmtTime = t => t ? t.replace("T", " ").slice(0, 16) : "open";
    for (const t of data.trades) {
      const row = document.createElement("tr");
      const cls = t.pnl >= 0 ? "pos" : "neg";
      row.innerHTML = `<td>${t.direction}</td><td>${fmtTime(t.entry_time)}</td><td class="num">${t.entry_price.toFixed(2)}</td>` +
        `<td>${fmtTime(t.exit_time)}</td><td class="num">${t.exit_price === null ? "" : t.exit_price.toFixed(2)}</td>` +
        `<td class="num ${cls}">${t.pnl.toFixed(2)}</td><td class="num ${cls}">${t.pnl_pct.toFixed(2)}</td><td>${t.exit_reason}${t.is_open ? " (open)" : ""}</td>`;
      body.appendChild(row);
    }
  }

  run(Number(document.body.dataset.run));
})();
