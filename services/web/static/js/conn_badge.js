/* The navbar's badge: what the live feed is worth now. "live" only while the websocket is open
 * and some host shown still sends; open while every host shown is stale, "stale since" the
 * newest reading; else reconnecting or offline. data-state says which, for scripts and tests. */

import { formatFull, formatMinute, putText } from './format.js';
import { hostLastSeenS, hostStale, knownHosts } from './hosts.js';
import { hostShown, state } from './state.js';

const STYLES = {
  live: 'text-bg-success', stale: 'text-bg-warning', reconnecting: 'text-bg-warning', offline: 'text-bg-danger',
};
const TITLES = {
  live: 'Connected to the live feed; the readings are current',
  reconnecting: 'The connection to the live feed was lost; reconnecting',
  offline: 'Not connected to the live feed',
};

/** Return the newest reading of the hosts shown when there are some and every one is stale
 * (null when none was ever seen), or undefined when some host is fresh or none is known. */
function staleSinceS() {
  const hosts = [...knownHosts()].filter(hostShown);
  if (!hosts.length || !hosts.every(hostStale)) return undefined;
  const seen = hosts.map(hostLastSeenS).filter((seenS) => seenS !== null);
  return seen.length ? Math.max(...seen) : null;
}

/** Show on the badge what the feed is worth now: the connection, and whether any host sends. */
export function refreshConnBadge() {
  const badge = document.getElementById('conn-badge');
  let name = state.connection;
  let text = name;
  let title = TITLES[name];
  const newestS = name === 'live' ? staleSinceS() : undefined;
  if (newestS !== undefined) {
    name = 'stale';
    text = newestS === null ? 'stale' : `stale since ${formatMinute(newestS * 1000)}`;
    title = newestS === null
      ? 'Connected, but no host has sent a reading'
      : `Connected, but no host has sent a reading since ${formatFull(newestS * 1000)}`;
  }
  badge.dataset.state = name;
  putText(badge, text);
  if (badge.title !== title) badge.title = title;
  const className = `badge ${STYLES[name]}`;
  if (badge.className !== className) badge.className = className;
}

/** Take the websocket's state: "live" (open), "reconnecting" or "offline". */
export function setConnection(name) {
  state.connection = name;
  refreshConnBadge();
}
