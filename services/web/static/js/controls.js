/* Range, host and usage grouping buttons, and the page URL that keeps the choices. */

import { queueRender, showDatasets, toggleChartTable } from './charts.js';
import { refreshConnBadge, setConnection } from './conn_badge.js';
import { markPressed, namedScrollArea } from './format.js';
import { loadRange } from './history.js';
import { fillHostSelect } from './hosts.js';
import { connect } from './live.js';
import { bindPointPanel, closePointPanel, refreshPointPicker } from './point-panel.js';
import { refreshProblems } from './problems.js';
import { RANGES_S, hostFromUrl, hostShown, rangeFromUrl, state } from './state.js';
import { USAGE_BY, loadRangeTables, loadUsage } from './usage.js';

export function showRange() {
  markPressed('data-range', state.rangeKey);
}

function chooseRange(key) {
  if (!Object.prototype.hasOwnProperty.call(RANGES_S, key) || key === state.rangeKey) return;
  state.rangeKey = key;
  const url = new URL(window.location.href);
  url.searchParams.set('range', key);
  window.history.pushState({ range: key }, '', url);
  showRange();
  queueRender();
  loadRange().then(refreshPointPicker);
  loadRangeTables();
}

function chooseHost(host) {
  if (host === state.hostFilter) return;
  state.hostFilter = host;
  const url = new URL(window.location.href);
  if (host === null) url.searchParams.delete('host');
  else url.searchParams.set('host', host);
  window.history.pushState({ host }, '', url);
  applyHostFilter();
}

/** Show the chosen host's cards and lines only, and load its history and energy. */
function applyHostFilter() {
  for (const [host, entry] of state.hosts) entry.section.hidden = !hostShown(host);
  fillHostSelect();
  refreshProblems();
  refreshConnBadge();
  showDatasets();
  const panel = document.getElementById('point-panel');
  const pointGpu = state.gpus.get(panel.dataset.gpuUuid);
  if (!panel.hidden && pointGpu && !hostShown(pointGpu.host)) closePointPanel();
  loadRange();
  loadRangeTables();
}

function chooseUsageBy(by) {
  if (!Object.prototype.hasOwnProperty.call(USAGE_BY, by) || by === state.usageBy) return;
  state.usageBy = by;
  loadUsage();
}

export function bindControls() {
  for (const button of document.querySelectorAll('[data-range]')) {
    button.addEventListener('click', () => chooseRange(button.dataset.range));
  }
  for (const button of document.querySelectorAll('[data-usage-by]')) {
    button.addEventListener('click', () => chooseUsageBy(button.dataset.usageBy));
  }
  const select = document.getElementById('host-select');
  select.addEventListener('change', () => chooseHost(select.value || null));
  document.getElementById('point-close').addEventListener('click', closePointPanel);
  bindPointPanel();
  for (const button of document.querySelectorAll('.chart-table-toggle')) {
    button.addEventListener('click', () => toggleChartTable(button));
  }
  for (const box of document.querySelectorAll('[data-scroll-label]')) namedScrollArea(box, box.dataset.scrollLabel);
  window.addEventListener('popstate', () => {
    const key = rangeFromUrl();
    const host = hostFromUrl();
    if (host !== state.hostFilter) {
      state.rangeKey = key;
      showRange();
      state.hostFilter = host;
      applyHostFilter();
      return;
    }
    if (key === state.rangeKey) return;
    state.rangeKey = key;
    showRange();
    loadRange();
    loadRangeTables();
  });
  window.addEventListener('online', () => {
    if (!state.ws) {
      state.attempts = 0;
      connect();
    }
  });
  window.addEventListener('offline', () => {
    if (!state.ws) setConnection('offline');
  });
}
