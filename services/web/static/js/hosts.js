/* Host sections, the host selector, each host's stale state, and how GPUs are named and ordered. */

import { fetchJson } from './api.js';
import { refreshStale } from './cards.js';
import { relabelDatasets } from './charts.js';
import {
  element,
  fillSelect,
  formatDuration,
  formatFull,
  formatWhen,
  isNumber,
  positive,
  putText,
} from './format.js';
import { hostShown, state } from './state.js';

export function ensureHost(host) {
  let entry = state.hosts.get(host);
  if (entry) return entry;
  const section = element('section', 'host-group mb-3');
  section.id = hostSectionId(host); // the problems strip links here
  section.dataset.host = host;
  section.dataset.stale = 'false';
  section.hidden = !hostShown(host);
  const title = element('h2', 'host-title mb-2'); // no display class: those beat `hidden`
  const stale = element('span', 'badge text-bg-warning ms-2 host-stale', 'stale');
  stale.hidden = true;
  const seen = element('span', 'small ms-2 host-seen');
  seen.hidden = true;
  const seenAt = element('span', 'exact-time ms-1 host-seen-at'); // the exact time, in words
  seenAt.hidden = true;
  title.append(element('span', 'host-name', host), stale, seen, seenAt);
  // What the stale badge's title says, in words a keyboard or a touch reads too.
  const staleNote = element('p', 'small mb-2 host-stale-note');
  staleNote.hidden = true;
  const alert = element('div', 'alert alert-danger py-1 px-2 small host-error');
  alert.hidden = true;
  alert.setAttribute('role', 'alert');
  const row = element('div', 'row row-cols-1 row-cols-lg-2 g-3 gpu-row');
  section.append(title, staleNote, alert, row);
  const container = document.getElementById('gpu-cards');
  const after = [...state.hosts.keys()].sort().find((other) => other > host);
  container.insertBefore(section, after ? state.hosts.get(after).section : null);
  entry = { section, title, stale, seen, seenAt, staleNote, alert, row, staleNow: false };
  state.hosts.set(host, entry);
  refreshHostTitles();
  fillHostSelect();
  document.getElementById('no-gpus').hidden = true;
  if (state.hosts.size > 1) relabelDatasets();
  return entry;
}

/** Return the id of a host's section on this page. */
export function hostSectionId(host) {
  return `host-${host}`;
}

/** Return every host this page or the server knows of. */
export function knownHosts() {
  return new Set([...state.hosts.keys(), ...state.serverHosts.keys()]);
}

/** Return whether this page or the server knows of more than one host. */
export function severalHosts() {
  return state.hosts.size > 1 || state.serverHosts.size > 1;
}

/** Show the host headings when there are several hosts, and always on a stale host. */
function refreshHostTitles() {
  const several = severalHosts();
  // One host's heading is still heard (the GPUs' headings sit under it), only not seen.
  for (const entry of state.hosts.values()) entry.title.classList.toggle('visually-hidden', !several && !entry.staleNow);
}

/** Return the newest reading time of a host that this page has seen, or null. */
function hostSeenHereS(host) {
  let newest = state.hostTickTs.get(host) ?? null;
  for (const gpu of state.gpus.values()) {
    if (gpu.host === host && gpu.lastTs !== null && (newest === null || gpu.lastTs > newest)) newest = gpu.lastTs;
  }
  return newest;
}

/** Return the newest reading time of a host (epoch s), the page's or the server's, or null. */
export function hostLastSeenS(host) {
  const hereS = hostSeenHereS(host);
  const server = state.serverHosts.get(host);
  const serverS = server ? server.lastSeenS : null;
  return hereS === null || (serverS !== null && serverS > hereS) ? serverS : hereS;
}

/**
 * Take what the server says of a host: { host, stale, stale_since_ts, last_seen_ts,
 * interval_s }. What the websocket says is the newest word and replaces the last. An API
 * answer may have been computed before a message that came first: it is taken only when it
 * speaks of a newer tick, or calls stale the same tick (a host only goes stale while silent).
 */
export function takeHostState(item, fromSocket) {
  if (!item || typeof item.host !== 'string') return false;
  const said = {
    stale: item.stale === true,
    staleSinceS: isNumber(item.stale_since_ts) ? item.stale_since_ts : null,
    lastSeenS: isNumber(item.last_seen_ts) ? item.last_seen_ts : null,
    intervalS: positive(item.interval_s, null),
  };
  const known = state.serverHosts.get(item.host);
  const newer = !known || fromSocket || (said.lastSeenS ?? -Infinity) > (known.lastSeenS ?? -Infinity)
    || (said.lastSeenS === known.lastSeenS && said.stale && !known.stale);
  if (newer) {
    if (known && said.staleSinceS === null && said.stale && known.stale && said.lastSeenS === known.lastSeenS) {
      said.staleSinceS = known.staleSinceS; // the GPU list does not say since when
    }
    state.serverHosts.set(item.host, said);
  } else if (known.staleSinceS === null && said.stale === known.stale && said.lastSeenS === known.lastSeenS) {
    known.staleSinceS = said.staleSinceS;
  }
}

/** Return whether the server says the host is stale. */
export function hostStale(host) {
  const server = state.serverHosts.get(host);
  return Boolean(server && server.stale);
}

/** Show a host stale when the server says so; its GPUs stay listed, the heading says since when. */
export function refreshHostState(host) {
  const entry = state.hosts.get(host);
  if (!entry) return;
  const server = state.serverHosts.get(host);
  const lastSeenS = hostLastSeenS(host);
  const stale = hostStale(host);
  entry.staleNow = stale;
  entry.section.dataset.stale = String(stale);
  entry.stale.hidden = !stale;
  entry.seen.hidden = !stale;
  entry.seenAt.hidden = !stale || lastSeenS === null;
  entry.staleNote.hidden = !stale;
  if (stale) {
    entry.seen.textContent = lastSeenS === null ? 'never seen' : `last seen ${formatWhen(lastSeenS * 1000)}`;
    entry.seen.title = lastSeenS === null ? '' : formatFull(lastSeenS * 1000);
    putText(entry.seenAt, lastSeenS === null ? '' : formatFull(lastSeenS * 1000));
    const since = server.staleSinceS === null ? 'lately' : `since ${formatFull(server.staleSinceS * 1000)}`;
    const every = server.intervalS === null ? '' : ` (it reads every ${formatDuration(server.intervalS)})`;
    entry.stale.title = `No reading from this host ${since}${every}; its GPUs show their last readings`;
    putText(entry.staleNote, entry.stale.title);
  }
  refreshHostTitles();
}

export function fillHostSelect() {
  const select = document.getElementById('host-select');
  const names = knownHosts();
  if (state.hostFilter !== null) names.add(state.hostFilter);
  fillSelect(select, names, state.hostFilter);
}

export function setHostError(host, message) {
  const entry = ensureHost(host);
  entry.alert.hidden = !message;
  putText(entry.alert, message ? `Reading this host failed: ${message}` : '');
}

export function gpuOrder(a, b) {
  return a.host === b.host ? a.index - b.index : (a.host < b.host ? -1 : 1);
}

/** gpuOrder for GPU items of an API answer (host, gpu_index). */
export function apiGpuOrder(a, b) {
  return gpuOrder({ host: String(a.host), index: a.gpu_index }, { host: String(b.host), index: b.gpu_index });
}

/** Take the server's list of hosts, with which are stale and when each was last seen. */
export async function loadHosts() {
  if (!state.hostsApi) return;
  let answer;
  try {
    answer = await fetchJson('api/v1/hosts', undefined);
  } catch (error) {
    if (error.status === 404) state.hostsApi = false; // an older server: the GPU list tells
    return;
  }
  if (!answer || !Array.isArray(answer.hosts)) return;
  const listed = new Set();
  for (const item of answer.hosts) {
    takeHostState(item, false);
    if (item && typeof item.host === 'string') listed.add(item.host);
  }
  for (const host of [...state.serverHosts.keys()]) {
    if (!listed.has(host)) state.serverHosts.delete(host); // purged from the server's file
  }
  fillHostSelect();
  refreshStale();
}

export function gpuLabel(gpu) {
  const host = severalHosts() ? `${gpu.host} · ` : '';
  return `${host}GPU ${gpu.index} (${gpu.name})`;
}
