/* The fleet view: for many GPUs, a dense table (one row per GPU, grouped by host with totals,
 * sortable, filterable) and a utilization heatmap in place of the cards and the four charts.
 *
 * startPage(startCards) decides which view the page shows: the URL's ?view=fleet|cards, else the
 * fleet view for more than CARDS_MAX_GPUS GPUs; the choice is written into the URL
 * (replaceState) and the toggle's links switch it (a new page load: the views share no DOM).
 * In the fleet view the cards' machinery never starts (256 cards take seconds to build): this
 * module asks api/v1/gpus itself (every POLL_MS), listens to the websocket itself, and renders
 * at most once per animation frame. The alerts, usage and energy parts work as in the cards view.
 * Data: api/v1/gpus -> rows; ws ticks -> rows and the heatmap's newest bucket; api/v1/history
 * (utilization only, read by fleet_history.js's readUtilHistory) -> the heatmap.
 */

import { bindAlertPanel } from './alert_panel.js';
import { startAlerts, takeAlerts } from './alerts.js';
import { bindAlertHistory } from './alerts_history.js';
import { fetchJson, oneAtATime } from './api.js';
import { setConnection } from './conn_badge.js';
import { element, formatClock, formatDuration, isNumber, markPressed } from './format.js';
import { Heatmap, heatmapLegend } from './fleet_heatmap.js';
import { readUtilHistory, utilHistoryUrl } from './fleet_history.js';
import { newRow, takeReading } from './fleet_rows.js';
import { FleetTable, gpuHref } from './fleet_table.js';
import { nextReconnect, openLiveSocket } from './socket.js';
import { RANGES_S, config, rangeFromUrl, serverNowS, state } from './state.js';
import { loadRangeTables, refreshRangeTables } from './usage.js';

export const CARDS_MAX_GPUS = 16; // past this, two cards a row fill screens: the fleet view
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
  heatmapDirty: false,
  historyGen: 0,
  ws: null,
  attempts: 0,
  measures: 0,
  reconnectTimer: null,
  firstDrawn: false,
};

export function viewFromUrl() {
  const view = new URLSearchParams(window.location.search).get('view');
  return Object.prototype.hasOwnProperty.call(VIEWS, view) ? view : null;
}

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

/**
 * Start the page in the view the URL names, else the one the GPU count calls for; startCards:
 * the cards view's start. The choice goes into the URL so that a reload or a link keeps it.
 */
export async function startPage(startCards) {
  let view = viewFromUrl();
  let answer = null;
  if (view === null) {
    try {
      answer = await fetchJson('api/v1/gpus', undefined);
    } catch (error) {
      answer = null; // the cards view says what is wrong and retries
    }
    const count = answer && Array.isArray(answer.gpus) ? answer.gpus.length : 0;
    view = count > CARDS_MAX_GPUS ? 'fleet' : 'cards';
    window.history.replaceState(window.history.state, '', urlWith('view', view));
  }
  document.body.dataset.view = view;
  showToggle(view);
  if (view === 'cards') {
    // The server may have served the fleet's places (it counted the GPUs a moment before).
    for (const id of ['gpu-cards', 'history', 'host-select']) document.getElementById(id).hidden = false;
    const place = document.getElementById('fleet');
    place.hidden = true;
    place.classList.remove('fleet-place');
    return startCards();
  }
  return startFleet(answer);
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
  if (fleet.heatmapDirty) {
    fleet.heatmapDirty = false;
    fleet.heatmap.setGpus(orderedRows());
    fleet.heatmap.draw();
  }
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
    fleet.heatmapDirty = true;
  }
  return row;
}

/** Take api/v1/gpus: every GPU's newest reading, staleness and idle flag. */
function takeGpuList(answer) {
  if (!answer || !Array.isArray(answer.gpus)) return;
  if (answer.simulated === true) document.getElementById('sim-banner').hidden = false;
  if (isNumber(answer.interval_s) && answer.interval_s > 0) state.intervalS = answer.interval_s;
  for (const item of answer.gpus) {
    const row = rowFor(item);
    if (!row) continue;
    const latestTs = item.latest ? item.latest.ts : null;
    takeReading(row, item, latestTs);
    const stale = item.stale === true;
    const hostStale = item.host_stale === true;
    const idle = Boolean(item.idle && isNumber(item.idle.since_ts));
    if (stale !== row.stale || hostStale !== row.hostStale || idle !== row.idle) {
      row.stale = stale;
      row.hostStale = hostStale;
      row.idle = idle;
      row.version += 1;
    }
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

function setStatus(text) {
  document.getElementById('fleet-status').textContent = text;
}

/** Take one host's tick from the websocket; hostState: the server's word on its host. */
function takeTick(tick, hostState) {
  if (!tick || typeof tick.host !== 'string' || !isNumber(tick.ts) || !Array.isArray(tick.gpus)) return;
  const hostStale = hostState ? hostState.stale === true : false;
  for (const item of tick.gpus) {
    if (!item || typeof item !== 'object' || !item.latest) continue;
    const row = rowFor({ ...item, host: item.host ?? tick.host });
    if (!row) continue;
    if (takeReading(row, item, tick.ts)) {
      row.stale = hostStale;
      row.hostStale = hostStale;
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

function takeHostStates(hosts) {
  const stale = new Map(hosts.filter((item) => item && typeof item.host === 'string').map((item) => [item.host, item.stale === true]));
  for (const row of fleet.table.rows.values()) {
    if (!stale.has(row.host) || stale.get(row.host) === row.hostStale) continue;
    row.hostStale = stale.get(row.host);
    row.version += 1;
    fleet.changedHosts.add(row.host);
  }
  queueFrame();
}

function onMessage(socket, message) {
  if (socket !== fleet.ws) return;
  if (message.type === 'snapshot' && Array.isArray(message.ticks)) {
    fleet.attempts = 0;
    const hosts = new Map((Array.isArray(message.hosts) ? message.hosts : [])
      .filter((item) => item && typeof item.host === 'string').map((item) => [item.host, item]));
    for (const tick of message.ticks) takeTick(tick, tick && hosts.get(tick.host));
  } else if (message.type === 'tick') {
    takeTick(message.tick, message.host_state);
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

async function startFleet(answer) {
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
  if (answer) takeGpuList(answer);
  else await pollGpus();
  // The rows first: the feed's snapshot, the history and the tables below wait one frame.
  await new Promise((resolve) => { window.requestAnimationFrame(() => window.setTimeout(resolve, 0)); });
  connect();
  window.setInterval(pollGpus, POLL_MS);
  window.setInterval(refreshRangeTables, USAGE_REFRESH_MS);
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
