/* The admin's sweep page: the same heatmap and ranked table as the lab's (lab/heatmap.js). */
(function () {
  "use strict";
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => window.SweepHeatmap.mount());
  else window.SweepHeatmap.mount();
})();
