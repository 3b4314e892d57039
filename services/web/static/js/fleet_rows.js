/* The fleet view's rows: each GPU's newest values from api/v1/gpus and the live ticks, their
 * health in one word, sort keys, filter text and each host's totals (no DOM here). A row has the
 * fields of a card's GPU record that the problems strip reads (uuid, host, index, lastTs, stale,
 * error, errorSinceS, findings, idle), so the strip reads the rows as they are (problems.js). */

import { GIB, isNumber } from './format.js';

// Health, worst first: what the row says, how the Health column sorts, how it looks (fleet.css).
export const HEALTH = {
  error: { rank: 5, text: 'error', look: 'bad' },
  stale: { rank: 4, text: 'stale', look: 'stale' },
  issues: { rank: 3, text: 'issues', look: 'bad' },
  idle: { rank: 2, text: 'idle, allocated', look: 'warn' },
  healthy: { rank: 1, text: 'healthy', look: 'ok' },
  unknown: { rank: 0, text: 'not reported', look: 'unknown' },
};

/** Return a new row for a GPU entry (the API's or a tick's); null without a UUID. */
export function newRow(item) {
  if (!item || typeof item.gpu_uuid !== 'string' || !item.gpu_uuid) return null;
  return {
    uuid: item.gpu_uuid, host: String(item.host ?? ''), index: Number(item.gpu_index) || 0,
    name: String(item.gpu_name ?? item.gpu_uuid), lastTs: null, util: null, memUsed: null,
    memTotal: null, temp: null, power: null, powerLimit: null, error: null, errorSinceS: null,
    stale: false, hostStale: false, idle: null, findings: [], healthKnown: false, holders: null,
    version: 0,
  };
}

function num(value) {
  return isNumber(value) ? value : null;
}

function holdersOf(processes) {
  if (!Array.isArray(processes)) return null; // the sampler could not list them
  const names = new Set();
  for (const proc of processes) {
    if (!proc || typeof proc !== 'object') continue;
    const user = typeof proc.user === 'string' && proc.user ? proc.user : null;
    names.add(user ?? (proc.visible === true ? 'unknown user' : `PID ${proc.pid}`));
  }
  return [...names].sort();
}

/**
 * Take a GPU entry's newest reading at tsS into its row; false when it is older than the row's.
 * The entry carries processes and findings as new as its reading (the API's, a tick's).
 */
export function takeReading(row, item, tsS) {
  if (!isNumber(tsS) || (row.lastTs !== null && tsS < row.lastTs)) return false;
  const latest = item.latest && typeof item.latest === 'object' ? item.latest : {};
  row.lastTs = tsS;
  if (item.gpu_name != null) row.name = String(item.gpu_name);
  row.util = num(latest.util_gpu_pct);
  row.memUsed = num(latest.mem_used_bytes);
  row.memTotal = num(latest.mem_total_bytes);
  row.temp = num(latest.temp_c);
  row.power = num(latest.power_w);
  row.powerLimit = num(latest.power_limit_w);
  row.error = latest.error ? String(latest.error) : null;
  if (!row.error) row.errorSinceS = null;
  else if (isNumber(item.error_since_ts)) row.errorSinceS = item.error_since_ts;
  else if (!isNumber(row.errorSinceS)) row.errorSinceS = tsS; // the API may know earlier
  if (item.processes !== undefined) row.holders = holdersOf(item.processes);
  if (item.findings !== undefined) {
    row.findings = Array.isArray(item.findings)
      ? item.findings.filter((finding) => finding && typeof finding === 'object') : [];
    row.healthKnown = Boolean(item.health) || row.findings.length > 0;
  }
  row.version += 1;
  return true;
}

/** Return the row's health: a HEALTH entry and, for findings, their words. */
export function healthOf(row) {
  if (row.error) return { ...HEALTH.error, title: row.error };
  if (row.stale || row.hostStale) return { ...HEALTH.stale, title: 'no recent reading' };
  if (row.findings.length) {
    const words = row.findings.map((finding) => String(finding.text ?? finding.kind));
    const text = row.findings.length === 1 ? words[0] : `${row.findings.length} issues`;
    return { ...HEALTH.issues, text, title: words.join('\n') };
  }
  if (row.idle) return { ...HEALTH.idle, title: 'memory held while the GPU is not used' };
  if (row.healthKnown) return { ...HEALTH.healthy, title: '' };
  return { ...HEALTH.unknown, title: 'this GPU\'s sampler reports no health' };
}

export function holdersText(row) {
  if (row.holders === null) return 'unknown';
  return row.holders.length ? row.holders.join(', ') : 'none';
}

/** The columns: their heading, and the key a row sorts by (null: no value, always last). */
export const COLUMNS = [
  { id: 'host', label: 'Host', key: (row) => row.host, text: true },
  { id: 'gpu', label: 'GPU', key: (row) => row.index },
  { id: 'model', label: 'Model', key: (row) => row.name, text: true },
  { id: 'util', label: 'Util', key: (row) => row.util, numeric: true },
  { id: 'mem', label: 'Memory', key: (row) => row.memUsed, numeric: true },
  { id: 'temp', label: 'Temp', key: (row) => row.temp, numeric: true },
  { id: 'power', label: 'Power', key: (row) => row.power, numeric: true },
  { id: 'health', label: 'Health', key: (row) => healthOf(row).rank },
  { id: 'holders', label: 'Held by', key: (row) => (row.holders && row.holders.length ? row.holders.join(', ') : null), text: true },
];

function compareValues(a, b, column) {
  if (a === null || a === undefined) return b === null || b === undefined ? 0 : 1;
  if (b === null || b === undefined) return -1;
  return column.text ? String(a).localeCompare(String(b)) : a - b;
}

/** Return a comparator of rows for a column and direction (1 or -1); ties by host and index. */
export function rowOrder(column, direction) {
  return (a, b) => {
    const ka = column.key(a);
    const kb = column.key(b);
    const nullA = ka === null || ka === undefined;
    const nullB = kb === null || kb === undefined;
    if (nullA !== nullB) return nullA ? 1 : -1; // no value: last in either direction
    const order = nullA ? 0 : direction * compareValues(ka, kb, column);
    if (order) return order;
    return a.host === b.host ? a.index - b.index : (a.host < b.host ? -1 : 1);
  };
}

/** Return a host's key for a column from its rows: how whole hosts sort against each other. */
export function hostKey(column, rows) {
  if (column.id === 'host' || !rows.length) return rows.length ? rows[0].host : null;
  const keys = rows.map(column.key).filter((key) => key !== null && key !== undefined);
  if (!keys.length) return null;
  if (column.text) return keys.sort()[0];
  if (column.id === 'temp' || column.id === 'health' || column.id === 'gpu') return Math.max(...keys);
  return keys.reduce((sum, key) => sum + key, 0) / (column.id === 'util' ? keys.length : 1);
}

/** Return the text a filter is matched against (lower case). */
export function filterText(row) {
  return [row.host, `gpu ${row.index}`, row.name, row.uuid, healthOf(row).text, holdersText(row)]
    .join(' ').toLowerCase();
}

/**
 * Return a host's totals over the given rows: GPU count, mean utilization, memory used and
 * total (bytes), hottest temperature, power drawn and the sum of limits (W), rows not healthy.
 */
export function hostTotals(rows) {
  const utils = rows.map((row) => row.util).filter(isNumber);
  const temps = rows.map((row) => row.temp).filter(isNumber);
  const sum = (values) => values.filter(isNumber).reduce((total, value) => total + value, 0);
  const powers = rows.map((row) => row.power).filter(isNumber);
  return {
    gpus: rows.length,
    utilMean: utils.length ? utils.reduce((a, b) => a + b, 0) / utils.length : null,
    memUsed: sum(rows.map((row) => row.memUsed)),
    memTotal: sum(rows.map((row) => row.memTotal)),
    tempMax: temps.length ? Math.max(...temps) : null,
    power: powers.length ? sum(powers) : null,
    powerLimit: sum(rows.map((row) => row.powerLimit)),
    unhealthy: rows.filter((row) => healthOf(row).rank >= HEALTH.idle.rank).length,
  };
}

export function gib(bytes) {
  return bytes / GIB;
}
