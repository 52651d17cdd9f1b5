/* The lab's backtest run page.

   While the run is queued or running: live progress, whose text names the phase the bar is
   in (loading candles, simulating, saving) with that phase's own counter.

   Once it has succeeded: one plotly figure on a shared time axis (price with the strategy's
   own lines and the trades, an oscillator pane when the strategy has one, equity against
   buy and hold, drawdown), fed window by window from the chart API: every zoom or pan asks
   for the visible range, which the server merges into at most MAX_BARS candles, so zooming
   in ends on single bars. And the trades table, page by page from the trades API; clicking
   a trade moves the chart to it.

   Shared helpers come from lab.js (window.Lab) and plot.js (window.TradelabPlot). */
(function () {
  "use strict";
  const { api, errorLines, liveSection, eta } = window.Lab;

  const MAX_BARS = 1500;
  const TRADES_PER_PAGE = 100;
  const REFETCH_DELAY_MS = 250;
  // SVG traces, not scattergl: the WebGL traces of the plotly.js bundle in the plotly wheel
  // compile their shaders with Function(), which the Content-Security-Policy refuses (no
  // 'unsafe-eval'), and then draw nothing.
  const LINES = "scatter";
  const TIMEFRAME_MS = { "1m": 60e3, "5m": 300e3, "15m": 900e3, "30m": 1800e3, "1h": 3600e3, "4h": 14400e3, "1d": 86400e3 };

  const count = n => Number(n).toLocaleString("en-US");
  /* Prices in full: grouped thousands, every significant digit, never "22.1k". */
  const price = v => v === null || v === undefined ? "—" : v.toLocaleString("en-US", { maximumSignificantDigits: 12 });
  const money = v => v === null || v === undefined ? "—" : v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const percent = v => v === null || v === undefined ? "—" : v.toFixed(2) + "%";

  // --- Live progress --------------------------------------------------------------------

  function describe(m) {
    const overall = ` (${m.progress.toFixed(0)}% overall)`;
    if (m.type === "final" || ["succeeded", "failed", "cancelled"].includes(m.status)) {
      return m.status === "succeeded" ? "Finished: loading the results…" : `The run ${m.status}.`;
    }
    switch (m.phase) {
      case "queued": return "Waiting for a worker…";
      case "loading candles":
        return `Loading candles · ${count(m.phase_done)} / ${count(m.phase_total)} candles${overall}${eta(m.eta_seconds)}`;
      case "training models":
        return `Training models · ${count(m.phase_done)} / ${count(m.phase_total)} folds${overall}${eta(m.eta_seconds)}`;
      case "simulating":
        return `Simulating · ${count(m.phase_done)} / ${count(m.phase_total)} bars${overall}${eta(m.eta_seconds)}`;
      case "saving": return `Saving the results${overall}`;
      default: return `${m.progress.toFixed(1)}%`;
    }
  }

  function live(pk) {
    liveSection(describe);
    const cancel = document.getElementById("cancel");
    if (cancel) cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      const result = await api("POST", `/api/v1/backtests/${pk}/cancel/`);
      if (result.ok || result.status === 409) location.reload();
      else cancel.disabled = false;
    });
  }

  // --- Times between plotly, the API and people -------------------------------------------

  /* plotly's date strings ("2024-01-03 12:34:56.789") carry no zone; ours are UTC. */
  function toMs(value) {
    if (typeof value === "number") return value;
    let text = String(value).trim().replace("T", " ").replace("Z", "");
    if (text.length <= 10) text += " 00:00";
    return Date.parse(text.slice(0, 23).replace(" ", "T") + "Z");
  }
  const plotlyDate = ms => new Date(ms).toISOString().replace("T", " ").replace("Z", "");
  const when = iso => iso ? window.TradelabPlot.fmtDate(iso) : "—";

  // --- The chart ------------------------------------------------------------------------

  function chart(node) {
    const P = window.TradelabPlot, C = P.COLORS;
    const scale = document.getElementById("chart-scale");
    const truncated = document.getElementById("chart-truncated");
    const errors = document.getElementById("chart-errors");
    const runStart = Date.parse(node.dataset.runStart), runEnd = Date.parse(node.dataset.runEnd);
    const config = Object.assign({}, P.CONFIG, { doubleClick: "autosize" });
    let visible = null;      // [ms, ms] shown, or null for the whole run
    let selected = null;     // the trade picked in the table, highlighted on the chart
    let latest = null;       // the last window drawn
    let sequence = 0, timer = null, listening = false;

    async function load(range) {
      const mine = ++sequence;
      const query = new URLSearchParams({ max_bars: String(MAX_BARS) });
      if (range) {
        // A quarter of the width either side, so a small pan has candles to show at once.
        const pad = (range[1] - range[0]) / 4;
        query.set("start", new Date(Math.max(range[0] - pad, runStart)).toISOString());
        query.set("end", new Date(Math.min(range[1] + pad, runEnd)).toISOString());
      }
      scale.textContent = "Loading…";
      node.setAttribute("aria-busy", "true");
      const result = await api("GET", `${node.dataset.url}?${query}`);
      if (mine !== sequence) return;  // a newer zoom has already asked for another window
      node.removeAttribute("aria-busy");
      if (!result.ok) {
        errors.textContent = errorLines(result.payload).join("\n");
        scale.textContent = "";
        return;
      }
      errors.textContent = "";
      visible = range;
      draw(result.payload);
    }

    function schedule(range) {
      clearTimeout(timer);
      timer = setTimeout(() => load(range), REFETCH_DELAY_MS);
    }

    function tradeText(t) {
      const side = t.direction === "long" ? "Long" : "Short";
      const exit = t.is_open ? `still open at ${when(t.exit_time)}, marked at ${price(t.exit_price)}`
        : `exit ${when(t.exit_time)} at ${price(t.exit_price)} (${t.exit_reason})`;
      return `${side} #${t.id}<br>entry ${when(t.entry_time)} at ${price(t.entry_price)}<br>${exit}` +
        `<br>PnL ${money(t.pnl)} (${percent(t.pnl_pct)})`;
    }

    function markers(trades) {
      const groups = {
        long: { name: "long entry", symbol: "triangle-up", color: C.accent, x: [], y: [], text: [] },
        short: { name: "short entry", symbol: "triangle-down", color: C.warn, x: [], y: [], text: [] },
        win: { name: "exit, profit", symbol: "circle", color: C.good, x: [], y: [], text: [] },
        loss: { name: "exit, loss", symbol: "circle", color: C.bad, x: [], y: [], text: [] },
        open: { name: "open at the end", symbol: "circle-open", color: C.muted, x: [], y: [], text: [] },
      };
      const links = { x: [], y: [] };
      for (const t of trades) {
        const text = tradeText(t);
        const entry = groups[t.direction === "short" ? "short" : "long"];
        entry.x.push(t.entry_time); entry.y.push(t.entry_price); entry.text.push(text);
        if (t.exit_time !== null && t.exit_price !== null) {
          const exit = groups[t.is_open ? "open" : (t.pnl >= 0 ? "win" : "loss")];
          exit.x.push(t.exit_time); exit.y.push(t.exit_price); exit.text.push(text);
          links.x.push(t.entry_time, t.exit_time, null); links.y.push(t.entry_price, t.exit_price, null);
        }
      }
      const traces = [{
        type: LINES, mode: "lines", x: links.x, y: links.y, xaxis: "x", yaxis: "y",
        line: { color: "rgba(102,118,138,0.45)", width: 1 }, hoverinfo: "skip", showlegend: false,
      }];
      for (const g of Object.values(groups)) {
        traces.push({
          type: LINES, mode: "markers", name: g.name, x: g.x, y: g.y, text: g.text, xaxis: "x", yaxis: "y",
          marker: { symbol: g.symbol, size: 9, color: g.color, line: { width: 1, color: g.color } },
          hovertemplate: "%{text}<extra></extra>",
        });
      }
      return traces;
    }

    function draw(view) {
      latest = view;
      const c = view.candles;
      const priceLines = view.overlays.filter(o => o.axis === "price");
      const oscillators = view.overlays.filter(o => o.axis === "oscillator");
      const traces = [{
        type: "candlestick", name: view.bucket_bars > 1 ? `price (${view.bucket_bars} bars per candle)` : "price",
        x: c.ts, open: c.open, high: c.high, low: c.low, close: c.close, xaxis: "x", yaxis: "y",
        increasing: { line: { color: C.good, width: 1 } }, decreasing: { line: { color: C.bad, width: 1 } },
        showlegend: false,
      }];
      priceLines.forEach((line, i) => traces.push({
        type: LINES, mode: "lines", name: line.name, x: c.ts, y: line.values, xaxis: "x", yaxis: "y",
        line: { width: 1.3, color: C.series[(i + 1) % C.series.length] },
        hovertemplate: `${line.name}: %{y:,.10~g}<extra></extra>`,
      }));
      traces.push(...markers(view.trades));
      oscillators.forEach((line, i) => traces.push({
        type: LINES, mode: "lines", name: line.name, x: c.ts, y: line.values, xaxis: "x", yaxis: "y4",
        line: { width: 1.2, color: C.series[(i + 3) % C.series.length] },
        hovertemplate: `${line.name}: %{y:,.4~g}<extra></extra>`,
      }));
      const curves = view.curves;
      traces.push(
        { type: LINES, mode: "lines", name: "equity", x: curves.ts, y: curves.equity, xaxis: "x", yaxis: "y2",
          line: { color: C.accent, width: 1.5 }, hovertemplate: "equity %{y:,.2f}<extra></extra>" },
        { type: LINES, mode: "lines", name: "buy and hold", x: curves.ts, y: curves.buy_hold, xaxis: "x", yaxis: "y2",
          line: { color: C.muted, width: 1, dash: "dash" }, hovertemplate: "buy and hold %{y:,.2f}<extra></extra>" },
        { type: LINES, mode: "lines", name: "drawdown", x: curves.ts, y: curves.drawdown_pct, xaxis: "x", yaxis: "y3",
          fill: "tozeroy", line: { color: C.bad, width: 1 }, fillcolor: "rgba(210,65,58,0.15)",
          hovertemplate: "drawdown %{y:.2f}%<extra></extra>" },
      );

      const base = P.layout();
      const spikes = { showspikes: true, spikemode: "across", spikesnap: "cursor", spikethickness: 1, spikecolor: C.muted, spikedash: "dot" };
      const priceFrom = oscillators.length ? 0.52 : 0.42;
      // Each draw's axes follow the window asked for (a new uirevision per draw), while the
      // legend keeps the lines the researcher switched off.
      const revision = sequence;
      const axis = (domain, title, extra) => Object.assign({}, base.yaxis, spikes,
        { domain, title: { text: title }, automargin: true, uirevision: revision }, extra || {});
      const shapes = [];
      if (selected) {
        shapes.push({ type: "rect", xref: "x", yref: "paper", x0: selected.entry_time, x1: selected.exit_time || selected.entry_time,
          y0: 0, y1: 1, fillcolor: "rgba(47,111,208,0.12)", line: { width: 1, color: "rgba(47,111,208,0.5)" }, layer: "below" });
      }
      const layout = Object.assign(base, {
        height: oscillators.length ? 900 : 780,
        hovermode: "closest",
        uirevision: "run",
        margin: { l: 72, r: 16, t: 24, b: 36 },
        shapes,
        xaxis: Object.assign({}, base.xaxis, spikes, {
          anchor: "y3", rangeslider: { visible: false }, uirevision: revision,
          autorange: visible === null, range: visible ? visible.map(plotlyDate) : undefined,
        }),
        yaxis: axis([priceFrom, 1], "Price", { hoverformat: ",.10~g", autorange: true }),
        yaxis2: axis([0.19, priceFrom - (oscillators.length ? 0.17 : 0.04)], "Equity", { hoverformat: ",.2f", autorange: true }),
        yaxis3: axis([0, 0.15], "Drawdown %", { ticksuffix: "%", autorange: true }),
      });
      if (oscillators.length) layout.yaxis4 = axis([priceFrom - 0.14, priceFrom - 0.03], "Indicator", { autorange: true });
      return Plotly.react(node, traces, layout, config).then(() => {
        // plotly gives the node its .on() with the first plot.
        if (!listening) { node.on("plotly_relayout", onRelayout); listening = true; }
        node.dataset.bucketBars = String(view.bucket_bars);
        const bars = view.bucket_bars === 1 ? "1 bar" : `${count(view.bucket_bars)} bars`;
        scale.textContent = `1 candle = ${bars} of ${view.timeframe} · ${count(view.bars)} bars loaded, ` +
          `${when(view.start)} → ${when(view.end)}`;
        truncated.hidden = !view.trades_truncated;
        truncated.textContent = view.trades_truncated
          ? `This window holds more than ${count(view.trades.length)} trades: only the first ${count(view.trades.length)} are marked. Zoom in to see the others.`
          : "";
      });
    }

    function onRelayout(event) {
      let range;
      if ("xaxis.range[0]" in event && "xaxis.range[1]" in event) range = [toMs(event["xaxis.range[0]"]), toMs(event["xaxis.range[1]"])];
      else if (Array.isArray(event["xaxis.range"])) range = event["xaxis.range"].map(toMs);
      else if (event["xaxis.autorange"] === true) range = null;
      else return;  // a resize, a legend click: the window has not moved
      if (range && !(range[1] > range[0])) return;
      schedule(range);
    }
    document.getElementById("chart-reset").addEventListener("click", () => { selected = null; load(null); });

    /* Move the chart to a trade: its entry to its exit, with room either side, then load
       that window (the relayout event asks for it). */
    function focus(trade) {
      selected = trade;
      const entry = Date.parse(trade.entry_time);
      const exit = trade.exit_time ? Date.parse(trade.exit_time) : entry;
      const bar = TIMEFRAME_MS[latest ? latest.timeframe : ""] || 60e3;
      const pad = Math.max((exit - entry) / 2, 20 * bar);
      Plotly.relayout(node, { "xaxis.autorange": false, "xaxis.range": [plotlyDate(entry - pad), plotlyDate(exit + pad)] });
    }

    load(null);
    return { focus };
  }

  // --- The trades table -----------------------------------------------------------------

  function tradesTable(table, onPick) {
    const body = table.querySelector("tbody");
    const prev = document.getElementById("trades-prev"), next = document.getElementById("trades-next");
    const label = document.getElementById("trades-page");
    const total = Number(document.getElementById("trades-count").dataset.count);
    let page = 0, links = { next: null, previous: null }, pickedId = null;

    function row(t) {
      const tr = document.createElement("tr");
      tr.dataset.trade = t.id;
      tr.tabIndex = 0;
      const sign = t.pnl >= 0 ? "pos" : "neg";
      const cells = [
        [t.direction], [when(t.entry_time)], [price(t.entry_price), "num"],
        [t.is_open ? "open" : when(t.exit_time)], [price(t.exit_price), "num"],
        [money(t.pnl), "num " + sign], [percent(t.pnl_pct), "num " + sign],
        [t.exit_reason + (t.is_open ? " (still open)" : "")],
      ];
      for (const [text, cls] of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      if (t.id === pickedId) tr.classList.add("selected");
      const pick = () => {
        pickedId = t.id;
        body.querySelectorAll("tr.selected").forEach(other => other.classList.remove("selected"));
        tr.classList.add("selected");
        onPick(t);
      };
      tr.addEventListener("click", pick);
      tr.addEventListener("keydown", event => { if (event.key === "Enter") pick(); });
      return tr;
    }

    async function show(url) {
      prev.disabled = next.disabled = true;
      const result = await api("GET", url);
      if (!result.ok) { label.textContent = errorLines(result.payload).join(" "); return; }
      links = { next: result.payload.next, previous: result.payload.previous };
      body.replaceChildren(...result.payload.results.map(row));
      const first = page * TRADES_PER_PAGE;
      label.textContent = result.payload.results.length
        ? `${count(first + 1)}–${count(first + result.payload.results.length)} of ${count(total)}`
        : "No trades.";
      prev.disabled = !links.previous;
      next.disabled = !links.next;
    }

    next.addEventListener("click", () => { if (links.next) { page += 1; show(links.next); } });
    prev.addEventListener("click", () => { if (links.previous) { page -= 1; show(links.previous); } });
    show(`${table.dataset.url}?limit=${TRADES_PER_PAGE}`);
  }

  function results() {
    const node = document.getElementById("run-chart");
    if (!node) return;
    const figure = window.Plotly ? chart(node) : null;
    const table = document.getElementById("trades");
    if (table) tradesTable(table, trade => { if (figure) figure.focus(trade); });
  }

  live(Number(document.body.dataset.run));
  results();
})();
