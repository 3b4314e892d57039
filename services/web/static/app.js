/*
 * pyCudaWatch dashboard: GPU cards, four history charts and the live feed.
 *
 * Data flow:
 *   GET api/v1/gpus            -> cards (identity, latest reading, processes, MIG, idle flag,
 *                                 stale flag), asked again every POLL_MS
 *   GET api/v1/hosts           -> the host selector and each host's stale badge
 *   GET api/v1/history         -> chart points, one per server bucket (mean, tooltip shows max)
 *   GET api/v1/processes       -> since when each process runs; the processes at a clicked point
 *   GET api/v1/usage, energy   -> the "who used the GPUs" and energy tables of the chosen range
 *   GET api/v1/alerts          -> the alerts' history (transitions), asked again when an alert
 *                                 changes state, and at the start what fires now; POST api/v1/silences, .../end and
 *                                 api/v1/notifications/test from the alerts section's buttons
 *   WS  ws (snapshot, ticks)   -> each tick's GPUs in the shape api/v1/gpus lists them (one
 *                                 ensureGpu / updateCard reads both): cards and process
 *                                 tables, and points merged into the same
 *                                 buckets, so a page left open for days keeps about as many
 *                                 points as one history answer; each host's stale flag, and
 *                                 {type: hosts} the moment a host goes stale, and
 *                                 {type: alerts}: the alerts firing or pending, the silences
 *                                 and the delivery counts, after the snapshot and on each change
 * Staleness is the server's word, never judged here: the server has one rule, each host's own
 * interval, and the clock the hosts' ticks arrived by (see takeHostState).
 * An endpoint the server does not have (404) leaves its part of the page saying so; the rest works.
 * Polls never overlap: one still waiting for a slow server makes the next one skip. A 401 (the
 * sign-in was revoked) shows a "signed out" notice until a request is accepted again.
 * Times are UTC epoch seconds on the wire and are shown in the browser's time zone.
 * Text from the machine (GPU, host, process and user names, command lines, errors) only ever goes
 * through textContent, title attributes or Chart.js labels drawn on a canvas, never through HTML
 * parsing. No inline style either (the Content-Security-Policy forbids it): classes and CSSOM only.
 *
 * Native ES modules, no build step; this entry wires them (the page loads it as type="module"):
 *   js/state.js        the page's one mutable state, its settings and URL parameters
 *   js/format.js       numbers, units, times and DOM text helpers (no state)
 *   js/api.js          fetchJson (the 401 notice) and oneAtATime
 *   js/hosts.js        host sections, the host selector and each host's stale state
 *   js/cards.js        the GPU cards: readings, MIG, idle flag, and the GPU list poll
 *   js/tables.js       table heads and process rows shared by the cards and the point panel
 *   js/processes.js    each card's process table and since when each process runs
 *   js/charts.js       the four Chart.js charts: datasets, axes, tooltips, drawing
 *   js/series.js       chart points: buckets, gaps, ticks merged into the loaded history
 *   js/history.js      history requests for the chosen range and after a reconnect
 *   js/point-panel.js  the processes at a clicked chart point
 *   js/usage.js        the usage and energy tables of the chosen range
 *   js/alerts.js       the alerts messages: the banner of what fires, badges, alerts section
 *   js/alert_text.js   how alerts read: severity order and colour, where, until when silenced
 *   js/alert_items.js  a list of alerts updated in place (the banner's, the section's)
 *   js/alert_silence.js the silence buttons of an alert and the End button of a silence
 *   js/alert_badges.js each GPU card's alert badge
 *   js/alert_panel.js  the alerts now, silences, delivery counts and the test notification
 *   js/alerts_history.js the alerts' transitions by state, range and rule
 *   js/problems.js     the problems strip: GPUs in error, stale hosts, throttled and idle GPUs,
 *                      each a link to its card or host, and their count in the page title
 *   js/conn_badge.js   the navbar's badge: live, stale since when, reconnecting or offline
 *   js/live.js         the websocket: snapshot, ticks, host notices, alerts, reconnecting
 *   js/controls.js     range, host and grouping buttons, and the URL they keep
 * Relative imports without ?v=: the server has the browser revalidate js/ on every load (ETag),
 * while this entry is cached by its ?v=<hash> URL, so one page never mixes two releases.
 */

import { bindAlertPanel } from './js/alert_panel.js';
import { startAlerts } from './js/alerts.js';
import { bindAlertHistory } from './js/alerts_history.js';
import { oneAtATime } from './js/api.js';
import { loadGpus, refreshStale } from './js/cards.js';
import { CHARTS, buildChart, cssVar, queueRender } from './js/charts.js';
import { setConnection } from './js/conn_badge.js';
import { bindControls, showRange } from './js/controls.js';
import { loadRange, watchChartWidth } from './js/history.js';
import { fillHostSelect, loadHosts } from './js/hosts.js';
import { connect } from './js/live.js';
import { startPage } from './js/fleet.js';
import { config, state } from './js/state.js';
import { loadRangeTables, refreshRangeTables, refreshTablesWhenShown } from './js/usage.js';

const POLL_MS = 15000; // idle flags and stale flags are asked of the server this often
const USAGE_REFRESH_MS = 60000;
const pollServer = oneAtATime(() => Promise.all([loadGpus(true), loadHosts()]));

async function start() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone) document.getElementById('time-zone').textContent = zone;
  if (config.simulated === true) document.getElementById('sim-banner').hidden = false;
  window.Chart.defaults.color = cssVar('--bs-secondary-color', '#adb5bd');
  window.Chart.defaults.font.family = cssVar('--bs-body-font-family', 'system-ui, sans-serif');
  state.charts = CHARTS.map(buildChart);
  watchChartWidth(); // the history's points: one a pixel of the charts' width
  showRange();
  bindControls();
  bindAlertPanel();
  bindAlertHistory();
  setConnection('offline');
  connect();
  fillHostSelect();
  window.setInterval(refreshStale, 5000);
  window.setInterval(queueRender, 10000); // slide the window even when no tick comes
  window.setInterval(pollServer, POLL_MS);
  window.setInterval(refreshRangeTables, USAGE_REFRESH_MS);
  refreshTablesWhenShown();
  loadHosts();
  startAlerts();
  await loadGpus(false);
  loadRangeTables();
  await loadRange();
}

startPage(start); // the cards view (start) or, for many GPUs, the fleet view
