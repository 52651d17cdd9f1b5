/* The study form: reloading for another strategy's parameters, the grid's size as the
   ranges change (what a grid sampler would run), and the walk-forward windows shown only
   when a walk-forward is asked for. */
(function () {
  "use strict";

  function rowPoints(row) {
    if (row.dataset.type === "bool") {
      const select = row.querySelector("select");
      return select && select.value === "both" ? 2 : 1;
    }
    const part = name => row.querySelector(`input[data-space-part='${name}']`).value;
    const low = part("low"), high = part("high"), step = part("step");
    if (low === "" && high === "" && step === "") return 1;  // blank: the strategy's value
    const a = Number(low), b = Number(high), s = Number(step);
    if (low === "" || high === "" || b < a) return NaN;
    if (step === "") return row.dataset.type === "int" ? Math.floor(b - a) + 1 : Infinity;
    if (!(s > 0)) return NaN;
    return Math.floor((b - a) / s + 1e-9) + 1;
  }

  function update(table, output) {
    let total = 1, valid = true;
    table.querySelectorAll("tr[data-space]").forEach(row => {
      const points = rowPoints(row);
      const cell = row.querySelector(".space-count");
      cell.textContent = Number.isNaN(points) ? "?" : (points === Infinity ? "∞" : points.toLocaleString());
      if (Number.isNaN(points)) valid = false; else total *= points;
    });
    output.textContent = !valid ? "? (fix the ranges)" : (total === Infinity ? "∞ (give each float a step)" : total.toLocaleString());
  }

  function start() {
    const table = document.getElementById("st-space"), output = document.getElementById("st-grid");
    if (table && output) {
      table.addEventListener("input", () => update(table, output));
      table.addEventListener("change", () => update(table, output));
      update(table, output);
    }
    const select = document.querySelector("#study-form select[data-reload-with]");
    if (select) select.addEventListener("change", () => {
      location.search = new URLSearchParams({ [select.dataset.reloadWith]: select.value }).toString();
    });
    const toggle = document.getElementById("st-wf"), windows = document.getElementById("st-wf-fields");
    if (toggle && windows) {
      const show = () => { windows.hidden = !toggle.checked; };
      toggle.addEventListener("change", show);
      show();
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
