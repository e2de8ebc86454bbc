// xivo-bus management dashboard: one page over RabbitMQ's management HTTP API (/api/...).
// Plain JavaScript, no build step, nothing fetched from elsewhere: the charts are uPlot,
// vendored in static/vendor/. Every text that comes from the API (names of queues,
// exchanges, connections, payloads...) goes into the DOM as text nodes, never as HTML.

const POLL_MS = 2000; // how often /api/overview (and the open view) is read
const HISTORY_S = 300; // the charts keep this many seconds of samples
const CREDENTIALS = "xivo-bus.dashboard.credentials"; // sessionStorage key

// ---------------------------------------------------------------- small DOM helpers

const $ = (id) => document.getElementById(id);

/** An element: ``h("a", {href: "#/", class: "x", onclick: f}, "text", child, ...)``.
 * Strings become text nodes (never parsed as HTML); null/false children are skipped. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style")
      Object.assign(el.style, value); // an object: no inline CSS text
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// ---------------------------------------------------------------- formatting

const numberFormat = new Intl.NumberFormat("en");

function count(value) {
  return typeof value === "number" ? numberFormat.format(value) : "–";
}

function rate(value) {
  if (typeof value !== "number") return "–";
  return `${value >= 10 || value === 0 ? Math.round(value) : value.toFixed(1)}/s`;
}

function bytesRate(value) {
  if (typeof value !== "number") return "–";
  const units = ["B/s", "kB/s", "MB/s", "GB/s"];
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

function when(milliseconds) {
  if (typeof milliseconds !== "number") return "–";
  const date = new Date(milliseconds);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? date.toLocaleTimeString() : date.toLocaleString();
}

/** A rate from a ``message_stats`` object: ``stats.<name>_details.rate``. */
function statRate(stats, name) {
  const details = stats && stats[`${name}_details`];
  return details && typeof details.rate === "number" ? details.rate : undefined;
}

function exchangeLabel(name) {
  return name === "" ? "(AMQP default)" : name;
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

function isEmptyObject(value) {
  return !value || (typeof value === "object" && Object.keys(value).length === 0);
}

// ---------------------------------------------------------------- the API

/** An HTTP error from the API, with RabbitMQ's ``{"error": ..., "reason": ...}``. */
class ApiError extends Error {
  constructor(status, error, reason) {
    super(reason || error);
    this.status = status;
    this.error = error;
    this.reason = reason;
  }

  get text() {
    if (this.status === 0) return this.reason;
    const code = `HTTP ${this.status}${this.error ? `, ${this.error}` : ""}`;
    return this.reason && this.reason !== this.error ? `${this.reason} (${code})` : code;
  }
}

function basicAuth({ user, password }) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return `Basic ${btoa(binary)}`;
}

/** A path segment: the vhost "/" is "%2F"; the default exchange "" is "amq.default". */
function seg(name, { exchange = false } = {}) {
  return exchange && name === "" ? "amq.default" : encodeURIComponent(name);
}

async function api(path, { method = "GET", body, headers = {}, credentials } = {}) {
  const init = {
    method,
    cache: "no-store",
    credentials: "omit", // only our Authorization header, never one the browser remembers
    headers: {
      // No "Accept: application/json": RabbitMQ answers 406 to it on DELETE .../contents.
      Authorization: basicAuth(credentials || state.credentials),
      "X-Requested-With": "XMLHttpRequest", // the server then sends no WWW-Authenticate
      ...headers,
    },
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`api${path}`, init);
  } catch (error) {
    throw new ApiError(0, "unreachable", `Cannot reach the server (${error.message}).`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    let error = response.statusText;
    let reason = typeof data === "string" ? data.trim() : "";
    if (data && typeof data === "object") {
      if (data.error !== undefined) error = String(data.error);
      if (data.reason !== undefined) {
        reason = typeof data.reason === "string" ? data.reason : JSON.stringify(data.reason);
      }
    }
    throw new ApiError(response.status, error, reason);
  }
  return data;
}

/** A list from the API, paginated (``{items: [...]}``) or not. */
function items(data) {
  if (Array.isArray(data)) return data;
  return data && Array.isArray(data.items) ? data.items : [];
}

// ---------------------------------------------------------------- state and session

const state = {
  credentials: null, // {user, password}, kept in sessionStorage only
  me: null, // /api/whoami
  admin: false,
  overview: null,
  view: null, // the mounted view: {el, refresh(overview), onSample(), destroy()}
  timer: null,
  ticking: false,
  flash: null, // {kind, text}: shown once by the next view
  history: { t: [], publish: [], deliver: [], ack: [], ready: [], unacked: [] },
};

const tableSettings = {}; // per table id: {sort, descending, filter}, kept across views

function storedCredentials() {
  try {
    const value = JSON.parse(sessionStorage.getItem(CREDENTIALS));
    return value && typeof value.user === "string" ? value : null;
  } catch {
    return null;
  }
}

function tagsOf(user) {
  const tags = user && user.tags;
  if (Array.isArray(tags)) return tags.map(String);
  return typeof tags === "string" && tags ? tags.split(",").map((t) => t.trim()) : [];
}

function showLogin(message) {
  stopPolling();
  state.credentials = null;
  state.me = null;
  sessionStorage.removeItem(CREDENTIALS);
  if (state.view) state.view.destroy?.();
  state.view = null;
  $("app").hidden = true;
  $("nav").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  const error = $("login-error");
  error.hidden = !message;
  error.textContent = message || "";
  const loopback = ["localhost", "127.0.0.1", "[::1]"].includes(location.hostname);
  $("login-hint").hidden = !loopback;
  $("login-password").value = "";
  $("login-user").focus();
}

async function startSession(credentials, me) {
  state.credentials = credentials;
  state.me = me;
  state.admin = tagsOf(me).includes("administrator");
  state.history = { t: [], publish: [], deliver: [], ack: [], ready: [], unacked: [] };
  $("login").hidden = true;
  $("app").hidden = false;
  $("nav").hidden = false;
  $("who").hidden = false;
  for (const link of document.querySelectorAll("[data-admin]")) link.hidden = !state.admin;
  const tags = tagsOf(me);
  replace(
    $("whoami"),
    h("span", { class: "user" }, me.name),
    tags.length ? h("span", { class: "muted" }, ` (${tags.join(", ")})`) : null,
  );
  route(false);
  tick();
}

async function logIn(event) {
  event.preventDefault();
  const credentials = { user: $("login-user").value, password: $("login-password").value };
  const button = event.target.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const me = await api("/whoami", { credentials });
    sessionStorage.setItem(CREDENTIALS, JSON.stringify(credentials));
    await startSession(credentials, me);
  } catch (error) {
    const error_ = $("login-error");
    error_.hidden = false;
    error_.textContent =
      error.status === 401 ? `Login refused: ${error.text}` : `Cannot log in: ${error.text}`;
    $("login-password").select();
  } finally {
    button.disabled = false;
  }
}

/** Handles an error of a background refresh or an action; false when it logged us out. */
function fails(error) {
  if (error instanceof ApiError && error.status === 401) {
    showLogin(`Your login was refused: ${error.text}. Please log in again.`);
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- live updates

function setStatus(kind, text) {
  $("status").className = `status ${kind}`;
  $("status-text").textContent = text;
}

function stopPolling() {
  clearTimeout(state.timer);
  state.timer = null;
}

function schedule() {
  stopPolling();
  if (state.credentials && !document.hidden) state.timer = setTimeout(tick, POLL_MS);
}

async function tick() {
  if (state.ticking || !state.credentials) return;
  state.ticking = true;
  const view = state.view;
  try {
    const overview = await api("/overview");
    state.overview = overview;
    record(overview);
    if (view && view === state.view) await view.refresh(overview);
    $("error").hidden = true;
    setStatus("live", "Live");
    $("status").title = `Updated at ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (fails(error)) {
      setStatus("down", error.status === 0 ? "Offline" : "Error");
      const where = view && view.title ? ` ${view.title.toLowerCase()}` : "";
      replace($("error"), h("strong", {}, `Could not refresh${where}: `), error.text || error);
      $("error").hidden = false;
    }
  } finally {
    state.ticking = false;
    schedule();
  }
}

document.addEventListener("visibilitychange", () => {
  if (!state.credentials) return;
  if (document.hidden) {
    stopPolling();
    setStatus("paused", "Paused");
  } else {
    tick();
  }
});

function record(overview) {
  const stats = overview.message_stats || {};
  const totals = overview.queue_totals || {};
  const history = state.history;
  const now = Date.now() / 1000;
  history.t.push(now);
  history.publish.push(statRate(stats, "publish") ?? 0);
  history.deliver.push(statRate(stats, "deliver_get") ?? 0);
  history.ack.push(statRate(stats, "ack") ?? 0);
  history.ready.push(totals.messages_ready ?? 0);
  history.unacked.push(totals.messages_unacknowledged ?? 0);
  while (history.t.length && history.t[0] < now - HISTORY_S) {
    for (const series of Object.values(history)) series.shift();
  }
  state.view?.onSample?.();
}

// ---------------------------------------------------------------- confirmation dialog

/** Asks before a destructive action: resolves to null (cancelled) or {reason}. */
function confirmAction({ title, text, ok, reason = false }) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  replace($("confirm-text"), text);
  $("confirm-ok").textContent = ok;
  $("confirm-reason-field").hidden = !reason;
  $("confirm-reason").value = "Closed from the management dashboard";
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => resolve(dialog.returnValue === "ok" ? { reason: $("confirm-reason").value } : null),
      { once: true },
    );
    dialog.showModal();
    (reason ? $("confirm-reason") : $("confirm-cancel")).focus();
  });
}

$("confirm-reason").addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    $("confirm-ok").click();
  }
});

// ---------------------------------------------------------------- tables

/** A sortable, optionally filterable table that keeps focus across live updates.
 * columns: [{key, label, value(row) for sorting, cell(row) -> node|string, num}] */
function dataTable({
  id,
  caption,
  columns,
  rowKey,
  noun,
  filter,
  onOpen,
  empty,
  sort,
  descending,
}) {
  const settings = (tableSettings[id] ||= {
    sort: sort || columns[0].key,
    descending: !!descending,
    filter: "",
  });
  let rows = null;
  let signature = null;

  const body = h("tbody");
  const summary = h("span", { class: "muted count", "aria-live": "polite" });
  const headRow = h("tr");
  const table = h(
    "table",
    { class: "data", id },
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, headRow),
    body,
  );

  for (const column of columns) {
    const th = h("th", { scope: "col", class: column.num ? "num" : null, title: column.title });
    if (column.value) {
      th.append(
        h(
          "button",
          {
            type: "button",
            class: "sort",
            onclick: () => {
              if (settings.sort === column.key) settings.descending = !settings.descending;
              else Object.assign(settings, { sort: column.key, descending: !!column.num });
              render();
            },
          },
          column.label,
          h("span", { class: "arrow", "aria-hidden": "true" }),
        ),
      );
    } else {
      th.append(column.label);
    }
    headRow.append(th);
  }

  let input = null;
  const tools = h("div", { class: "table-tools" });
  if (filter) {
    input = h("input", {
      type: "search",
      id: `${id}-filter`,
      class: "filter-box",
      placeholder: "Part of a name (press / to come here)",
      value: settings.filter,
      oninput: () => {
        settings.filter = input.value;
        render();
      },
    });
    tools.append(h("label", { for: `${id}-filter` }, `Filter ${noun}s`), input);
  }
  tools.append(summary);

  function sortHeaders() {
    columns.forEach((column, index) => {
      const th = headRow.children[index];
      const active = settings.sort === column.key;
      if (active) th.setAttribute("aria-sort", settings.descending ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
      const arrow = th.querySelector(".arrow");
      if (arrow) arrow.textContent = active ? (settings.descending ? " ▼" : " ▲") : "";
    });
  }

  function visibleRows() {
    const needle = (settings.filter || "").trim().toLowerCase();
    let shown = rows;
    if (filter && needle) shown = rows.filter((row) => filter(row).toLowerCase().includes(needle));
    const column = columns.find((c) => c.key === settings.sort) || columns[0];
    const value = column.value || (() => "");
    const sign = settings.descending ? -1 : 1;
    return [...shown].sort((a, b) => {
      const x = value(a);
      const y = value(b);
      if (typeof x === "number" || typeof y === "number") {
        return sign * ((x ?? -Infinity) - (y ?? -Infinity)) || 0;
      }
      return sign * String(x ?? "").localeCompare(String(y ?? ""), "en", { numeric: true });
    });
  }

  function render() {
    sortHeaders();
    if (rows === null) return;
    const shown = visibleRows();
    const next = JSON.stringify([settings, shown]);
    if (next === signature) return; // nothing changed: keep the DOM (and the focus) as is
    signature = next;
    summary.textContent =
      shown.length === rows.length
        ? `${count(rows.length)} ${noun}${rows.length === 1 ? "" : "s"}`
        : `${count(shown.length)} of ${count(rows.length)} ${noun}s`;

    const focused = body.contains(document.activeElement) ? document.activeElement : null;
    const focusKey = focused && focused.dataset.focus;
    body.replaceChildren();
    if (!shown.length) {
      const text = rows.length ? `No ${noun} matches the filter.` : empty || `No ${noun}s.`;
      body.append(h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, text)));
    }
    for (const row of shown) {
      const key = rowKey(row);
      const tr = h("tr", { dataset: { key } });
      for (const column of columns) {
        const cell = column.cell ? column.cell(row) : column.value(row);
        const td = h("td", { class: column.num ? "num" : column.class }, cell);
        tr.append(td);
      }
      // Buttons and links of a row are found again after the update by this key.
      tr.querySelectorAll("a, button").forEach((el, index) => {
        el.dataset.focus = `${key}\u0000${index}`;
      });
      if (onOpen) {
        tr.classList.add("openable");
        tr.addEventListener("click", (event) => {
          if (!event.target.closest("a, button, input")) onOpen(row);
        });
      }
      body.append(tr);
    }
    if (focusKey) {
      const again = [...body.querySelectorAll("[data-focus]")].find(
        (el) => el.dataset.focus === focusKey,
      );
      if (again) again.focus();
    }
  }

  sortHeaders();
  const wrap = h("div", { class: "table-wrap" }, table);
  return {
    tools,
    el: wrap,
    update(next) {
      rows = next;
      render();
    },
    failed(text) {
      rows = null;
      signature = null;
      summary.textContent = "";
      body.replaceChildren(h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, text)));
    },
  };
}

// "/" jumps to the filter box of the page, as in many consoles.
document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target.closest && target.closest("input, textarea, select, dialog")) return;
  const box = document.querySelector(".filter-box");
  if (box) {
    event.preventDefault();
    box.focus();
    box.select();
  }
});

// ---------------------------------------------------------------- shared pieces of views

function heading(text, ...rest) {
  return h("h1", { tabindex: "-1" }, text, rest);
}

function flashBox() {
  const box = h("div", { class: "flash", role: "status" });
  if (state.flash) {
    box.className = `flash alert ${state.flash.kind}`;
    box.textContent = state.flash.text;
    state.flash = null;
  }
  return box;
}

function say(box, kind, ...text) {
  box.className = `flash alert ${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  replace(box, ...text);
}

function features({ durable, auto_delete, exclusive, internal, arguments: args }) {
  const badges = [];
  if (durable) badges.push(["D", "durable"]);
  if (auto_delete) badges.push(["AD", "auto-delete"]);
  if (exclusive) badges.push(["Excl", "exclusive"]);
  if (internal) badges.push(["I", "internal"]);
  for (const [name, value] of Object.entries(args || {})) {
    badges.push([name.replace(/^x-/, ""), `${name}: ${JSON.stringify(value)}`]);
  }
  return badges.map(([text, title]) => h("abbr", { class: "badge", title }, text));
}

function queueLink(vhost, name) {
  return `#/queues/${seg(vhost)}/${seg(name)}`;
}

function exchangeLink(vhost, name) {
  return `#/exchanges/${seg(vhost)}/${seg(name, { exchange: true })}`;
}

let sections = 0;

function section(title, ...children) {
  const id = `section-${(sections += 1)}`;
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), children);
}

function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}

/** Loads each of ``loaders`` ({table, path, pick}) and fills its table; failures stay local. */
async function fill(loaders) {
  await Promise.all(
    loaders.map(async ({ table, path, pick = items }) => {
      try {
        table.update(pick(await api(path)));
      } catch (error) {
        if (error.status === 401) throw error;
        table.failed(
          [404, 405, 501].includes(error.status)
            ? `Not available on this server (${error.text}).`
            : `Could not load: ${error.text}`,
        );
      }
    }),
  );
}

// ---------------------------------------------------------------- overview

function chartBox({ id, title, series, format }) {
  const legend = h("ul", { class: "legend" });
  const plot = h("div", { class: "plot", id: `${id}-plot` });
  const values = series.map(() => h("span", { class: "value" }, "–"));
  series.forEach((s, index) => {
    legend.append(
      h(
        "li",
        { dataset: { series: s.key } },
        h("span", { class: "swatch", style: { background: s.color }, "aria-hidden": "true" }),
        h("span", { class: "name" }, s.label),
        values[index],
      ),
    );
  });
  const card = h(
    "section",
    { class: "card chart", id, "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, title, h("span", { class: "muted" }, " · last 5 minutes")),
    legend,
    plot,
  );
  let chart = null;
  let observer = null;
  let hovered = null;

  function data() {
    return [state.history.t, ...series.map((s) => state.history[s.key])];
  }

  function showValues() {
    const history = state.history;
    const index = hovered ?? history.t.length - 1;
    series.forEach((s, i) => {
      values[i].textContent = index >= 0 ? format(history[s.key][index]) : "–";
    });
    plot.dataset.samples = String(history.t.length);
  }

  function create() {
    if (chart || !window.uPlot || !plot.isConnected || !plot.clientWidth) return;
    chart = new window.uPlot(
      {
        width: plot.clientWidth,
        height: 190,
        legend: { show: false },
        cursor: { drag: { x: false, y: false, setScale: false } },
        scales: {
          x: { time: true },
          y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] },
        },
        axes: [
          { stroke: "#5b6475", grid: { stroke: "#e8ebf1" }, ticks: { stroke: "#e8ebf1" } },
          {
            stroke: "#5b6475",
            size: 56,
            grid: { stroke: "#e8ebf1" },
            ticks: { stroke: "#e8ebf1" },
            values: (u, ticks) => ticks.map((v) => format(v)),
          },
        ],
        series: [
          {},
          ...series.map((s) => ({
            label: s.label,
            stroke: s.color,
            width: 2,
            fill: `${s.color}1a`,
            points: { show: false },
            value: (u, v) => format(v),
          })),
        ],
        hooks: {
          setCursor: [
            (u) => {
              hovered = u.cursor.idx ?? null;
              showValues();
            },
          ],
        },
      },
      data(),
      plot,
    );
    observer = new ResizeObserver(() => {
      if (plot.clientWidth) chart.setSize({ width: plot.clientWidth, height: 190 });
    });
    observer.observe(plot);
  }

  return {
    el: card,
    update() {
      if (!window.uPlot) {
        plot.textContent = "The chart library did not load; the values above stay live.";
      }
      create();
      if (chart) chart.setData(data());
      showValues();
    },
    destroy() {
      observer?.disconnect();
      chart?.destroy();
    },
  };
}

function overviewView() {
  const title = heading("Overview");
  const about = h("p", { class: "muted about" });
  const tiles = h("ul", { class: "tiles", "aria-label": "Totals" });
  const tileValues = {};
  const tileSpecs = [
    ["connections", "Connections", "#/connections"],
    ["channels", "Channels", "#/channels"],
    ["exchanges", "Exchanges", "#/exchanges"],
    ["queues", "Queues", "#/queues"],
    ["consumers", "Consumers", "#/queues"],
    ["messages_ready", "Ready", "#/queues"],
    ["messages_unacknowledged", "Unacked", "#/queues"],
    ["messages", "Messages", "#/queues"],
  ];
  for (const [key, label, href] of tileSpecs) {
    tileValues[key] = h("strong", { class: "tile-value" }, "–");
    tiles.append(
      h("li", { dataset: { total: key } }, h("a", { class: "tile", href }, tileValues[key], label)),
    );
  }
  const rates = chartBox({
    id: "rates-chart",
    title: "Message rates",
    format: rate,
    series: [
      { key: "publish", label: "Published", color: "#1b5fc1" },
      { key: "deliver", label: "Delivered", color: "#1e8a50" },
      { key: "ack", label: "Acknowledged", color: "#c26a00" },
    ],
  });
  const queued = chartBox({
    id: "queued-chart",
    title: "Queued messages",
    format: count,
    series: [
      { key: "ready", label: "Ready", color: "#7a4fc2" },
      { key: "unacked", label: "Unacked", color: "#c2304f" },
    ],
  });
  const busiest = dataTable({
    id: "busiest-queues",
    caption: "The queues holding the most messages",
    noun: "queue",
    rowKey: (q) => `${q.vhost}\u0000${q.name}`,
    sort: "total",
    descending: true,
    onOpen: (q) => {
      location.hash = queueLink(q.vhost, q.name);
    },
    empty: "No queues yet.",
    columns: [
      {
        key: "name",
        label: "Queue",
        value: (q) => q.name,
        cell: (q) => h("a", { href: queueLink(q.vhost, q.name), class: "name" }, q.name),
      },
      { key: "vhost", label: "Virtual host", value: (q) => q.vhost },
      ...messageColumns(),
    ],
  });
  const allQueues = h("a", { href: "#/queues" }, "All queues");
  const el = h(
    "div",
    { class: "view overview" },
    h("div", { class: "view-head" }, title, about),
    flashBox(),
    tiles,
    h("div", { class: "charts" }, rates.el, queued.el),
    h(
      "section",
      { class: "card", "aria-labelledby": "busiest-title" },
      h(
        "div",
        { class: "card-head" },
        h("h2", { id: "busiest-title" }, "Busiest queues"),
        allQueues,
      ),
      busiest.el,
    ),
  );
  return {
    title: "Overview",
    el,
    async refresh(overview) {
      if (!overview) return;
      const objects = overview.object_totals || {};
      const totals = overview.queue_totals || {};
      for (const [key] of tileSpecs) {
        tileValues[key].textContent = count(
          key.startsWith("messages") ? totals[key] : objects[key],
        );
      }
      const product = overview.product_name || "RabbitMQ";
      const version = overview.product_version || overview.rabbitmq_version || "";
      await fill([
        {
          table: busiest,
          path: "/queues",
          pick: (data) => {
            const queues = items(data);
            allQueues.textContent = `All ${count(queues.length)} queues →`;
            return [...queues].sort((x, y) => (y.messages ?? 0) - (x.messages ?? 0)).slice(0, 6);
          },
        },
      ]);
      replace(
        about,
        `${product} ${version}`.trim(),
        overview.node ? ` · node ${overview.node}` : "",
        overview.cluster_name ? ` · cluster ${overview.cluster_name}` : "",
      );
    },
    onSample() {
      rates.update();
      queued.update();
    },
    mounted() {
      rates.update();
      queued.update();
    },
    destroy() {
      rates.destroy();
      queued.destroy();
    },
  };
}

// ---------------------------------------------------------------- queues

/** The columns of a queue's messages, consumers and rates. */
function messageColumns() {
  const numeric = (key, label, value, format = count, title = null) => ({
    key,
    label,
    title,
    num: true,
    value,
    cell: (row) => format(value(row)),
  });
  return [
    numeric("ready", "Ready", (q) => q.messages_ready),
    numeric("unacked", "Unacked", (q) => q.messages_unacknowledged),
    numeric("total", "Total", (q) => q.messages),
    numeric("consumers", "Consumers", (q) => q.consumers),
    numeric(
      "incoming",
      "Incoming",
      (q) => statRate(q.message_stats, "publish"),
      rate,
      "Messages published to the queue per second",
    ),
    numeric("deliver", "Deliver / get", (q) => statRate(q.message_stats, "deliver_get"), rate),
    numeric("ack", "Ack", (q) => statRate(q.message_stats, "ack"), rate),
  ];
}

function queuesView() {
  const table = dataTable({
    id: "queues",
    caption: "Queues",
    noun: "queue",
    rowKey: (q) => `${q.vhost}\u0000${q.name}`,
    filter: (q) => q.name,
    onOpen: (q) => {
      location.hash = queueLink(q.vhost, q.name);
    },
    empty: "No queues yet: they appear here when clients declare them.",
    columns: [
      {
        key: "name",
        label: "Name",
        value: (q) => q.name,
        cell: (q) => h("a", { href: queueLink(q.vhost, q.name), class: "name" }, q.name),
      },
      { key: "vhost", label: "Virtual host", value: (q) => q.vhost },
      { key: "type", label: "Type", value: (q) => q.type || "classic" },
      { key: "features", label: "Features", cell: features },
      { key: "state", label: "State", value: (q) => q.state || "running" },
      ...messageColumns(),
    ],
  });
  const el = h(
    "div",
    { class: "view" },
    h("div", { class: "view-head" }, heading("Queues")),
    flashBox(),
    table.tools,
    table.el,
  );
  return {
    title: "Queues",
    el,
    refresh: () => fill([{ table, path: "/queues" }]),
  };
}

function queueView(vhost, name) {
  const base = `/queues/${seg(vhost)}/${seg(name)}`;
  const flash = flashBox();
  const info = h("div", { class: "facts-wrap" }, h("p", { class: "muted" }, "Loading…"));
  const consumers = dataTable({
    id: "queue-consumers",
    caption: "Consumers of the queue",
    noun: "consumer",
    rowKey: (c) => `${c.channel_details?.name}\u0000${c.consumer_tag}`,
    empty: "No consumers.",
    columns: [
      {
        key: "channel",
        label: "Channel",
        value: (c) => c.channel_details?.name ?? "",
      },
      { key: "tag", label: "Consumer tag", value: (c) => c.consumer_tag },
      { key: "ack", label: "Ack required", value: (c) => (c.ack_required ? "yes" : "no") },
      { key: "exclusive", label: "Exclusive", value: (c) => (c.exclusive ? "yes" : "no") },
      {
        key: "prefetch",
        label: "Prefetch",
        num: true,
        value: (c) => c.prefetch_count,
        cell: (c) => count(c.prefetch_count),
      },
      { key: "active", label: "Active", value: (c) => (c.active === false ? "no" : "yes") },
      {
        key: "arguments",
        label: "Arguments",
        cell: (c) => (isEmptyObject(c.arguments) ? "" : h("code", {}, JSON.stringify(c.arguments))),
      },
    ],
  });
  const bindings = dataTable({
    id: "queue-bindings",
    caption: "Bindings of the queue",
    noun: "binding",
    rowKey: (b) => `${b.source}\u0000${b.properties_key ?? b.routing_key}`,
    columns: [
      {
        key: "source",
        label: "From exchange",
        value: (b) => b.source,
        cell: (b) => h("a", { href: exchangeLink(b.vhost, b.source) }, exchangeLabel(b.source)),
      },
      { key: "routing_key", label: "Routing key", value: (b) => b.routing_key },
      {
        key: "arguments",
        label: "Arguments",
        cell: (b) => (isEmptyObject(b.arguments) ? "" : h("code", {}, JSON.stringify(b.arguments))),
      },
    ],
  });

  // Get messages
  const getOutcome = h("div", { class: "flash", role: "status" });
  const messages = h("ol", { class: "messages" });
  const getForm = h(
    "form",
    { class: "inline-form", onsubmit: getMessages },
    h(
      "div",
      { class: "field" },
      h("label", { for: "get-ackmode" }, "Ack mode"),
      h(
        "select",
        { id: "get-ackmode" },
        h("option", { value: "ack_requeue_true" }, "Requeue (just look)"),
        h("option", { value: "ack_requeue_false" }, "Ack (remove)"),
        h("option", { value: "reject_requeue_true" }, "Reject, requeue"),
        h("option", { value: "reject_requeue_false" }, "Reject (dead-letter)"),
      ),
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "get-encoding" }, "Encoding"),
      h(
        "select",
        { id: "get-encoding" },
        h("option", { value: "auto" }, "Auto (text or base64)"),
        h("option", { value: "base64" }, "Base64"),
      ),
    ),
    h(
      "div",
      { class: "field small" },
      h("label", { for: "get-count" }, "Messages"),
      h("input", {
        id: "get-count",
        type: "number",
        min: "1",
        max: "1000",
        value: "1",
        required: true,
      }),
    ),
    h("div", { class: "field" }, h("button", { type: "submit", class: "primary" }, "Get messages")),
  );

  async function getMessages(event) {
    event.preventDefault();
    const button = getForm.querySelector("button");
    button.disabled = true;
    try {
      const got = await api(`${base}/get`, {
        method: "POST",
        body: {
          count: Number($("get-count").value) || 1,
          ackmode: $("get-ackmode").value,
          encoding: $("get-encoding").value,
          truncate: 50000,
        },
      });
      const list = Array.isArray(got) ? got : [];
      messages.replaceChildren();
      if (!list.length) say(getOutcome, "warning", "The queue is empty: no message to get.");
      else say(getOutcome, "success", `Got ${list.length} message${list.length === 1 ? "" : "s"}.`);
      list.forEach((message, index) => messages.append(messageCard(message, index)));
      state.view === view && tick();
    } catch (error) {
      if (fails(error)) say(getOutcome, "error", `Could not get messages: ${error.text}`);
    } finally {
      button.disabled = false;
    }
  }

  async function purge() {
    const ok = await confirmAction({
      title: "Purge the queue?",
      text: ["All the ready messages of ", h("strong", {}, name), " will be deleted."],
      ok: "Purge messages",
    });
    if (!ok) return;
    try {
      await api(`${base}/contents`, { method: "DELETE" });
      say(flash, "success", "The queue was purged: its ready messages are deleted.");
      tick();
    } catch (error) {
      if (fails(error)) say(flash, "error", `Could not purge the queue: ${error.text}`);
    }
  }

  async function remove() {
    const ok = await confirmAction({
      title: "Delete the queue?",
      text: ["The queue ", h("strong", {}, name), " and its messages will be deleted."],
      ok: "Delete queue",
    });
    if (!ok) return;
    try {
      await api(base, { method: "DELETE" });
      state.flash = { kind: "success", text: `The queue ${name} was deleted.` };
      location.hash = "#/queues";
    } catch (error) {
      if (fails(error)) say(flash, "error", `Could not delete the queue: ${error.text}`);
    }
  }

  const el = h(
    "div",
    { class: "view" },
    h(
      "nav",
      { class: "crumbs", "aria-label": "Breadcrumb" },
      h("a", { href: "#/queues" }, "Queues"),
      " › ",
      h("span", {}, vhost === "/" ? "" : `${vhost} › `, name),
    ),
    h(
      "div",
      { class: "view-head" },
      heading(h("span", { class: "muted kind" }, "Queue "), name),
      h(
        "div",
        { class: "buttons" },
        h("button", { type: "button", class: "secondary", onclick: purge }, "Purge messages"),
        h("button", { type: "button", class: "danger", onclick: remove }, "Delete queue"),
      ),
    ),
    flash,
    h(
      "div",
      { class: "grid two" },
      section("Details", info),
      section("Get messages", getForm, getOutcome, messages),
    ),
    section("Consumers", consumers.el),
    section("Bindings", bindings.el),
  );

  const view = {
    title: "Queue",
    el,
    async refresh() {
      let queue;
      try {
        queue = await api(base);
      } catch (error) {
        if (error.status === 404) {
          replace(
            info,
            h("p", { class: "alert warning" }, "This queue does not exist (any more)."),
          );
          return;
        }
        throw error;
      }
      const stats = queue.message_stats || {};
      replace(
        info,
        facts([
          ["Virtual host", queue.vhost],
          ["Type", queue.type || "classic"],
          ["Features", features(queue).length ? features(queue) : "none"],
          ["State", queue.state || "running"],
          ["Ready", h("span", { class: "ready" }, count(queue.messages_ready))],
          ["Unacked", count(queue.messages_unacknowledged)],
          ["Total", h("span", { class: "total" }, count(queue.messages))],
          ["Consumers", count(queue.consumers)],
          ["Incoming", rate(statRate(stats, "publish"))],
          ["Deliver / get", rate(statRate(stats, "deliver_get"))],
          ["Ack", rate(statRate(stats, "ack"))],
          queue.exclusive_consumer_tag
            ? ["Exclusive consumer", queue.exclusive_consumer_tag]
            : null,
        ]),
      );
      await fill([
        {
          table: consumers,
          path: `/consumers/${seg(vhost)}`,
          pick: (data) =>
            items(data).filter((c) => c.queue && c.queue.name === name && c.queue.vhost === vhost),
        },
        { table: bindings, path: `${base}/bindings` },
      ]);
    },
  };
  return view;
}

function messageCard(message, index) {
  const properties = message.properties || {};
  const rows = Object.entries(properties).filter(([key]) => key !== "headers");
  return h(
    "li",
    { class: "message" },
    h(
      "div",
      { class: "message-head" },
      h("strong", {}, `Message ${index + 1}`),
      h(
        "span",
        { class: "muted" },
        ` · from ${exchangeLabel(message.exchange ?? "")}`,
        ` · routing key ${message.routing_key ?? ""}`,
        message.redelivered ? " · redelivered" : "",
        typeof message.message_count === "number" ? ` · ${count(message.message_count)} left` : "",
      ),
    ),
    rows.length || properties.headers
      ? facts([
          ...rows.map(([key, value]) => [
            key,
            typeof value === "object" ? json(value) : String(value),
          ]),
          properties.headers
            ? ["headers", h("code", {}, JSON.stringify(properties.headers))]
            : null,
        ])
      : null,
    h(
      "p",
      { class: "muted payload-info" },
      `Payload: ${count(message.payload_bytes)} bytes, encoding ${message.payload_encoding}`,
    ),
    h("pre", { class: "payload" }, message.payload ?? ""),
  );
}

// ---------------------------------------------------------------- exchanges

function exchangesView() {
  const table = dataTable({
    id: "exchanges",
    caption: "Exchanges",
    noun: "exchange",
    rowKey: (x) => `${x.vhost}\u0000${x.name}`,
    filter: (x) => exchangeLabel(x.name),
    onOpen: (x) => {
      location.hash = exchangeLink(x.vhost, x.name);
    },
    columns: [
      {
        key: "name",
        label: "Name",
        value: (x) => x.name,
        cell: (x) =>
          h("a", { href: exchangeLink(x.vhost, x.name), class: "name" }, exchangeLabel(x.name)),
      },
      { key: "vhost", label: "Virtual host", value: (x) => x.vhost },
      { key: "type", label: "Type", value: (x) => x.type },
      { key: "features", label: "Features", cell: features },
      {
        key: "in",
        label: "Rate in",
        num: true,
        value: (x) => statRate(x.message_stats, "publish_in"),
        cell: (x) => rate(statRate(x.message_stats, "publish_in")),
      },
      {
        key: "out",
        label: "Rate out",
        num: true,
        value: (x) => statRate(x.message_stats, "publish_out"),
        cell: (x) => rate(statRate(x.message_stats, "publish_out")),
      },
    ],
  });
  return {
    title: "Exchanges",
    el: h(
      "div",
      { class: "view" },
      h("div", { class: "view-head" }, heading("Exchanges")),
      flashBox(),
      table.tools,
      table.el,
    ),
    refresh: () => fill([{ table, path: "/exchanges" }]),
  };
}

function exchangeView(vhost, name) {
  const base = `/exchanges/${seg(vhost)}/${seg(name, { exchange: true })}`;
  const info = h("div", { class: "facts-wrap" }, h("p", { class: "muted" }, "Loading…"));
  const bindings = dataTable({
    id: "exchange-bindings",
    caption: "Bindings from the exchange",
    noun: "binding",
    rowKey: (b) =>
      `${b.destination_type}\u0000${b.destination}\u0000${b.properties_key ?? b.routing_key}`,
    empty:
      name === ""
        ? "Every queue is bound to the default exchange by its own name."
        : "No bindings: messages published here are not routed.",
    columns: [
      {
        key: "destination",
        label: "To",
        value: (b) => b.destination,
        cell: (b) =>
          h(
            "a",
            {
              href:
                b.destination_type === "exchange"
                  ? exchangeLink(b.vhost, b.destination)
                  : queueLink(b.vhost, b.destination),
            },
            b.destination,
          ),
      },
      { key: "type", label: "Type", value: (b) => b.destination_type },
      { key: "routing_key", label: "Routing key", value: (b) => b.routing_key },
      {
        key: "arguments",
        label: "Arguments",
        cell: (b) => (isEmptyObject(b.arguments) ? "" : h("code", {}, JSON.stringify(b.arguments))),
      },
    ],
  });

  const outcome = h("div", { class: "flash", role: "status" });
  const form = h(
    "form",
    { class: "publish", onsubmit: publish },
    h(
      "div",
      { class: "row" },
      h(
        "div",
        { class: "field" },
        h("label", { for: "publish-key" }, "Routing key"),
        h("input", { id: "publish-key", autocomplete: "off" }),
      ),
      h(
        "div",
        { class: "field" },
        h("label", { for: "publish-mode" }, "Delivery mode"),
        h(
          "select",
          { id: "publish-mode" },
          h("option", { value: "1" }, "1 · Non-persistent"),
          h("option", { value: "2" }, "2 · Persistent"),
        ),
      ),
      h(
        "div",
        { class: "field" },
        h("label", { for: "publish-type" }, "Content type"),
        h("input", {
          id: "publish-type",
          placeholder: "e.g. application/json",
          autocomplete: "off",
        }),
      ),
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "publish-payload" }, "Payload"),
      h("textarea", { id: "publish-payload", rows: "5", spellcheck: "false" }),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Publish message"),
    ),
  );

  async function publish(event) {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    const properties = { delivery_mode: Number($("publish-mode").value) };
    const contentType = $("publish-type").value.trim();
    if (contentType) properties.content_type = contentType;
    try {
      const result = await api(`${base}/publish`, {
        method: "POST",
        body: {
          properties,
          routing_key: $("publish-key").value,
          payload: $("publish-payload").value,
          payload_encoding: "string",
        },
      });
      if (result && result.routed)
        say(outcome, "success", "Message published and routed to a queue.");
      else say(outcome, "warning", "Message published, but not routed: no queue matched it.");
    } catch (error) {
      if (fails(error)) say(outcome, "error", `Could not publish: ${error.text}`);
    } finally {
      button.disabled = false;
    }
  }

  return {
    title: "Exchange",
    el: h(
      "div",
      { class: "view" },
      h(
        "nav",
        { class: "crumbs", "aria-label": "Breadcrumb" },
        h("a", { href: "#/exchanges" }, "Exchanges"),
        " › ",
        h("span", {}, vhost === "/" ? "" : `${vhost} › `, exchangeLabel(name)),
      ),
      h(
        "div",
        { class: "view-head" },
        heading(h("span", { class: "muted kind" }, "Exchange "), exchangeLabel(name)),
      ),
      h(
        "div",
        { class: "grid two" },
        section("Details", info),
        section("Publish a message", form, outcome),
      ),
      section("Bindings", bindings.el),
    ),
    async refresh() {
      let exchange;
      try {
        exchange = await api(base);
      } catch (error) {
        if (error.status === 404) {
          replace(
            info,
            h("p", { class: "alert warning" }, "This exchange does not exist (any more)."),
          );
          return;
        }
        throw error;
      }
      const stats = exchange.message_stats || {};
      replace(
        info,
        facts([
          ["Virtual host", exchange.vhost],
          ["Type", exchange.type],
          ["Features", features(exchange).length ? features(exchange) : "none"],
          ["Rate in", rate(statRate(stats, "publish_in"))],
          ["Rate out", rate(statRate(stats, "publish_out"))],
        ]),
      );
      await fill([{ table: bindings, path: `${base}/bindings/source` }]);
    },
  };
}

// ---------------------------------------------------------------- connections and channels

function connectionsView() {
  const flash = flashBox();
  async function close(connection) {
    const ok = await confirmAction({
      title: "Close the connection?",
      text: [
        "The connection ",
        h("strong", {}, connection.name),
        " and its channels will be closed.",
      ],
      ok: "Close connection",
      reason: true,
    });
    if (!ok) return;
    try {
      await api(`/connections/${seg(connection.name)}`, {
        method: "DELETE",
        headers: { "X-Reason": ok.reason },
      });
      say(flash, "success", "Connection ", h("strong", {}, connection.name), " closed.");
      tick();
    } catch (error) {
      if (fails(error)) say(flash, "error", `Could not close the connection: ${error.text}`);
    }
  }
  const client = (c) => {
    const props = c.client_properties || {};
    return [props.product, props.version].filter(Boolean).join(" ");
  };
  const table = dataTable({
    id: "connections",
    caption: "Connections",
    noun: "connection",
    rowKey: (c) => c.name,
    filter: (c) => `${c.name} ${c.client_properties?.connection_name ?? ""} ${c.user ?? ""}`,
    empty: "No client is connected.",
    columns: [
      {
        key: "name",
        label: "Name",
        value: (c) => c.name,
        cell: (c) => [
          h("span", { class: "name" }, c.name),
          c.client_properties?.connection_name
            ? h("span", { class: "sub muted" }, c.client_properties.connection_name)
            : null,
        ],
      },
      { key: "user", label: "User", value: (c) => c.user },
      { key: "vhost", label: "Virtual host", value: (c) => c.vhost },
      { key: "client", label: "Client", value: client },
      { key: "state", label: "State", value: (c) => c.state },
      {
        key: "channels",
        label: "Channels",
        num: true,
        value: (c) => c.channels,
        cell: (c) => count(c.channels),
      },
      {
        key: "recv",
        label: "From client",
        num: true,
        value: (c) => c.recv_oct_details?.rate,
        cell: (c) => bytesRate(c.recv_oct_details?.rate),
      },
      {
        key: "send",
        label: "To client",
        num: true,
        value: (c) => c.send_oct_details?.rate,
        cell: (c) => bytesRate(c.send_oct_details?.rate),
      },
      {
        key: "since",
        label: "Connected",
        value: (c) => c.connected_at,
        cell: (c) => when(c.connected_at),
      },
      {
        key: "close",
        label: h("span", { class: "visually-hidden" }, "Actions"),
        cell: (c) =>
          h(
            "button",
            {
              type: "button",
              class: "small danger",
              "aria-label": `Close connection ${c.name}`,
              onclick: () => close(c),
            },
            "Close",
          ),
      },
    ],
  });
  return {
    title: "Connections",
    el: h(
      "div",
      { class: "view" },
      h("div", { class: "view-head" }, heading("Connections")),
      flash,
      table.tools,
      table.el,
    ),
    refresh: () => fill([{ table, path: "/connections" }]),
  };
}

function channelsView() {
  const table = dataTable({
    id: "channels",
    caption: "Channels",
    noun: "channel",
    rowKey: (c) => c.name,
    filter: (c) => `${c.name} ${c.user ?? ""}`,
    empty: "No channel is open.",
    columns: [
      {
        key: "name",
        label: "Channel",
        value: (c) => c.name,
        cell: (c) => h("span", { class: "name" }, c.name),
      },
      { key: "user", label: "User", value: (c) => c.user },
      { key: "vhost", label: "Virtual host", value: (c) => c.vhost },
      {
        key: "mode",
        label: "Mode",
        title: "C: publisher confirms, T: transactional",
        value: (c) => [c.confirm ? "C" : "", c.transactional ? "T" : ""].join(""),
      },
      { key: "state", label: "State", value: (c) => c.state },
      {
        key: "consumers",
        label: "Consumers",
        num: true,
        value: (c) => c.consumer_count,
        cell: (c) => count(c.consumer_count),
      },
      {
        key: "prefetch",
        label: "Prefetch",
        num: true,
        value: (c) => c.prefetch_count,
        cell: (c) => count(c.prefetch_count),
      },
      {
        key: "unacked",
        label: "Unacked",
        num: true,
        value: (c) => c.messages_unacknowledged,
        cell: (c) => count(c.messages_unacknowledged),
      },
      {
        key: "publish",
        label: "Publish",
        num: true,
        value: (c) => statRate(c.message_stats, "publish"),
        cell: (c) => rate(statRate(c.message_stats, "publish")),
      },
      {
        key: "deliver",
        label: "Deliver / get",
        num: true,
        value: (c) => statRate(c.message_stats, "deliver_get"),
        cell: (c) => rate(statRate(c.message_stats, "deliver_get")),
      },
      {
        key: "ack",
        label: "Ack",
        num: true,
        value: (c) => statRate(c.message_stats, "ack"),
        cell: (c) => rate(statRate(c.message_stats, "ack")),
      },
    ],
  });
  return {
    title: "Channels",
    el: h(
      "div",
      { class: "view" },
      h("div", { class: "view-head" }, heading("Channels")),
      h(
        "p",
        { class: "muted" },
        "A channel closes with its connection: close it from ",
        h("a", { href: "#/connections" }, "Connections"),
        ".",
      ),
      table.tools,
      table.el,
    ),
    refresh: () => fill([{ table, path: "/channels" }]),
  };
}

// ---------------------------------------------------------------- users, vhosts, permissions

function adminView() {
  const users = dataTable({
    id: "users",
    caption: "Users",
    noun: "user",
    rowKey: (u) => u.name,
    columns: [
      {
        key: "name",
        label: "Name",
        value: (u) => u.name,
        cell: (u) => h("span", { class: "name" }, u.name),
      },
      { key: "tags", label: "Tags", value: (u) => tagsOf(u).join(", ") },
      {
        key: "password",
        label: "Password",
        value: (u) => (u.password_hash ? "set" : "none"),
      },
    ],
  });
  const vhosts = dataTable({
    id: "vhosts",
    caption: "Virtual hosts",
    noun: "virtual host",
    rowKey: (v) => v.name,
    columns: [
      {
        key: "name",
        label: "Name",
        value: (v) => v.name,
        cell: (v) => h("span", { class: "name" }, v.name),
      },
      { key: "description", label: "Description", value: (v) => v.description ?? "" },
      {
        key: "ready",
        label: "Ready",
        num: true,
        value: (v) => v.messages_ready,
        cell: (v) => count(v.messages_ready),
      },
      {
        key: "unacked",
        label: "Unacked",
        num: true,
        value: (v) => v.messages_unacknowledged,
        cell: (v) => count(v.messages_unacknowledged),
      },
      {
        key: "total",
        label: "Total",
        num: true,
        value: (v) => v.messages,
        cell: (v) => count(v.messages),
      },
    ],
  });
  const permissions = dataTable({
    id: "permissions",
    caption: "Permissions",
    noun: "permission",
    rowKey: (p) => `${p.user}\u0000${p.vhost}`,
    columns: [
      { key: "user", label: "User", value: (p) => p.user },
      { key: "vhost", label: "Virtual host", value: (p) => p.vhost },
      {
        key: "configure",
        label: "Configure",
        value: (p) => p.configure,
        cell: (p) => h("code", {}, p.configure),
      },
      { key: "write", label: "Write", value: (p) => p.write, cell: (p) => h("code", {}, p.write) },
      { key: "read", label: "Read", value: (p) => p.read, cell: (p) => h("code", {}, p.read) },
    ],
  });
  return {
    title: "Admin",
    el: h(
      "div",
      { class: "view" },
      h(
        "div",
        { class: "view-head" },
        heading("Admin"),
        h("p", { class: "muted about" }, "Users, virtual hosts and permissions"),
      ),
      h(
        "div",
        { class: "grid two" },
        section("Users", users.el),
        section("Virtual hosts", vhosts.el),
      ),
      section("Permissions", permissions.el),
    ),
    refresh: () =>
      fill([
        { table: users, path: "/users" },
        { table: vhosts, path: "/vhosts" },
        { table: permissions, path: "/permissions" },
      ]),
  };
}

// ---------------------------------------------------------------- routing

function parseRoute() {
  const parts = location.hash
    .replace(/^#\/?/, "")
    .split("/")
    .filter((p, i) => i === 0 || p !== "");
  let decoded;
  try {
    decoded = parts.map(decodeURIComponent);
  } catch {
    decoded = [""];
  }
  const [name, vhost, object] = decoded;
  if (name === "queues" && vhost !== undefined && object !== undefined) {
    return { nav: "queues", make: () => queueView(vhost, object) };
  }
  if (name === "exchanges" && vhost !== undefined && object !== undefined) {
    return {
      nav: "exchanges",
      make: () => exchangeView(vhost, object === "amq.default" ? "" : object),
    };
  }
  const views = {
    queues: queuesView,
    exchanges: exchangesView,
    connections: connectionsView,
    channels: channelsView,
  };
  if (views[name]) return { nav: name, make: views[name] };
  if (name === "admin" && state.admin) return { nav: "admin", make: adminView };
  return { nav: "overview", make: overviewView };
}

function route(focus = true) {
  if (!state.credentials) return;
  const { nav, make } = parseRoute();
  if (state.view) state.view.destroy?.();
  const view = make();
  state.view = view;
  replace($("view"), view.el);
  view.mounted?.();
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${view.title} · xivo-bus`;
  if (focus) view.el.querySelector("h1")?.focus();
  if (state.overview) {
    view.refresh(state.overview).catch((error) => {
      if (fails(error)) {
        replace($("error"), h("strong", {}, "Could not load: "), error.text || String(error));
        $("error").hidden = false;
      }
    });
  }
}

window.addEventListener("hashchange", () => route(true));

// ---------------------------------------------------------------- start

$("login-form").addEventListener("submit", logIn);
$("logout").addEventListener("click", () => showLogin(""));

(async function start() {
  const credentials = storedCredentials();
  if (!credentials) {
    showLogin("");
    return;
  }
  try {
    await startSession(credentials, await api("/whoami", { credentials }));
  } catch (error) {
    showLogin(
      error.status === 401 ? `Login refused: ${error.text}` : `Cannot log in: ${error.text}`,
    );
  }
})();
