/* Chart points: server buckets, gaps, and live ticks merged into the loaded history. */

import { ensureGpu } from './cards.js';
import { datasetFor, queueRender } from './charts.js';
import { isNumber, positive } from './format.js';
import { RANGES_S, state } from './state.js';

export const RING_TICKS = 512; // recent ticks kept to rebuild the newest buckets after a history load

export function bucketStartS(tsS, stepS) {
  return Math.floor(tsS / stepS + 1e-9) * stepS;
}

function scaled(value, def) {
  return isNumber(value) ? value * def.scale : null;
}

function gapAfterS(stepS, intervalS) {
  return Math.max(1.5 * stepS, 2.5 * intervalS);
}

/** Merge one live reading into the dataset's bucket for its time; false when not taken. */
function addPoint(dataset, tsS, value, intervalS) {
  const stepS = state.history.stepS;
  if (tsS < dataset.pcwLiveFromS) return false; // already part of the loaded history
  const x = bucketStartS(tsS, stepS) * 1000;
  const data = dataset.data;
  const last = data.length ? data[data.length - 1] : null;
  if (last && x < last.x) return false;
  if (last && x === last.x) {
    if (value !== null) {
      last.n = (last.n || 0) + 1;
      last.sum = (last.sum || 0) + value;
      last.y = last.sum / last.n;
      last.max = isNumber(last.max) ? Math.max(last.max, value) : value;
    }
    return true;
  }
  if (last && last.y !== null && x - last.x > gapAfterS(stepS, intervalS) * 1000) {
    data.push({ x: last.x + stepS * 1000, y: null, max: null }); // a gap, not a slope
  }
  data.push({ x, y: value, max: value, n: value === null ? 0 : 1, sum: value === null ? 0 : value });
  dropOlderThan(data, x - RANGES_S[state.rangeKey] * 1000 - stepS * 1000);
  return true;
}

/** Drop the points before minMs, keeping one so the line enters from the chart's edge. */
export function dropOlderThan(data, minMs) {
  let first = 0;
  while (first + 1 < data.length && data[first + 1].x < minMs) first += 1;
  if (first > 0) data.splice(0, first);
}

export function mergeTickIntoCharts(tick) {
  if (!state.history) return;
  const intervalS = positive(tick.interval_s, state.intervalS);
  for (const item of tick.gpus) {
    const gpu = state.gpus.get(item.gpu_uuid);
    const reading = item.latest;
    if (!gpu || !reading) continue;
    for (const entry of state.charts) {
      const value = reading.error ? null : scaled(reading[entry.def.metric], entry.def);
      if (addPoint(datasetFor(entry, gpu), tick.ts, value, intervalS)) {
        state.lastLiveTs = Math.max(state.lastLiveTs ?? tick.ts, tick.ts);
      }
    }
  }
}

/** The chart points of one GPU's columns (an answer's series) for buckets 0..end-1. */
function pointsFromColumns(starts, series, end, def) {
  const means = series.mean && Array.isArray(series.mean[def.metric]) ? series.mean[def.metric] : [];
  const maxima = series.max && Array.isArray(series.max[def.metric]) ? series.max[def.metric] : [];
  const points = new Array(end);
  for (let k = 0; k < end; k += 1) {
    points[k] = { x: starts[k] * 1000, y: scaled(means[k], def), max: scaled(maxima[k], def) };
  }
  return points;
}

/** Return how many leading buckets to draw: those closed at requestNowS, less the gaps at the end. */
function closedBuckets(starts, counts, stepS, requestNowS) {
  let end = 0;
  while (end < starts.length && isNumber(starts[end]) && starts[end] + stepS <= requestNowS) end += 1;
  while (end > 0 && !(counts[end - 1] > 0)) end -= 1;
  return end;
}

/**
 * Put a history answer (columns: `ts` once, per GPU `count`, `mean` and `max` arrays) into the
 * charts. Buckets from cutS on replace what the charts hold
 * (cutS null: everything). The bucket still filling at requestNowS and the empty buckets at
 * the end are left out: live ticks (and the recent ones in the ring) fill them instead, so no
 * reading is counted twice and the newest point keeps moving.
 */
export function applyHistory(answer, cutS, requestNowS) {
  const stepS = answer.step_s;
  const starts = answer.ts;
  const seen = new Set();
  for (const series of answer.series) {
    const gpu = ensureGpu(series);
    if (!gpu || !Array.isArray(series.count)) continue;
    seen.add(gpu.uuid);
    const end = closedBuckets(starts, series.count, stepS, requestNowS);
    const liveFromS = end ? starts[end - 1] + stepS : (cutS ?? answer.from);
    for (const entry of state.charts) {
      const dataset = datasetFor(entry, gpu);
      const kept = cutS === null ? [] : dataset.data.filter((point) => point.x < cutS * 1000);
      dataset.data = kept.concat(pointsFromColumns(starts, series, end, entry.def));
      dataset.pcwLiveFromS = liveFromS;
    }
  }
  for (const entry of state.charts) {
    for (const dataset of entry.chart.data.datasets) {
      if (!seen.has(dataset.pcwUuid)) {
        // No history for this GPU in the answer: drop what the answer covers, rebuild from ticks.
        dataset.data = cutS === null ? [] : dataset.data.filter((point) => point.x < cutS * 1000);
        dataset.pcwLiveFromS = cutS === null ? -Infinity : cutS;
      }
    }
  }
  for (const tick of state.ring) mergeTickIntoCharts(tick);
  queueRender();
}
