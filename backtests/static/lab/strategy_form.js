/* Strategy forms (lab and admin): the parameter fields come from the chosen kind's spec on the
   server, so choosing another kind reloads the page with ?kind= and keeps what was typed. */
(function () {
  "use strict";
  function start() {
    document.querySelectorAll("select[data-kind-select]").forEach(select => {
      select.addEventListener("change", () => {
        const form = select.form, query = new URLSearchParams();
        for (const element of form.elements) {
          if (!element.name || element.type === "hidden" || element.type === "submit" || element.type === "file") continue;
          if (element.name.startsWith("param_") || element.name === "kind") continue;
          if ((element.type === "checkbox" || element.type === "radio") && !element.checked) continue;
          if (element.value !== "") query.set(element.name, element.value);
        }
        query.set("kind", select.value);
        location.search = query.toString();
      });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
