/* The lab's sweep page: live progress while it runs (lab.js's window.Lab), then the heatmap
   and the ranked table's "Open as backtest" buttons (lab/heatmap.js), and the sweep's DSR
   and PBO on request (/api/v1/sweeps/<id>/overfitting/). */
(function () {
  "use strict";
  const { liveSection, eta } = window.Lab;

  liveSection(m => `${m.combinations_done} / ${m.combinations_total} combinations (${m.combinations_cached} from cache)${eta(m.eta_seconds)}`);
  window.SweepHeatmap.mount();

  /* The sweep's Deflated Sharpe Ratio and PBO, on request: the API may backtest every
     combination again to get their returns, so it waits for the button. A sweep that is
     not eligible answers 409 with the reason, shown as it is. */
  const panel = document.getElementById("sweep-overfitting");
  if (panel) {
    const { api, errorLines } = window.Lab;
    const button = document.getElementById("overfitting-load");
    const shown = document.getElementById("overfitting-values");
    const errors = document.getElementById("overfitting-errors");
    const basis = document.getElementById("overfitting-basis");
    const number = v => (v === null || v === undefined ? "—" : Number(v).toFixed(3));
    const dsrNote = dsr => dsr.value === null ? "Not computable: the combinations' Sharpe ratios do not vary."
      : `The probability that the best combination's true Sharpe ratio is above zero after ${dsr.n_trials} combinations were tried: `
        + (dsr.value >= 0.95 ? "above 0.95, unlikely to be luck." : "below 0.95, it may well be luck of the search.");
    const pboNote = pbo => pbo.value === null ? "Not computable: too few periods to split."
      : `How often the best combination of one half of the periods ranked below the median in the other, over ${Number(pbo.combinations).toLocaleString("en-US")} splits: `
        + (pbo.value < 0.2 ? "low." : pbo.value >= 0.5 ? "high, no better than chance." : "moderate.");
    button.addEventListener("click", async () => {
      button.disabled = true;
      errors.textContent = "";
      button.textContent = "Computing…";
      const result = await api("GET", panel.dataset.url);
      button.disabled = false;
      button.textContent = "Compute DSR and PBO";
      if (!result.ok) { errors.textContent = errorLines(result.payload).join("\n"); return; }
      const dsr = result.payload.deflated_sharpe_ratio, pbo = result.payload.probability_of_backtest_overfitting;
      shown.querySelector("[data-stat='dsr']").textContent = number(dsr.value);
      shown.querySelector("[data-note='dsr']").textContent = dsrNote(dsr);
      shown.querySelector("[data-stat='pbo']").textContent = number(pbo.value);
      shown.querySelector("[data-note='pbo']").textContent = pboNote(pbo);
      basis.textContent = `From the ${result.payload.performance} (${result.payload.computed} backtested now, ${result.payload.cached} from the cache).`;
      shown.hidden = false;
      button.hidden = true;
    });
  }
})();
