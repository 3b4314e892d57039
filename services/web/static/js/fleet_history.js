/* The fleet heatmap's one reader of api/v1/history: its request, and every use of the answer's shape. */

import { secondsParam } from './api.js';
import { isNumber } from './format.js';

export const HEATMAP_METRIC = 'util_gpu_pct';

/** Return the request of every GPU's utilization from fromS to toS (epoch s) in `points` buckets. */
export function utilHistoryUrl(fromS, toS, points) {
  const query = new URLSearchParams({
    from: secondsParam(fromS), to: secondsParam(toS), points: String(points), metric: HEATMAP_METRIC,
  });
  return `api/v1/history?${query}`;
}

/**
 * Return the utilization history of an api/v1/history answer as one Float32Array of bucket
 * means per GPU (NaN: no reading in that bucket), on buckets of stepS from fromS:
 * { fromS, stepS, buckets, series: [{ uuid, host, index, name, means, counts }] }, or null for
 * an answer that is not a history. Reads the columns shape that utilHistoryUrl() asks for
 * ({from, to, step_s, ts: [bucket start], series: [{gpu_uuid, host, gpu_index, gpu_name,
 * count: [n], mean: {metric: [value]}}]}); a new shape is adapted here alone.
 */
export function readUtilHistory(answer) {
  if (!answer || !isNumber(answer.step_s) || answer.step_s <= 0 || !Array.isArray(answer.series)
    || !Array.isArray(answer.ts)) return null;
  const stepS = answer.step_s;
  const firstBucket = Math.floor(Number(answer.from) / stepS);
  const lastBucket = Math.ceil(Number(answer.to) / stepS);
  if (!Number.isFinite(firstBucket) || !Number.isFinite(lastBucket)) return null;
  const buckets = Math.max(1, lastBucket - firstBucket);
  const starts = answer.ts;
  const series = [];
  for (const item of answer.series) {
    if (!item || typeof item.gpu_uuid !== 'string') continue;
    const means = new Float32Array(buckets).fill(NaN);
    const counts = new Uint32Array(buckets);
    const put = (ts, count, mean) => {
      const at = isNumber(ts) ? Math.floor(ts / stepS) - firstBucket : -1;
      if (at < 0 || at >= buckets || !isNumber(mean)) return;
      means[at] = mean;
      counts[at] = isNumber(count) && count > 0 ? count : 1;
    };
    const column = item.mean && Array.isArray(item.mean[HEATMAP_METRIC]) ? item.mean[HEATMAP_METRIC] : [];
    const count = Array.isArray(item.count) ? item.count : [];
    for (let at = 0; at < starts.length; at += 1) put(starts[at], count[at], column[at]);
    series.push({
      uuid: item.gpu_uuid, host: String(item.host ?? ''), index: Number(item.gpu_index) || 0,
      name: String(item.gpu_name ?? ''), means, counts,
    });
  }
  return { fromS: firstBucket * stepS, stepS, buckets, series };
}
