/* The fleet view: for many GPUs, a dense table (one row per GPU, grouped by host with totals,
 * sortable, filterable) and a utilization heatmap in place of the cards and the four charts.
 *
 * startPage(startCards) shows the view the server chose (skeleton.py: the URL's ?view=, else
 * the GPU count) and told in the page's config, the one it painted first; the choice is written
 * into the URL (replaceState) and the toggle's links switch it (a new page load: the views share
 * no DOM). In the fleet view the cards' machinery never starts (256 cards take seconds to
 * build): this module asks api/v1/gpus itself (every POLL_MS, and when the page is shown again),
 * listens to the websocket itself, and renders at most once per animation frame. What the cards
 * view does beside its cards runs here through the same modules: each host's state from the
 * server (hosts.js, which alerts name hosts by), the problems strip (problems.js, reading the
 * rows), the server's clock (live.js), the alerts, usage and energy parts.
 * Data: api/v1/gpus, api/v1/hosts -> rows, host states; ws ticks -> rows and the heatmap's
 * newest bucket; api/v1/history (utilization only, read by fleet_history.js) -> the heatmap.
 */

import { bindAlertPanel } from './alert_panel.js';
import { startAlerts, takeAlerts } from './alerts.js';
import { bindAlertHistory } from './alerts_history.js';
import { fetchJson, oneAtATime } from './api.js';
import { refreshConnBadge, setConnection } from './conn_badge.js';
import { element, formatClock, formatDuration, isNumber, markPressed } from './format.js';
import { Heatmap, heatmapLegend } from './fleet_heatmap.js';
import { readUtilHistory, utilHistoryUrl } from './fleet_history.js';
import { newRow, takeReading } from './fleet_rows.js';
import { FleetTable, gpuHref } from './fleet_table.js';
import { hostStale, loadHosts, takeHostState } from './hosts.js';
import { noteServerClock } from './live.js';
import { readProblemGpusFrom, refreshProblems } from './problems.js';
import { nextReconnect, openLiveSocket } from './socket.js';
import { RANGES_S, config, rangeFromUrl, serverNowS, state } from './state.js';
import { loadRangeTables, refreshRangeTables, refreshTablesWhenShown } from './usage.js';

const VIEWS = { cards: 'Cards', fleet: 'Fleet' };
const POLL_MS = 15000;
const USAGE_REFRESH_MS = 60000;
const MAX_HEATMAP_BUCKETS = 300;

const MAX_MEASURES = 1000; // performance.measure entries kept of the fleet's renders

const fleet = {
  table: null,
  heatmap: null,
  changedHosts: new Set(),
  frameQueued: false,
  gpusDirty: false, // rows came or went: the heatmap's lines are set again
  heatmapDirty: false, // its buckets changed: drawn again
  historyGen: 0,
  ws: null,
  attempts: 0,
  measures: 0,
  reconnectTimer: null,
  firstDrawn: false,
};

function urlWith(name, value) {
  const url = new URL(window.location.href);
  if (value === null || value === '') url.searchParams.delete(name);
  else url.searchParams.set(name, value);
  return url;
}

/** Show the view toggle: a link to each view, the current one marked. */
function showToggle(view) {
  const nav = document.getElementById('view-toggle');
  if (!nav) return;
  const links = Object.entries(VIEWS).map(([name, label]) => {
    const link = element('a', `btn btn-sm ${name === view ? 'btn-secondary' : 'btn-outline-secondary'}`, label);
    link.href = urlWith('view', name).href;
    link.dataset.view = name;
    if (name === view) link.setAttribute('aria-current', 'page');
    return link;
  });
  const group = element('div', 'btn-group');
  group.append(...links);
  nav.replaceChildren(element('span', 'small text-body-secondary me-2', 'View'), group);
  nav.hidden = false;
}

/** Return the view the server chose and painted first: its config's word, else its places. */
function servedView() {
  if (Object.prototype.hasOwnProperty.call(VIEWS, config.view)) return config.view;
  return document.getElementById('fleet').hidden ? 'cards' : 'fleet';
}

/**
 * Start the page in the view the server chose (the URL's, else the one the GPU count calls
 * for); startCards: the cards view's start. The choice goes into the URL so that a reload or a
 * link keeps it.
 */
export async function startPage(startCards) {
  const view = servedView();
  if (new URLSearchParams(window.location.search).get('view') !== view) {
    window.history.replaceState(window.history.state, '', urlWith('view', view));
  }
  document.body.dataset.view = view;
  showToggle(view);
  return view === 'cards' ? startCards() : startFleet();
}

function queueFrame() {
  if (fleet.frameQueued) return;
  fleet.frameQueued = true;
  window.requestAnimationFrame(renderFrame);
}

/** Render what changed since the last frame: rows, totals, order, the heatmap. */
function renderFrame() {
  fleet.frameQueued = false;
  performance.mark('pcw-fleet-render-start');
  const hosts = fleet.changedHosts;
  fleet.changedHosts = new Set();
  fleet.table.render(hosts);
  if (fleet.gpusDirty) {
    fleet.gpusDirty = false;
    fleet.heatmap.setGpus(orderedRows());
    fleet.heatmapDirty = true;
  }
  if (fleet.heatmapDirty) {
    fleet.heatmapDirty = false;
    fleet.heatmap.draw();
  }
  refreshProblems(); // redraws the strip only when its problems changed
  refreshConnBadge();
  performance.measure('pcw-fleet-render', 'pcw-fleet-render-start');
  performance.clearMarks('pcw-fleet-render-start');
  // The benchmark reads the measures; a page left open for days must not keep one a frame.
  fleet.measures += 1;
  if (fleet.measures > MAX_MEASURES) {
    performance.clearMeasures('pcw-fleet-render');
    fleet.measures = 0;
  }
  if (!fleet.firstDrawn && fleet.table.rows.size) {
    fleet.firstDrawn = true;
    document.getElementById('fleet').dataset.ready = 'true';
  }
}

function orderedRows() {
  return [...fleet.table.rows.values()].sort((a, b) => (a.host === b.host ? a.index - b.index : (a.host < b.host ? -1 : 1)));
}

function rowFor(item) {
  const uuid = item && item.gpu_uuid;
  let row = typeof uuid === 'string' ? fleet.table.rows.get(uuid) : undefined;
  if (!row) {
    row = newRow(item);
    if (!row) return null;
    fleet.table.add(row);
    fleet.gpusDirty = true;
  }
  return row;
}

/** Mark a row's host stale or not as the server says (hosts.js); true when that changed it. */
function takeHostStale(row) {
  const stale = hostStale(row.host);
  if (stale === row.hostStale) return false;
  row.hostStale = stale;
  row.version += 1;
  fleet.changedHosts.add(row.host);
  return true;
}

const NEW_HOST_GRACE_S = 120; // a host the list does not know yet: its rows stay while they tick

/**
 * Return whether a row the GPU list lacks is live all the same: a tick newer than the list's
 * newest reading of its host (the list was read before the writer stored it), or, for a host the
 * list has no reading of (its first batch not stored yet), a tick within NEW_HOST_GRACE_S. Only
 * a row that neither holds (a GPU purged from the file) leaves the table.
 */
function stillTicking(row, hostNewestS) {
  if (row.lastTs === null) return false;
  if (hostNewestS === undefined) return serverNowS() - row.lastTs < NEW_HOST_GRACE_S;
  return row.lastTs > hostNewestS;
}

/**
 * Take api/v1/gpus: every GPU's newest reading, staleness and idle flag (its host's state is
 * api/v1/hosts' and the feed's word, in hosts.js). A row the list no longer has (its GPU purged
 * from the file) goes, unless it is still ticking (stillTicking).
 */
function takeGpuList(answer) {
  if (!answer || !Array.isArray(answer.gpus)) return;
  if (answer.simulated === true) document.getElementById('sim-banner').hidden = false;
  if (isNumber(answer.interval_s) && answer.interval_s > 0) state.intervalS = answer.interval_s;
  const listed = new Set();
  const newestByHost = new Map(); // host -> the newest reading the list has of it (epoch s)
  for (const item of answer.gpus) {
    const row = rowFor(item);
    if (!row) continue;
    listed.add(row.uuid);
    const latestTs = item.latest ? item.latest.ts : null;
    if (isNumber(latestTs) && !(newestByHost.get(row.host) >= latestTs)) {
      newestByHost.set(row.host, latestTs);
    }
    takeReading(row, item, latestTs);
    const stale = item.stale === true;
    const idle = item.idle && isNumber(item.idle.since_ts) ? item.idle : null;
    if (stale !== row.stale || (idle === null) !== (row.idle === null)) row.version += 1;
    row.stale = stale;
    row.idle = idle;
    takeHostStale(row); // a changed row's version marks its host changed at the render
  }
  for (const row of [...fleet.table.rows.values()]) {
    if (listed.has(row.uuid) || stillTicking(row, newestByHost.get(row.host))) continue;
    fleet.table.remove(row.uuid);
    fleet.gpusDirty = true;
    fleet.changedHosts.add(row.host);
  }
  queueFrame();
}

const pollGpus = oneAtATime(async () => {
  try {
    takeGpuList(await fetchJson('api/v1/gpus', undefined));
  } catch (error) {
    setStatus(`GPU list: ${error.message}`);
  }
});

/** Ask the server for the GPUs and the hosts (as the cards view does), then redraw. */
const pollServer = oneAtATime(async () => {
  await Promise.all([pollGpus(), loadHosts()]);
  for (const row of fleet.table.rows.values()) takeHostStale(row);
  queueFrame();
});

function setStatus(text) {
  document.getElementById('fleet-status').textContent = text;
}

/**
 * Take one host's tick from the websocket; hostState: the server's word on its host (taken
 * into hosts.js); live: a tick just read (not a snapshot's), whose time is the server's clock.
 */
function takeTick(tick, hostState, live) {
  if (!tick || typeof tick.host !== 'string' || !isNumber(tick.ts) || !Array.isArray(tick.gpus)) return;
  if (live) noteServerClock(tick.ts);
  if (hostState) takeHostState(hostState, true);
  for (const item of tick.gpus) {
    if (!item || typeof item !== 'object' || !item.latest) continue;
    const row = rowFor({ ...item, host: item.host ?? tick.host });
    if (!row) continue;
    if (takeReading(row, item, tick.ts)) {
      // A GPU in its host's tick is as stale as its host: the server's word on it alone is old.
      if (hostState) row.stale = hostState.stale === true;
      takeHostStale(row);
      if (fleet.heatmap.add(row.uuid, tick.ts, row.util)) fleet.heatmapDirty = true;
    }
  }
  fleet.changedHosts.add(tick.host);
  if (state.lastTickTs === null || tick.ts > state.lastTickTs) {
    state.lastTickTs = tick.ts;
    document.getElementById('last-update').textContent = `last reading ${formatClock(tick.ts * 1000)}`;
  }
  queueFrame();
}

/** Take the server's word on hosts (a {type: hosts} message, a snapshot's hosts). */
function takeHostStates(hosts) {
  for (const item of hosts) takeHostState(item, true);
  for (const row of fleet.table.rows.values()) takeHostStale(row);
  queueFrame();
}

function onMessage(socket, message) {
  if (socket !== fleet.ws) return;
  if (message.type === 'snapshot' && Array.isArray(message.ticks)) {
    fleet.attempts = 0;
    const hosts = new Map((Array.isArray(message.hosts) ? message.hosts : [])
      .filter((item) => item && typeof item.host === 'string').map((item) => [item.host, item]));
    for (const tick of message.ticks) takeTick(tick, tick && hosts.get(tick.host), false);
    takeHostStates([...hosts.values()]);
  } else if (message.type === 'tick') {
    takeTick(message.tick, message.host_state, true);
  } else if (message.type === 'hosts' && Array.isArray(message.hosts)) {
    takeHostStates(message.hosts);
  } else if (message.type === 'alerts') {
    takeAlerts(message, true);
  }
}

function connect() {
  window.clearTimeout(fleet.reconnectTimer);
  const socket = openLiveSocket({
    open: (opened) => {
      if (opened === fleet.ws) setConnection('live');
    },
    message: onMessage,
    close: (closed) => {
      if (closed !== fleet.ws) return;
      fleet.ws = null;
      setConnection(navigator.onLine === false ? 'offline' : 'reconnecting');
      reconnectLater();
    },
    failed: reconnectLater,
  });
  if (socket !== null) fleet.ws = socket;
}

function reconnectLater() {
  const { delayMs, attempts } = nextReconnect(fleet.attempts);
  fleet.attempts = attempts;
  fleet.reconnectTimer = window.setTimeout(connect, delayMs);
}

/** Load the chosen range's utilization for the heatmap (one request for every GPU). */
async function loadHeatmap() {
  const gen = ++fleet.historyGen;
  const spanS = RANGES_S[state.rangeKey];
  const intervalS = state.intervalS;
  const buckets = Math.max(1, Math.min(MAX_HEATMAP_BUCKETS, Math.floor(spanS / intervalS)));
  const toS = Math.ceil(serverNowS() / intervalS) * intervalS;
  const status = document.getElementById('fleet-heatmap-status');
  status.textContent = 'loading…';
  try {
    const history = readUtilHistory(await fetchJson(utilHistoryUrl(toS - spanS, toS, buckets), undefined));
    if (gen !== fleet.historyGen) return;
    if (!history) throw new Error('unexpected answer from api/v1/history');
    fleet.heatmap.load(history);
    fleet.heatmapDirty = true;
    status.textContent = `${formatDuration(history.stepS)} buckets`;
    queueFrame();
  } catch (error) {
    if (gen === fleet.historyGen) status.textContent = `History could not be loaded: ${error.message}`;
  }
}

function chooseRange(key) {
  if (!Object.prototype.hasOwnProperty.call(RANGES_S, key) || key === state.rangeKey) return;
  state.rangeKey = key;
  window.history.pushState({ range: key }, '', urlWith('range', key));
  markPressed('data-fleet-range', key);
  loadHeatmap();
  loadRangeTables();
}

/** Build the fleet section: heading, filter, range, heatmap and table. */
function buildSection(section) {
  const head = element('div', 'd-flex flex-wrap align-items-center gap-2 mb-2');
  const title = element('h2', 'h5 mb-0 me-auto', 'Fleet');
  title.id = 'fleet-title';
  const status = element('span', 'small text-body-secondary');
  status.id = 'fleet-status';
  status.setAttribute('aria-live', 'polite');
  const label = element('label', 'visually-hidden', 'Filter GPUs by host, GPU, model, health or holder');
  label.htmlFor = 'fleet-filter';
  const filter = element('input', 'form-control form-control-sm fleet-filter');
  filter.type = 'search';
  filter.id = 'fleet-filter';
  filter.placeholder = 'Filter: host, model, health, user…';
  filter.value = new URLSearchParams(window.location.search).get('q') ?? '';
  head.append(title, status, label, filter);

  const mapHead = element('div', 'd-flex flex-wrap align-items-center gap-2 mb-2');
  const mapTitle = element('h3', 'h6 mb-0 me-auto', 'Utilization over time');
  mapTitle.id = 'fleet-heatmap-title';
  const mapStatus = element('span', 'small text-body-secondary');
  mapStatus.id = 'fleet-heatmap-status';
  const ranges = element('div', 'btn-group btn-group-sm');
  ranges.setAttribute('role', 'group');
  ranges.setAttribute('aria-label', 'Time range');
  for (const key of Object.keys(RANGES_S)) {
    const button = element('button', 'btn btn-outline-secondary', key);
    button.type = 'button';
    button.dataset.fleetRange = key;
    button.addEventListener('click', () => chooseRange(key));
    ranges.append(button);
  }
  mapHead.append(mapTitle, mapStatus, heatmapLegend(), ranges);
  const mapBox = element('div', 'fleet-heatmap-box mb-3');
  const tableTitle = element('h3', 'h6 mb-2', 'GPUs by host');
  tableTitle.id = 'fleet-table-title';
  const tableBox = element('div', 'fleet-table-box');
  section.replaceChildren(head, mapHead, mapBox, tableTitle, tableBox);

  fleet.heatmap = new Heatmap(mapBox, (uuid) => window.location.assign(gpuHref(uuid)));
  fleet.table = new FleetTable(tableBox, {
    filter: filter.value.trim().toLowerCase(),
    onChange: () => {
      window.history.replaceState(window.history.state, '', urlWith('q', fleet.table.filter));
      queueFrame();
    },
  });
  fleet.table.table.setAttribute('aria-labelledby', 'fleet-table-title');
  filter.addEventListener('input', () => fleet.table.setFilter(filter.value));
  markPressed('data-fleet-range', state.rangeKey);
}

async function startFleet() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone) document.getElementById('time-zone').textContent = zone;
  if (config.simulated === true) document.getElementById('sim-banner').hidden = false;
  // The cards, their charts and the host selector are the other view's.
  for (const id of ['gpu-cards', 'host-select']) document.getElementById(id).hidden = true;
  const charts = document.getElementById('history-title');
  if (charts) charts.closest('section').hidden = true;
  // The page's own link to the charts and their range buttons leads to the fleet's instead.
  const toCharts = document.querySelector('.page-nav a[href="#history"]');
  if (toCharts) {
    toCharts.href = '#fleet';
    toCharts.textContent = 'Fleet and time range';
  }
  const section = document.getElementById('fleet');
  buildSection(section);
  section.hidden = false;
  bindAlertPanel();
  bindAlertHistory();
  setConnection('offline');
  readProblemGpusFrom(() => fleet.table.rows.values());
  await pollServer();
  // The rows first: the feed's snapshot, the history and the tables below wait one frame.
  await new Promise((resolve) => { window.requestAnimationFrame(() => window.setTimeout(resolve, 0)); });
  connect();
  window.setInterval(pollServer, POLL_MS);
  window.setInterval(refreshRangeTables, USAGE_REFRESH_MS);
  refreshTablesWhenShown();
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) pollServer(); // the GPU list may have changed while nobody looked
  });
  window.addEventListener('popstate', () => {
    const key = rangeFromUrl();
    if (key === state.rangeKey) return;
    state.rangeKey = key;
    markPressed('data-fleet-range', key);
    loadHeatmap();
    loadRangeTables();
  });
  startAlerts();
  loadRangeTables();
  loadHeatmap();
}
