/*
 * pyCudaWatch: one GPU's page (GET gpu/<uuid>), reached from its card on the dashboard.
 *
 * Data flow (URLs relative to the page, one level under the dashboard):
 *   GET api/v1/gpus          -> the header: identity, limits, newest reading, health findings
 *                               (shown as the card shows them), asked again every HEADER_POLL_MS
 *   GET api/v1/history       -> the charts, this GPU only, every charted metric at once
 *   GET api/v1/events        -> the event list and the range's counts
 *   GET api/v1/usage         -> this GPU's processes over the range (by=process, gpu=<uuid>)
 *   GET api/v1/processes     -> the processes on it now
 * The range (1h ... 30d, 6h by default) is in the URL (?range=) and reloads all but the header.
 * Text from the machine only ever goes through textContent, title attributes or Chart.js labels.
 *
 *   js/gpu_state.js      which GPU, the chosen range and the window it covers
 *   js/gpu_api.js        API URLs and what this server's OpenAPI document offers
 *   js/gpu_header.js     identity, limits, newest reading and findings
 *   js/gpu_charts.js     the charts: which metrics go together, drawing, "not reported" notes
 *   js/gpu_history.js    the history request behind the charts
 *   js/gpu_events.js     the event list and counts
 *   js/gpu_processes.js  the processes over the range and now
 */

import { oneAtATime } from './api.js';
import { cssVar } from './charts.js';
import { markPressed } from './format.js';
import { buildGpuCharts } from './gpu_charts.js';
import { loadEvents } from './gpu_events.js';
import { loadHeader, placeHealth } from './gpu_header.js';
import { loadCharts } from './gpu_history.js';
import { loadProcesses } from './gpu_processes.js';
import { DEFAULT_RANGE, page } from './gpu_state.js';
import { RANGES_S, rangeFromUrl } from './state.js';

const HEADER_POLL_MS = 15000;
const RANGE_REFRESH_MS = 60000;
let charts = [];

function showRange() {
  markPressed('data-range', page.rangeKey);
  for (const label of document.querySelectorAll('.range-label')) label.textContent = `· last ${page.rangeKey}`;
}

function loadRange() {
  page.gen += 1;
  return Promise.all([loadCharts(charts), loadEvents(), loadProcesses()]);
}

const refreshRange = oneAtATime(() => (document.hidden ? null : loadRange()));

const pollHeader = oneAtATime(async () => {
  const updated = document.getElementById('gpu-updated');
  try {
    if (!(await loadHeader())) updated.textContent = 'the server lists this GPU no more';
  } catch (error) {
    updated.textContent = `the newest reading could not be loaded: ${error.message}`;
  }
});

function chooseRange(key) {
  if (!Object.prototype.hasOwnProperty.call(RANGES_S, key) || key === page.rangeKey) return;
  page.rangeKey = key;
  const url = new URL(window.location.href);
  url.searchParams.set('range', key);
  window.history.pushState({ range: key }, '', url);
  showRange();
  loadRange();
}

function bindControls() {
  for (const button of document.querySelectorAll('[data-range]')) {
    button.addEventListener('click', () => chooseRange(button.dataset.range));
  }
  window.addEventListener('popstate', () => {
    const key = rangeFromUrl(DEFAULT_RANGE);
    if (key === page.rangeKey) return;
    page.rangeKey = key;
    showRange();
    loadRange();
  });
}

function start() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone) document.getElementById('time-zone').textContent = zone;
  window.Chart.defaults.color = cssVar('--bs-secondary-color', '#adb5bd');
  window.Chart.defaults.font.family = cssVar('--bs-body-font-family', 'system-ui, sans-serif');
  placeHealth();
  charts = buildGpuCharts(document.getElementById('gpu-charts'), page.rangeKey);
  showRange();
  bindControls();
  pollHeader();
  loadRange();
  window.setInterval(pollHeader, HEADER_POLL_MS);
  window.setInterval(refreshRange, RANGE_REFRESH_MS);
}

start();
