/* The lab's behaviour: forms that post to the REST API, live progress over WebSockets,
   and drawing the charts from the JSON each page embeds. */
(function () {
  "use strict";

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(method, url, body) {
    const response = await fetch(url, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let payload = null;
    try { payload = await response.json(); } catch (e) { payload = null; }
    return { ok: response.ok, status: response.status, payload };
  }

  /* DRF errors are {field: [msg]} or nested {parameters: {fast: [msg]}}: one line each. */
  function errorLines(payload, prefix) {
    if (!payload) return ["Request failed."];
    if (typeof payload === "string") return [(prefix ? prefix + ": " : "") + payload];
    if (Array.isArray(payload)) return payload.flatMap(p => errorLines(p, prefix));
    return Object.entries(payload).flatMap(([k, v]) =>
      errorLines(v, k === "detail" || k === "non_field_errors" ? prefix : (prefix ? prefix + "." + k : k)));
  }

  const toInput = iso => iso ? iso.slice(0, 16) : "";
  const fromInput = value => value ? value + ":00Z" : null;  // the inputs are UTC

  function socketUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  /* Live progress: the server sends the current state on connect, then progress, then final. */
  function follow(path, onMessage) {
    let socket, closedByUs = false, retries = 0;
    function open() {
      socket = new WebSocket(socketUrl(path));
      socket.onmessage = event => {
        const message = JSON.parse(event.data);
        onMessage(message);
        if (message.type === "final") { closedByUs = true; socket.close(); }
      };
      socket.onclose = () => { if (!closedByUs && retries++ < 10) setTimeout(open, 1000 * retries); };
    }
    open();
  }

  function eta(seconds) {
    if (seconds === null || seconds === undefined) return "";
    return seconds < 60 ? ` · ~${Math.round(seconds)} s left` : ` · ~${Math.round(seconds / 60)} min left`;
  }

  /* The bar and the text come from the same message, so they always tell one story. Once
     the run has finished, Cancel goes at once (the reload that shows the results follows). */
  function liveSection(describe) {
    const live = document.getElementById("live");
    if (!live) return;
    const bar = document.getElementById("live-progress"), text = document.getElementById("live-text");
    follow(live.dataset.ws, message => {
      const finished = message.type === "final" || ["succeeded", "failed", "cancelled"].includes(message.status);
      bar.value = message.progress;
      text.textContent = describe(message);
      const status = document.querySelector("#run-status .status");
      if (status) { status.textContent = message.status; status.className = "status status-" + message.status; }
      if (finished) document.querySelectorAll("#cancel").forEach(button => { button.hidden = true; });
      if (message.type === "final") setTimeout(() => location.reload(), 300);
    });
  }

  function fillParams(fieldset, spec, values) {
    fieldset.querySelectorAll("label").forEach(n => n.remove());
    for (const param of spec.params || spec) {
      if (!param.name) continue;
      const label = document.createElement("label");
      label.textContent = param.name;
      label.title = param.help || "";
      const input = document.createElement("input");
      input.name = "param:" + param.name;
      input.dataset.type = param.type;
      if (param.type === "bool") { input.type = "checkbox"; input.checked = !!(values[param.name] ?? param.default); label.className = "check"; }
      else {
        input.type = "number";
        input.step = param.type === "int" ? "1" : "any";
        if (param.min !== null && param.min !== undefined) input.min = param.min;
        if (param.max !== null && param.max !== undefined) input.max = param.max;
        input.value = values[param.name] ?? param.default;
      }
      label.appendChild(input);
      fieldset.appendChild(label);
    }
  }

  function readParams(form) {
    const params = {};
    form.querySelectorAll("input[name^='param:']").forEach(input => {
      const name = input.name.slice(6);
      if (input.dataset.type === "bool") params[name] = input.checked;
      else if (input.value !== "") params[name] = Number(input.value);
    });
    return params;
  }

  function optional(form, names, body) {
    for (const name of names) {
      const input = form.elements[name];
      if (input && input.value !== "") body[name] = input.value;
    }
  }

  function specOf(data, kind) {
    const spec = data.kinds[kind] ? data.kinds[kind].spec : [];
    return Array.isArray(spec) ? spec : (spec.params || []);
  }

  function setupStrategyPicker(data, select, onPick) {
    for (const s of data.strategies) {
      const option = document.createElement("option");
      option.value = s.id;
      option.textContent = `${s.name} · ${s.kind} · ${s.symbol} ${s.timeframe}`;
      select.appendChild(option);
    }
    const pick = () => onPick(data.strategies.find(s => String(s.id) === select.value));
    select.addEventListener("change", pick);
    // "Backtest" on the strategies page links here with ?strategy=<id> preselected.
    const wanted = new URLSearchParams(location.search).get("strategy");
    if (wanted && data.strategies.some(s => String(s.id) === wanted)) select.value = wanted;
    if (data.strategies.length) pick();
  }

  function setRange(startInput, endInput, strategy) {
    startInput.value = toInput(strategy.first_bar);
    // The end is exclusive: one minute past the last bar's open time includes it.
    endInput.value = strategy.last_bar ? toInput(new Date(Date.parse(strategy.last_bar) + 60000).toISOString()) : "";
  }

  function home(data) {
    const form = document.getElementById("backtest-form");
    const hint = document.getElementById("bt-strategy-hint");
    setupStrategyPicker(data, document.getElementById("bt-strategy"), strategy => {
      if (!strategy) return;
      const kind = data.kinds[strategy.kind];
      hint.textContent = kind ? kind.description : "";
      if (!strategy.first_bar) hint.textContent += " (no candles stored for this instrument and timeframe yet)";
      fillParams(document.getElementById("bt-params"), specOf(data, strategy.kind), strategy.parameters || {});
      setRange(document.getElementById("bt-start"), document.getElementById("bt-end"), strategy);
    });
    form.addEventListener("submit", async event => {
      event.preventDefault();
      const button = document.getElementById("bt-submit"), errors = document.getElementById("bt-errors");
      errors.textContent = ""; button.disabled = true;
      const body = {
        strategy: Number(form.elements.strategy.value),
        start: fromInput(form.elements.start.value), end: fromInput(form.elements.end.value),
        parameters: readParams(form), use_cache: form.elements.use_cache.checked,
        allow_short: form.elements.allow_short.checked,
      };
      optional(form, ["initial_capital", "fee_rate", "slippage_bps", "stop_loss_pct", "take_profit_pct"], body);
      const result = await api("POST", "/api/v1/backtests/", body);
      button.disabled = false;
      if (result.ok) location.href = `/lab/runs/${result.payload.id}/`;
      else errors.textContent = errorLines(result.payload).join("\n");
    });

    // Rows still queued or running update in place.
    document.querySelectorAll("#runs tr[data-live='1']").forEach(row => {
      follow(`/ws/backtests/${row.dataset.run}/`, message => {
        const cell = row.querySelector(".run-status");
        if (message.type === "final") { setTimeout(() => location.reload(), 300); return; }
        cell.innerHTML = `<span class="status status-${message.status}">${message.status}</span> <progress max="100" value="${message.progress}"></progress>`;
      });
    });
  }

  window.Lab = { api, errorLines, follow, eta, liveSection, home };

  // Start the page's behaviour from <body data-page>: the Content-Security-Policy allows no
  // inline script, so the templates say which page they are instead of calling Lab.*().
  // Pages with their own script (lab/run_page.js, lab/sweep_page.js) start themselves.
  const page = document.body.dataset.page;
  if (page === "home") home(JSON.parse(document.getElementById("lab-data").textContent));
})();
