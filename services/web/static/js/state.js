/* The page's one mutable state, the settings the server put in the page, and the URL's choices. */

import { positive } from './format.js';

export const RANGES_S = { '1h': 3600, '6h': 6 * 3600, '24h': 24 * 3600, '7d': 7 * 86400, '30d': 30 * 86400 };
const DEFAULT_RANGE = '1h';
export const config = readConfig();

export const state = {
  rangeKey: rangeFromUrl(),
  hostFilter: hostFromUrl(), // null: every host
  usageBy: 'user',
  serverHosts: new Map(), // host -> { stale, staleSinceS, lastSeenS, intervalS } from the server
  hostsApi: true, // false once api/v1/hosts answered 404
  idleUtilPct: null,
  idleAfterS: null,
  usageGen: 0,
  tablesMissed: false, // a usage and energy refresh was skipped while the page was hidden
  energyGen: 0,
  pointGen: 0,
  historyByHost: true, // false once the server refused history's host parameter
  intervalS: positive(config.interval_s, 60),
  gpus: new Map(), // uuid -> GPU record (identity, card elements, colour)
  hosts: new Map(), // host name -> { section, row, alert }
  charts: [], // { def, chart }
  ring: [], // recent ticks, oldest first
  history: null, // { stepS } of the loaded range
  historyPending: false,
  gpusLoaded: false,
  loadGen: 0,
  loadAbort: null,
  clockOffsetS: 0,
  lastTickTs: null, // newest reading timestamp shown on any card
  hostTickTs: new Map(), // host -> newest tick timestamp taken into the charts
  lastLiveTs: null, // newest tick timestamp merged into the charts
  ws: null,
  connection: 'offline', // the live feed's socket: live (open), reconnecting or offline
  everConnected: false,
  attempts: 0,
  downSinceMs: null,
  reconnectTimer: null,
  renderQueued: false,
  // The alerts: the newest websocket word on them, and the history's choices.
  alerts: { active: [], silences: [], deliveries: null, signature: '', live: false },
  alertHistory: { state: null, rangeKey: '7d', rule: null, gen: 0, rulesSeen: new Set() },
};

function readConfig() {
  const node = document.getElementById('pcw-config');
  try {
    return node ? JSON.parse(node.textContent) : {};
  } catch (error) {
    return {};
  }
}

export function rangeFromUrl(fallback = DEFAULT_RANGE) {
  const key = new URLSearchParams(window.location.search).get('range');
  return Object.prototype.hasOwnProperty.call(RANGES_S, key) ? key : fallback;
}

export function hostFromUrl() {
  const host = new URLSearchParams(window.location.search).get('host');
  return host ? host : null;
}

export function hostShown(host) {
  return state.hostFilter === null || host === state.hostFilter;
}

export function serverNowS() {
  return Date.now() / 1000 + state.clockOffsetS;
}
