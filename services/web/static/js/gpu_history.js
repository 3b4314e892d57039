/* The GPU page's history request: every charted metric, for one GPU. */

import { fetchJson } from './api.js';
import { apiUrl, rangeQuery } from './gpu_api.js';
import { CHART_METRICS, showHistory } from './gpu_charts.js';
import { chartWidthPx, showHistoryError } from './history.js';
import { page, rangeWindow } from './gpu_state.js';

const MAX_POINTS = 1000;

function historyUrl(metrics, range, points) {
  const query = rangeQuery(page.uuid, range.fromS, range.toS);
  query.set('points', String(points));
  for (const metric of metrics) query.append('metric', metric);
  return apiUrl('api/v1/history', query);
}

/**
 * Return this GPU's series of a columns answer as the buckets showHistory draws:
 * {buckets: [{ts, count, mean: {metric: value}, max: {metric: value}}]}, mean and max null in
 * a gap; null when the answer does not hold the GPU.
 */
export function bucketsOf(answer, uuid) {
  if (!answer || !Array.isArray(answer.ts) || !Array.isArray(answer.series)) return null;
  const item = answer.series.find((series) => series && series.gpu_uuid === uuid);
  if (!item || !Array.isArray(item.count)) return null;
  const metrics = Object.keys(item.mean || {});
  const value = (values, metric, k) => (values && Array.isArray(values[metric]) ? values[metric][k] ?? null : null);
  const buckets = answer.ts.map((ts, k) => {
    if (!(item.count[k] > 0)) return { ts, count: 0, mean: null, max: null };
    const mean = {};
    const max = {};
    for (const metric of metrics) {
      mean[metric] = value(item.mean, metric, k);
      max[metric] = value(item.max, metric, k);
    }
    return { ts, count: item.count[k], mean, max };
  });
  return { buckets };
}

function setStatus(text) {
  document.getElementById('charts-status').textContent = text;
}

/** Load the chosen range's history of this GPU into the charts. */
export async function loadCharts(entries) {
  const gen = page.gen;
  const range = { ...rangeWindow(), key: page.rangeKey };
  const points = Math.max(1, Math.min(MAX_POINTS, Math.round(chartWidthPx('.gpu-chart .chart-box')), Math.floor(range.spanS / page.intervalS)));
  setStatus('loading…');
  let answer;
  try {
    answer = await fetchJson(historyUrl(CHART_METRICS, range, points), undefined);
  } catch (error) {
    if (gen !== page.gen) return;
    setStatus('');
    showHistoryError(error.message, 'charts-error');
    return;
  }
  if (gen !== page.gen) return;
  const series = bucketsOf(answer, page.uuid);
  showHistoryError('', 'charts-error');
  setStatus(showHistory(entries, series, range, answer ? answer.step_s : 0, page.intervalS));
}
