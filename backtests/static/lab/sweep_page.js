/* The lab's sweep page. Shared helpers (api, liveSection, eta) come from lab.js's window.Lab. */
(function () {
  "use strict";
  const { api, liveSection, eta } = window.Lab;

  function sweep() {
    liveSection(m => `${m.combinations_done} / ${m.combinations_total} combinations (${m.combinations_cached} from cache)${eta(m.eta_seconds)}`);
    const node = document.getElementById("sweep-data");
    const data = JSON.parse(node.textContent);
    const chart = document.getElementById("chart-heatmap");
    if (chart) Charts.heatmap(chart, data.rows, data.axes, data.metric, data.best);
    const rows = document.querySelectorAll("table.data tbody tr");
    rows.forEach((row, i) => {
      const source = data.rows[i];
      if (!source) return;
      row.querySelectorAll("td[data-metric]").forEach(cell => {
        const v = source.metrics[cell.dataset.metric];
        cell.textContent = v === null || v === undefined ? "—" : (Number.isInteger(v) ? v : Number(v).toFixed(3));
      });
    });
  }

  sweep();
})();
