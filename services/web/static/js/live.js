/* The live feed: the websocket's snapshot, ticks, host notices and alerts, and reconnecting. */

import { loadAlertHistory } from './alerts_history.js';
import { takeAlerts } from './alerts.js';
import { ensureGpu, loadGpus, refreshStale, updateCard } from './cards.js';
import { queueRender } from './charts.js';
import { refreshConnBadge, setConnection } from './conn_badge.js';
import { isNumber } from './format.js';
import { fillMissed, loadRange } from './history.js';
import { refreshHostState, setHostError, takeHostState } from './hosts.js';
import { refreshProblems } from './problems.js';
import { RING_TICKS, mergeTickIntoCharts } from './series.js';
import { nextReconnect, openLiveSocket } from './socket.js';
import { state } from './state.js';

const OFFLINE_AFTER_MS = 60000; // reconnecting for longer than this shows "offline"
const CLOCK_SKEW_MIN_S = 2; // server clock differences below this are latency, not skew

function validTick(tick) {
  return tick && typeof tick.host === 'string' && isNumber(tick.ts) && Array.isArray(tick.gpus);
}

/** Note how far the server's clock (a live tick's time, epoch s) is from this browser's, for
 * serverNowS(); both views call it on each live tick. */
export function noteServerClock(tickTs) {
  const offsetS = tickTs - Date.now() / 1000;
  state.clockOffsetS = Math.abs(offsetS) > CLOCK_SKEW_MIN_S ? offsetS : 0;
}

/** Take a tick; hostState: what the server said of its host with it (null: nothing). */
function takeTick(tick, live, hostState) {
  if (!validTick(tick)) return;
  if (live) noteServerClock(tick.ts);
  if (hostState) takeHostState(hostState, true);
  setHostError(tick.host, tick.error);
  for (const item of tick.gpus) {
    if (!item || typeof item !== 'object' || !item.latest) continue;
    const gpu = ensureGpu(item);
    if (!gpu) continue;
    // A GPU in its host's tick is as stale as its host: the server's word on it alone is old.
    if (hostState && (gpu.lastTs === null || tick.ts >= gpu.lastTs)) gpu.stale = hostState.stale === true;
    updateCard(gpu, item.latest, tick.ts, item);
  }
  refreshHostState(tick.host);
  refreshProblems();
  refreshConnBadge();
  // A snapshot after a reconnect repeats the tick seen last: count each tick once.
  const hostTs = state.hostTickTs.get(tick.host);
  if (hostTs !== undefined && tick.ts <= hostTs) return;
  state.hostTickTs.set(tick.host, tick.ts);
  state.ring.push(tick);
  if (state.ring.length > RING_TICKS) state.ring.splice(0, state.ring.length - RING_TICKS);
  mergeTickIntoCharts(tick);
  queueRender();
}

function onMessage(socket, message) {
  if (socket !== state.ws) return;
  if (message.type === 'snapshot' && Array.isArray(message.ticks)) {
    const reconnected = state.everConnected;
    const lastLiveTs = state.lastLiveTs; // before the snapshot moves it
    state.everConnected = true;
    state.attempts = 0;
    state.downSinceMs = null;
    const hosts = new Map();
    for (const item of Array.isArray(message.hosts) ? message.hosts : []) {
      if (item && typeof item.host === 'string') hosts.set(item.host, item);
    }
    for (const tick of message.ticks) takeTick(tick, false, validTick(tick) ? hosts.get(tick.host) : null);
    if (!state.gpusLoaded) loadGpus(false); // the first try found the server down
    if (!state.history && !state.historyPending) loadRange();
    else if (reconnected && state.history) fillMissed(lastLiveTs);
    if (reconnected) loadAlertHistory(); // alerts may have fired and resolved while away
  } else if (message.type === 'tick') {
    takeTick(message.tick, true, message.host_state);
  } else if (message.type === 'hosts' && Array.isArray(message.hosts)) {
    for (const item of message.hosts) takeHostState(item, true);
    refreshStale();
  } else if (message.type === 'alerts') {
    takeAlerts(message, true);
  }
}

function onClose(socket) {
  if (socket !== state.ws) return;
  state.ws = null;
  if (state.downSinceMs === null) state.downSinceMs = Date.now();
  const longDown = Date.now() - state.downSinceMs > OFFLINE_AFTER_MS;
  setConnection(longDown || navigator.onLine === false ? 'offline' : 'reconnecting');
  scheduleReconnect();
}

function scheduleReconnect() {
  window.clearTimeout(state.reconnectTimer);
  const { delayMs, attempts } = nextReconnect(state.attempts);
  state.attempts = attempts;
  state.reconnectTimer = window.setTimeout(connect, delayMs);
}

export function connect() {
  window.clearTimeout(state.reconnectTimer);
  const socket = openLiveSocket({
    open: (opened) => {
      if (opened === state.ws) setConnection('live');
    },
    message: onMessage,
    close: onClose,
    failed: scheduleReconnect,
  });
  if (socket !== null) state.ws = socket;
}
