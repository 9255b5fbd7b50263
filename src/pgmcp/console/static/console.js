// pgmcp console: polls the read-only JSON API under /console/api/ and draws with uPlot.
// Every value from the server goes into the page as text (textContent), never as HTML.
"use strict";
(function () {
  const API = "/console/api/";
  const REFRESH_MS = 5000;
  const state = { charts: {}, refreshes: 0, last: {}, timer: null, openRows: new Set() };
  window.pgmcpConsole = state; // for people poking around (and the browser test)

  const $ = (sel) => document.querySelector(sel);
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c === null || c === undefined ? "" : c instanceof Node ? c : String(c));
    return node;
  }
  const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");
  const ms = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(v < 10 ? 2 : 1));
  const pct = (v) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(1)} %`);

  async function getJSON(path) {
    const response = await fetch(API + path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) {
      window.location.reload(); // the session ended: the page comes back as the login form
      throw new Error("logged out");
    }
    const body = await response.json();
    return body;
  }

  function showError(message) {
    const box = $("#error");
    box.hidden = !message;
    box.textContent = message || "";
  }

  // --- overview ---------------------------------------------------------------
  function renderOverview(o) {
    const status = $("#status");
    status.dataset.status = o.status;
    status.textContent = o.status;
    $("#version").textContent = o.version ? `v${o.version}` : "";
    $("#logout-form").hidden = !o.auth_required;
    const sys = $("#system");
    sys.replaceChildren(
      stat("memory", pct(o.system.memory_percent)),
      stat("CPU", pct(o.system.cpu_percent)),
      stat("disk", pct(o.system.disk_percent)),
      stat("uptime", `${Math.round(o.uptime_seconds)} s`)
    );
    $("#health-warnings").replaceChildren(...o.warnings.map((w) => el("li", {}, w)));
    const m = o.metrics;
    $("#totals").replaceChildren(
      stat("total", m.total_queries, "total_queries"),
      stat("successful", m.successful_queries, "successful_queries"),
      stat("failed", m.failed_queries, "failed_queries"),
      stat("blocked", m.blocked_queries, "blocked_queries"),
      stat("slow", m.slow_queries, "slow_queries"),
      stat("avg ms", ms(m.avg_query_time_ms), "avg_query_time_ms"),
      stat("p95 ms", ms(m.p95_query_time_ms), "p95_query_time_ms")
    );
    $("#connections").replaceChildren(...o.connections.map(card));
    $("#slow-threshold").textContent = `(over ${o.settings.slow_query_threshold_ms} ms)`;
    $("#logging-note").hidden = o.settings.enable_query_logging;
    const select = $("#filters select[name=connection_id]");
    const have = new Set([...select.options].map((x) => x.value));
    for (const c of o.connections) if (!have.has(c.connection_id)) select.append(el("option", { value: c.connection_id }, c.connection_id));
    const tools = $("#tools");
    const known = new Set([...tools.options].map((x) => x.value));
    for (const t of Object.keys(m.tool_calls || {})) if (!known.has(t)) tools.append(el("option", { value: t }));
  }

  function stat(label, value, key) {
    return el("div", { class: "stat", "data-key": key }, el("b", {}, value), el("span", { class: "muted" }, label));
  }

  function card(c) {
    const health = c.is_healthy === true ? "healthy" : c.is_healthy === false ? "down" : "unknown";
    const label = c.is_healthy === null ? "not probed yet" : health;
    const p = c.pool;
    return el(
      "div",
      { class: "card", "data-connection": c.connection_id, "data-health": health },
      el("h3", {}, c.connection_id, el("span", { class: "badge", "data-status": health }, label), c.readonly ? el("span", { class: "muted small" }, "read-only") : ""),
      el(
        "dl",
        {},
        el("dt", {}, "database"), el("dd", {}, `${c.user}@${c.host}:${c.port}/${c.database}`),
        el("dt", {}, "latency"), el("dd", {}, c.latency_ms === null ? "–" : `${ms(c.latency_ms)} ms`),
        el("dt", {}, "server"), el("dd", {}, c.server_version || "–"),
        el("dt", {}, "pool"), el("dd", { "data-key": "pool" }, `${p.in_use} in use / ${p.open} open / ${p.max} max${p.waiting ? `, ${p.waiting} waiting` : ""}`),
        c.error ? el("dt", {}, "error") : "", c.error ? el("dd", { class: "error" }, c.error) : ""
      ),
      c.warnings.length ? el("ul", { class: "warnings" }, ...c.warnings.map((w) => el("li", {}, w))) : ""
    );
  }

  // --- charts -----------------------------------------------------------------
  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function chartData(ts) {
    const pools = Object.keys(ts.pools).sort();
    return {
      calls: { series: [["ok", "--s-ok"], ["errors", "--s-err"]], data: [ts.t, ts.ok, ts.errors] },
      latency: { series: [["p50", "--s-p50"], ["p95", "--s-p95"]], data: [ts.t, ts.p50_ms, ts.p95_ms], zeroIsPoint: true },
      blocked: { series: [["blocked", "--s-blocked"]], data: [ts.t, ts.blocked] },
      pools: {
        series: pools.flatMap((cid, i) => {
          const color = ["--s-p50", "--s-ok", "--s-p95", "--s-blocked", "--s-err"][i % 5];
          return [[`${cid} in use`, color], [`${cid} open`, color, [4, 4]]];
        }),
        data: [ts.t, ...pools.flatMap((cid) => [ts.pools[cid].in_use, ts.pools[cid].open])],
        zeroIsPoint: true,
      },
    };
  }

  function drawCharts(ts) {
    const all = chartData(ts);
    for (const [name, spec] of Object.entries(all)) {
      const figure = document.getElementById(`chart-${name}`);
      const plot = figure.querySelector(".plot");
      const key = spec.series.map((s) => s[0]).join("|") + "|" + (state.theme || "");
      let chart = state.charts[name];
      if (!chart || chart._key !== key) {
        if (chart) chart.destroy();
        plot.replaceChildren();
        chart = new uPlot(options(spec, plot.clientWidth || 300), spec.data, plot);
        chart._key = key;
        state.charts[name] = chart;
      } else {
        chart.setData(spec.data);
      }
      // How many values the chart has drawn, for a person or a test to check.
      let points = 0;
      // Rates count where they are above zero; latency and pools wherever there is a value.
      for (const column of spec.data.slice(1)) for (const v of column) if (v !== null && (spec.zeroIsPoint || v !== 0)) points += 1;
      plot.dataset.points = String(points);
    }
  }

  function clockTicks(u, splits, axisIdx, space, step) {
    const opts = { hour: "2-digit", minute: "2-digit", hourCycle: "h23", ...(step < 60 ? { second: "2-digit" } : {}) };
    return splits.map((v) => new Date(v * 1000).toLocaleTimeString([], opts));
  }

  function options(spec, width) {
    const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--grid"), width: 1 }, ticks: { stroke: cssVar("--grid") } };
    return {
      width: Math.max(width, 200),
      height: 200,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, Math.max(hi || 0, 1) * 1.1] } },
      // One line of local clock time per tick (uPlot's default adds a second line with the date).
      axes: [{ ...axis, space: width < 500 ? 55 : 80, size: 32, values: clockTicks }, { ...axis, size: 48 }],
      series: [
        {},
        // Rates are a line (zero where nothing happened); latency and pools are sparse: points too.
        ...spec.series.map(([label, color, dash]) => ({
          label, stroke: cssVar(color), width: 2, dash, spanGaps: false,
          points: { show: spec.zeroIsPoint ? true : (u, seriesIdx, i0, i1) => i1 - i0 < 40, size: 5 },
        })),
      ],
    };
  }

  const resize = new ResizeObserver(() => {
    for (const [name, chart] of Object.entries(state.charts)) {
      const plot = document.querySelector(`#chart-${name} .plot`);
      if (plot && plot.clientWidth && Math.abs(chart.width - plot.clientWidth) > 4) chart.setSize({ width: plot.clientWidth, height: 200 });
    }
  });
  document.querySelectorAll(".plot").forEach((p) => resize.observe(p));
  const dark = window.matchMedia("(prefers-color-scheme: dark)");
  state.theme = dark.matches ? "dark" : "light";
  dark.addEventListener("change", () => {
    state.theme = dark.matches ? "dark" : "light";
    if (state.last.timeseries) drawCharts(state.last.timeseries);
  });

  // --- tables -----------------------------------------------------------------
  function statement(text, truncated) {
    if (text === null || text === undefined) return el("span", { class: "muted" }, "(not kept)");
    return el("code", {}, truncated ? `${text}…` : text);
  }

  function renderBlocked(b) {
    const body = $("#blocked tbody");
    body.replaceChildren(
      ...b.blocked.map((r) =>
        el("tr", { "data-reason": r.reason }, el("td", {}, time(r.timestamp)), el("td", {}, r.connection_id), el("td", {}, r.tool || ""),
          el("td", {}, el("code", {}, r.reason)), el("td", { class: "message" }, r.message), el("td", { class: "stmt" }, statement(r.query)))
      )
    );
    $("#blocked-empty").hidden = b.blocked.length > 0;
  }

  function renderSlow(s) {
    const body = $("#slow tbody");
    body.replaceChildren(
      ...s.queries.map((r) =>
        el("tr", { "data-id": r.id }, el("td", {}, time(r.timestamp)), el("td", {}, r.connection_id), el("td", {}, r.tool || ""),
          el("td", { class: "num" }, ms(r.duration_ms)), el("td", { class: "stmt" }, statement(r.query, r.query_truncated)),
          el("td", {}, r.explainable ? el("button", { type: "button", class: "link explain", onclick: () => explain(r.id) }, "show plan") : el("span", { class: "muted" }, "–")))
      )
    );
    $("#slow-empty").hidden = s.queries.length > 0;
  }

  function renderHistory(h) {
    const body = $("#history tbody");
    const rows = [];
    for (const r of h.queries) {
      const outcome = r.success ? "success" : r.error_type || "error";
      rows.push(
        el("tr", { class: "row", "data-id": r.id, onclick: () => toggle(r.id) },
          el("td", {}, time(r.timestamp)), el("td", {}, r.connection_id), el("td", {}, r.tool || ""), el("td", {}, r.query_type),
          el("td", { class: "num" }, ms(r.duration_ms)), el("td", { class: "num" }, r.row_count ?? "–"),
          el("td", { class: r.success ? "outcome-success" : "outcome-error" }, outcome), el("td", {}, r.principal || ""),
          el("td", { class: "stmt" }, statement(r.query, r.query_truncated)))
      );
      if (state.openRows.has(r.id)) rows.push(detailRow(r.id));
    }
    body.replaceChildren(...rows);
    $("#history-empty").hidden = h.queries.length > 0;
  }

  const details = new Map(); // id -> entry (full statement), fetched once
  function detailRow(id) {
    const cell = el("td", { colspan: "9" }, el("span", { class: "muted" }, "loading…"));
    const row = el("tr", { class: "detail", "data-detail": id }, cell);
    const fill = (entry) => {
      const q = entry.query;
      cell.replaceChildren(
        q === null ? el("p", { class: "muted" }, "The statement is not kept (ENABLE_QUERY_LOGGING=false).") : el("pre", {}, q),
        el("div", { class: "muted small" },
          `rows ${entry.row_count ?? "–"} · ${ms(entry.duration_ms)} ms · ${entry.success ? "success" : entry.error_type || "error"} · caller ${entry.principal || "unknown"} · ${entry.timestamp}`),
        entry.explainable ? el("button", { type: "button", class: "link", onclick: (e) => { e.stopPropagation(); explain(id); } }, "show plan") : ""
      );
    };
    if (details.has(id)) fill(details.get(id));
    else getJSON(`queries/${id}`).then((r) => {
      if (r.success) { details.set(id, r.query); fill(r.query); }
      else cell.replaceChildren(el("span", { class: "muted" }, r.error));
    }).catch(() => {});
    return row;
  }

  function toggle(id) {
    if (state.openRows.has(id)) state.openRows.delete(id);
    else state.openRows.add(id);
    if (state.last.history) renderHistory(state.last.history);
  }

  // --- plans ------------------------------------------------------------------
  function planLines(node, depth, out) {
    const what = [node["Node Type"], node["Relation Name"] ? `on ${node["Schema"] ? node["Schema"] + "." : ""}${node["Relation Name"]}` : ""].join(" ").trim();
    out.push(`${"  ".repeat(depth)}${depth ? "-> " : ""}${what}  (cost=${node["Startup Cost"]}..${node["Total Cost"]} rows=${node["Plan Rows"]})`);
    if (node["Filter"]) out.push(`${"  ".repeat(depth + 2)}Filter: ${node["Filter"]}`);
    for (const child of node["Plans"] || []) planLines(child, depth + 1, out);
    return out;
  }

  async function explain(id) {
    const panel = $("#plan");
    panel.hidden = false;
    $("#plan-title").textContent = `query ${id}: loading…`;
    $("#plan-warnings").replaceChildren();
    $("#plan-text").textContent = "";
    const r = await getJSON(`explain?id=${encodeURIComponent(id)}`);
    if (!r.success) {
      $("#plan-title").textContent = `query ${id}`;
      $("#plan-text").textContent = `${r.error_type}: ${r.error}`;
      panel.dataset.state = "error";
      return;
    }
    const doc = Array.isArray(r.plan) ? r.plan[0] : r.plan;
    $("#plan-title").textContent = `query ${id} on ${r.connection_id} · total cost ${r.summary.total_cost} · EXPLAIN without ANALYZE`;
    $("#plan-warnings").replaceChildren(...r.warnings.map((w) => el("li", {}, w)));
    $("#plan-text").textContent = `${r.query}\n\n${planLines(doc.Plan, 0, []).join("\n")}\n\n${JSON.stringify(r.plan, null, 2)}`;
    panel.dataset.state = "shown";
    panel.scrollIntoView({ block: "nearest" });
  }
  $("#plan-close").addEventListener("click", () => { $("#plan").hidden = true; });

  // --- refresh loop -------------------------------------------------------------
  function filterQuery() {
    const form = new FormData($("#filters"));
    const params = new URLSearchParams();
    for (const [k, v] of form) if (String(v).trim() !== "") params.set(k, String(v).trim());
    params.set("limit", "200");
    return params.toString();
  }

  async function refresh() {
    try {
      const [overview, timeseries, blocked, slow, history] = await Promise.all([
        getJSON("overview"), getJSON(`timeseries?window_seconds=${$("#window").value}`), getJSON("blocked"), getJSON("slow"), getJSON(`queries?${filterQuery()}`),
      ]);
      Object.assign(state.last, { overview, timeseries, blocked, slow, history });
      const failed = [overview, timeseries, blocked, slow, history].find((x) => !x.success);
      showError(failed ? `${failed.error_type}: ${failed.error}` : "");
      if (overview.success) renderOverview(overview);
      if (timeseries.success) drawCharts(timeseries);
      if (blocked.success) renderBlocked(blocked);
      if (slow.success) renderSlow(slow);
      if (history.success) renderHistory(history);
      state.refreshes += 1;
      $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
      document.body.dataset.refreshes = String(state.refreshes);
    } catch (err) {
      if (String(err && err.message) !== "logged out") showError(`Could not reach the server: ${err}`);
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    state.timer = setTimeout(async () => {
      if ($("#live").checked && !document.hidden) await refresh();
      schedule();
    }, REFRESH_MS);
  }

  let debounce = null;
  $("#filters").addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(async () => {
      const h = await getJSON(`queries?${filterQuery()}`);
      state.last.history = h;
      if (h.success) renderHistory(h);
      else showError(`${h.error_type}: ${h.error}`);
    }, 250);
  });
  $("#filters").addEventListener("submit", (e) => e.preventDefault());
  $("#window").addEventListener("change", refresh);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });

  refresh().then(schedule);
})();
