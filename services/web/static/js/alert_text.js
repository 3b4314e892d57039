/* How alerts read: their checks, severity order and colours, where each is, until when silenced. */

import { isNumber } from './format.js';
import { severalHosts } from './hosts.js';
import { state } from './state.js';

export const SEVERITIES = ['critical', 'warning', 'info'];
const COLOURS = { critical: 'danger', warning: 'warning', info: 'info' };

/** Return an alert or alert event as the server sends it, or null when it is not one. */
export function validAlert(item) {
  return item && typeof item === 'object' && typeof item.key === 'string'
    && typeof item.rule === 'string' && typeof item.message === 'string' ? item : null;
}

export function validSilence(item) {
  return item && typeof item === 'object' && isNumber(item.silence_id) && isNumber(item.until_ts);
}

export function isSilenced(alert) {
  return isNumber(alert.silenced_until_ts);
}

/** Return the Bootstrap colour of a severity: "secondary" for an unknown one. */
export function severityColour(severity) {
  return Object.prototype.hasOwnProperty.call(COLOURS, severity) ? COLOURS[severity] : 'secondary';
}

function severityRank(severity) {
  const rank = SEVERITIES.indexOf(severity);
  return rank < 0 ? SEVERITIES.length : rank;
}

/** Order alerts worst first: unsilenced before silenced, then by severity, then the oldest. */
export function worstFirst(a, b) {
  return (isSilenced(a) - isSilenced(b))
    || (severityRank(a.severity) - severityRank(b.severity))
    || ((a.fired_ts ?? a.since_ts ?? 0) - (b.fired_ts ?? b.since_ts ?? 0))
    || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

/** Return the worst severity of the alerts that are not silenced, or null when all are. */
export function worstSeverity(alerts) {
  const loud = alerts.filter((alert) => !isSilenced(alert)).sort(worstFirst);
  return loud.length ? loud[0].severity : null;
}

/** Return where an alert is: "GPU 2 (A100)", with its host when there are several; a host's
 * alert names its host, the writer's has none. */
export function whereText(item) {
  const host = typeof item.host === 'string' && item.host ? item.host : null;
  if (typeof item.gpu_uuid !== 'string' || !item.gpu_uuid) return host ?? 'the server';
  const gpu = state.gpus.get(item.gpu_uuid);
  const index = isNumber(item.gpu_index) ? item.gpu_index : (gpu ? gpu.index : '?');
  const name = typeof item.gpu_name === 'string' ? item.gpu_name : (gpu ? gpu.name : null);
  const gpuText = `GPU ${index}${name ? ` (${name})` : ''}`;
  return host && severalHosts() ? `${host} · ${gpuText}` : gpuText;
}

/** Return the fragment of a GPU's card on this page, or null when the page has no such card. */
export function cardHref(item) {
  if (typeof item.gpu_uuid !== 'string' || !state.gpus.has(item.gpu_uuid)) return null;
  return `#${encodeURIComponent(cardId(item.gpu_uuid))}`;
}

export function cardId(uuid) {
  return `gpu-${uuid}`;
}

export function plural(count, word) {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}
