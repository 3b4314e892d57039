/* The GPU page's history request: every charted metric this server records, for one GPU. */

import { fetchJson } from './api.js';
import { apiDocument, apiUrl, parameterEnum, rangeQuery } from './gpu_api.js';
import { CHART_METRICS, showHistory } from './gpu_charts.js';
import { page, rangeWindow } from './gpu_state.js';

// What /api/v1/history has answered from the start: asked alone when the server refuses others.
const CORE_METRICS = [
  'util_gpu_pct', 'util_mem_pct', 'mem_used_bytes', 'mem_total_bytes', 'temp_c', 'power_w',
  'power_limit_w', 'fan_pct', 'sm_clock_mhz', 'mem_clock_mhz', 'pstate',
];
const MAX_POINTS = 1000;

function chartWidthPx() {
  const box = document.querySelector('.gpu-chart .chart-box');
  const width = box ? box.clientWidth : 0;
  return width > 0 ? width : 600;
}

/** Return the charted metrics that this server's history offers (all, when it does not say). */
async function offeredMetrics() {
  const offered = parameterEnum(await apiDocument(), '/api/v1/history', 'metric');
  return offered ? CHART_METRICS.filter((metric) => offered.includes(metric)) : CHART_METRICS;
}

function historyUrl(metrics, range, points) {
  const query = rangeQuery(page.uuid, range.fromS, range.toS);
  query.set('points', String(points));
  for (const metric of metrics) query.append('metric', metric);
  return apiUrl('api/v1/history', query);
}

function setStatus(text) {
  document.getElementById('charts-status').textContent = text;
}

function showError(message) {
  const box = document.getElementById('charts-error');
  box.hidden = !message;
  box.textContent = message ? `History could not be loaded: ${message}` : '';
}

/** Load the chosen range's history of this GPU into the charts. */
export async function loadCharts(entries) {
  const gen = page.gen;
  const range = { ...rangeWindow(), key: page.rangeKey };
  const points = Math.max(1, Math.min(MAX_POINTS, Math.round(chartWidthPx()), Math.floor(range.spanS / page.intervalS)));
  let metrics = await offeredMetrics();
  setStatus('loading…');
  let answer;
  try {
    try {
      answer = await fetchJson(historyUrl(metrics, range, points), undefined);
    } catch (error) {
      // A server that lists no document and refuses a newer metric: ask for the old ones alone.
      if (error.status !== 400 || !/metric/.test(error.message)) throw error;
      metrics = CHART_METRICS.filter((metric) => CORE_METRICS.includes(metric));
      answer = await fetchJson(historyUrl(metrics, range, points), undefined);
    }
  } catch (error) {
    if (gen !== page.gen) return;
    setStatus('');
    showError(error.message);
    return;
  }
  if (gen !== page.gen) return;
  const series = answer && Array.isArray(answer.series)
    ? answer.series.find((item) => item && item.gpu_uuid === page.uuid) : null;
  showError('');
  setStatus(showHistory(entries, series, range, metrics, answer ? answer.step_s : 0, page.intervalS));
}
