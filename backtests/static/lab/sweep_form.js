/* The sweep form: the live combination count (the product of each range row's number of
   values, as the server will build the grid) and reloading for another strategy's ranges. */
(function () {
  "use strict";

  function rowCount(row) {
    if (row.dataset.type === "bool") {
      const select = row.querySelector("select");
      return select && select.value === "both" ? 2 : 1;
    }
    const part = name => row.querySelector(`input[data-range-part='${name}']`).value;
    const from = part("from"), to = part("to"), step = part("step");
    if (from === "" && to === "" && step === "") return 1;  // blank: the strategy's value
    const a = Number(from), b = Number(to), s = Number(step);
    if (from === "" || to === "" || step === "" || !(s > 0) || b < a) return NaN;
    return Math.floor((b - a) / s + 1e-9) + 1;
  }

  function update(table, output) {
    let total = 1, valid = true;
    table.querySelectorAll("tr[data-range]").forEach(row => {
      const count = rowCount(row);
      row.querySelector(".range-count").textContent = Number.isNaN(count) ? "?" : count.toLocaleString();
      if (Number.isNaN(count)) valid = false; else total *= count;
    });
    output.textContent = valid ? total.toLocaleString() : "? (fix the ranges)";
    output.dataset.count = valid ? String(total) : "";
  }

  function start() {
    const table = document.getElementById("sw-ranges"), output = document.getElementById("sw-count");
    if (table && output) {
      table.addEventListener("input", () => update(table, output));
      table.addEventListener("change", () => update(table, output));
      update(table, output);
    }
    const select = document.querySelector("select[data-reload-with]");
    if (select) select.addEventListener("change", () => {
      location.search = new URLSearchParams({ [select.dataset.reloadWith]: select.value }).toString();
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
