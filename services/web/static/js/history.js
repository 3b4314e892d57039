/* History requests: the chosen range, and what a reconnect missed. */

import { fetchJson, secondsParam } from './api.js';
import { CHARTED_METRICS } from './charts.js';
import { formatDuration, isNumber } from './format.js';
import { applyHistory, bucketStartS } from './series.js';
import { RANGES_S, serverNowS, state } from './state.js';

const MAX_API_POINTS = 2000;

const seenWidthsPx = new Map(); // selector -> its box's width as its ResizeObserver last saw it
const watchedBoxes = new Map(); // box -> selector
const boxSizes = typeof ResizeObserver === 'function' ? new ResizeObserver((entries) => {
  // read after the browser's own layout: no layout forced here
  for (const entry of entries) seenWidthsPx.set(watchedBoxes.get(entry.target), entry.target.clientWidth);
}) : null;

/**
 * Watch the width of the first box the selector finds, from the next frame on. Reading
 * clientWidth right after the cards came in forced a layout of the whole page inside that task
 * (150 ms on a phone), where the next frame lays it out anyway.
 */
export function watchChartWidth(selector = '.chart-box') {
  const box = document.querySelector(selector);
  if (box && boxSizes && !watchedBoxes.has(box)) {
    watchedBoxes.set(box, selector);
    boxSizes.observe(box);
  }
}

/** Return the width of the first box the selector finds (600 when none), as last seen if watched. */
export function chartWidthPx(selector = '.chart-box') {
  const seen = seenWidthsPx.get(selector);
  if (seen > 0) return seen;
  watchChartWidth(selector);
  const box = document.querySelector(selector);
  const width = box ? box.clientWidth : 0;
  return width > 0 ? width : 600;
}

function historyUrl(fromS, toS, points) {
  const query = new URLSearchParams({ from: secondsParam(fromS), to: secondsParam(toS), points: String(points) });
  for (const metric of CHARTED_METRICS) query.append('metric', metric); // a third of the bytes
  if (state.hostFilter !== null && state.historyByHost) query.append('host', state.hostFilter);
  return `api/v1/history?${query}`;
}

/** The columns answer (the server's default): bucket starts once, then each GPU's arrays. */
function validHistory(answer) {
  return answer && isNumber(answer.step_s) && answer.step_s > 0 && Array.isArray(answer.ts)
    && Array.isArray(answer.series);
}

export function showHistoryError(message, id = 'history-error') {
  const box = document.getElementById(id);
  box.hidden = !message;
  box.textContent = message ? `History could not be loaded: ${message}` : '';
}

function setHistoryStatus(text) {
  document.getElementById('history-status').textContent = text;
}

/** Load the whole selected range and replace the charts' points with it. */
export async function loadRange() {
  const gen = ++state.loadGen;
  if (state.loadAbort) state.loadAbort.abort();
  const abort = new AbortController();
  state.loadAbort = abort;
  const spanS = RANGES_S[state.rangeKey];
  const intervalS = state.intervalS;
  // At most one bucket per interval: narrower buckets would be mostly empty and draw as gaps.
  const points = Math.max(1, Math.min(MAX_API_POINTS, Math.round(chartWidthPx()), Math.floor(spanS / intervalS)));
  const requestNowS = serverNowS();
  const toS = Math.ceil(requestNowS / intervalS) * intervalS;
  setHistoryStatus('loading…');
  state.historyPending = true;
  try {
    const answer = await fetchJson(historyUrl(toS - spanS, toS, points), abort.signal);
    if (gen !== state.loadGen) return;
    if (!validHistory(answer)) throw new Error('unexpected answer from api/v1/history');
    state.history = { stepS: answer.step_s };
    applyHistory(answer, null, requestNowS);
    showHistoryError('');
    setHistoryStatus(`${formatDuration(answer.step_s)} buckets`);
  } catch (error) {
    if (gen !== state.loadGen || error.name === 'AbortError') return;
    if (error.status === 400 && state.hostFilter !== null && state.historyByHost && /host/.test(error.message)) {
      state.historyByHost = false; // an older server: ask for every host, draw the chosen one
      loadRange();
      return;
    }
    setHistoryStatus('');
    showHistoryError(error.message);
  } finally {
    if (gen === state.loadGen) state.historyPending = false;
  }
}

/** After a reconnect, fetch only the buckets from the last live one on, and merge them. */
export async function fillMissed(lastLiveTs) {
  const history = state.history;
  if (!history || lastLiveTs === null) {
    await loadRange();
    return;
  }
  const stepS = history.stepS;
  const requestNowS = serverNowS();
  const fromS = bucketStartS(lastLiveTs, stepS);
  const toS = bucketStartS(requestNowS, stepS) + stepS;
  const points = Math.round((toS - fromS) / stepS);
  if (points > MAX_API_POINTS || fromS < requestNowS - RANGES_S[state.rangeKey]) {
    await loadRange();
    return;
  }
  const gen = state.loadGen;
  try {
    const answer = await fetchJson(historyUrl(fromS, toS, points), undefined);
    if (gen !== state.loadGen) return;
    if (!validHistory(answer) || Math.abs(answer.step_s - stepS) > 1e-9) {
      await loadRange(); // the server chose other buckets: start over rather than mix them
      return;
    }
    applyHistory(answer, fromS, requestNowS);
    showHistoryError('');
  } catch (error) {
    if (gen === state.loadGen) showHistoryError(error.message);
  }
}
