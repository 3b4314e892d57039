/* The "who used the GPUs" and energy tables of the chosen range. */

import { fetchJson, oneAtATime, secondsParam } from './api.js';
import {
  disclosureButton, element, formatAmount, formatClock, formatCost, isNumber, markPressed, setNote,
} from './format.js';
import { apiGpuOrder, gpuLabel, severalHosts } from './hosts.js';
import { RANGES_S, serverNowS, state } from './state.js';
import { NOT_VISIBLE_HELP, cell, knownText } from './tables.js';

export const USAGE_BY = { user: 'User', process: 'Process', container: 'Container' };

const ENERGY_SOURCES = {
  counter: 'energy counter',
  power: 'power readings, integrated',
  mixed: 'energy counter, and power readings where it had none',
  none: 'no readings',
};

function rangeWindow() {
  const toS = serverNowS();
  return { fromS: toS - RANGES_S[state.rangeKey], toS };
}

/** Return the note of a range table whose request failed (404: an older server). */
function failedText(error, what, title) {
  return error.status === 404 ? `This server does not report ${what} yet.`
    : `${title} could not be loaded: ${error.message}`;
}

function uuidLabels(uuids) {
  if (!Array.isArray(uuids)) return '';
  return uuids.map((uuid) => {
    const gpu = state.gpus.get(uuid);
    return gpu ? gpuLabel(gpu) : String(uuid);
  }).join('\n');
}

const openGpuLists = new Set(); // the keys whose row lists its GPUs, kept across reloads

/**
 * Return a usage row. Its GPU count is a real button that opens, in its cell, the list of those
 * GPUs (what the count's tooltip says): a keyboard or a touch shows no tooltip. The key wraps
 * rather than being cut; the help on an unknown one is the note under the table.
 */
function usageRow(row) {
  const tr = element('tr', 'usage-row');
  const known = knownText(row.key);
  tr.dataset.key = known ?? '';
  const key = known
    ? cell(known, 'usage-key', known)
    : cell('not visible / unknown', 'usage-key na', NOT_VISIBLE_HELP);
  const gpus = Array.isArray(row.gpus) ? row.gpus : [];
  const labels = uuidLabels(gpus);
  const count = cell('', 'text-end usage-gpus', labels);
  if (gpus.length) {
    const list = element('span', 'usage-gpus-list small text-body-secondary');
    list.append(...labels.split('\n').map((label) => element('span', 'd-block', label)));
    const openKey = known ?? '';
    list.hidden = !openGpuLists.has(openKey);
    const button = disclosureButton(list, String(gpus.length), 'usage-gpus-button');
    button.setAttribute('aria-label', `${gpus.length} ${gpus.length === 1 ? 'GPU' : 'GPUs'}: show which`);
    button.addEventListener('click', () => {
      if (list.hidden) openGpuLists.delete(openKey);
      else openGpuLists.add(openKey);
    });
    count.append(button, list);
  } else {
    count.textContent = '0';
  }
  tr.append(
    key,
    cell(formatAmount(row.gpu_hours), 'text-end usage-gpu-hours'),
    cell(`${formatAmount(row.gpu_mem_gib_hours)} GiB·h`, 'text-end usage-mem-hours'),
    count,
  );
  return tr;
}

/** Load who used the GPUs over the chosen range, by user, process or container. */
export async function loadUsage() {
  const gen = ++state.usageGen;
  const { fromS, toS } = rangeWindow();
  const by = state.usageBy;
  document.getElementById('usage-key-head').textContent = USAGE_BY[by];
  document.getElementById('usage-range').textContent = `· last ${state.rangeKey}`
    + (state.hostFilter !== null ? ', all hosts' : '');
  markPressed('data-usage-by', by);
  const status = document.getElementById('usage-status');
  status.textContent = 'loading…';
  const query = new URLSearchParams({ from: secondsParam(fromS), to: secondsParam(toS), by });
  let answer;
  try {
    answer = await fetchJson(`api/v1/usage?${query}`, undefined);
  } catch (error) {
    if (gen !== state.usageGen) return;
    status.textContent = '';
    document.querySelector('#usage-table tbody').replaceChildren();
    document.getElementById('usage-table').hidden = true;
    setNote('usage-note', failedText(error, 'usage', 'Usage'));
    return;
  }
  if (gen !== state.usageGen) return;
  const rows = answer && Array.isArray(answer.rows) ? answer.rows.filter((row) => row && typeof row === 'object') : [];
  const tbody = document.querySelector('#usage-table tbody');
  const focusedKey = tbody.contains(document.activeElement) ? document.activeElement.closest('tr').dataset.key : null;
  tbody.replaceChildren(...rows.map(usageRow));
  if (focusedKey !== null) { // a reload keeps the keyboard on the same row's button
    const again = [...tbody.querySelectorAll('tr.usage-row')].find((tr) => tr.dataset.key === focusedKey);
    if (again && again.querySelector('button')) again.querySelector('button').focus();
  }
  document.getElementById('usage-table').hidden = rows.length === 0;
  const unknown = rows.some((row) => !knownText(row.key));
  setNote('usage-note', !rows.length ? 'No process held a GPU in this range.'
    : unknown ? `not visible / unknown: ${NOT_VISIBLE_HELP}` : '');
  status.textContent = `as of ${formatClock(Date.now())}`;
}

function energyCells(kwh, cost, currency, priced) {
  const cells = [cell(isNumber(kwh) ? `${formatAmount(kwh)} kWh` : 'n/a', `text-end energy-kwh${isNumber(kwh) ? '' : ' na'}`)];
  if (priced) cells.push(cell(formatCost(cost, currency), `text-end energy-cost${isNumber(cost) ? '' : ' na'}`));
  return cells;
}

function energyGpuRow(item, currency, priced) {
  const tr = element('tr', 'energy-gpu');
  tr.dataset.gpuUuid = String(item.gpu_uuid ?? '');
  const label = `${severalHosts() ? `${item.host} · ` : ''}GPU ${item.gpu_index}`;
  const name = element('td', 'energy-gpu-name');
  name.append(element('span', '', label), element('span', 'text-body-secondary ms-1', String(item.gpu_name ?? '')));
  name.title = String(item.gpu_uuid ?? ''); // as its card's details give it
  const source = ENERGY_SOURCES[item.source] ?? String(item.source ?? 'unknown');
  tr.append(name, ...energyCells(item.kwh, item.cost, currency, priced),
    cell(source, `energy-source${item.source === 'none' ? ' na' : ''}`));
  return tr;
}

function energyHostRow(item, currency, priced) {
  const tr = element('tr', 'energy-host');
  tr.dataset.host = String(item.host ?? '');
  tr.append(cell(String(item.host ?? ''), 'energy-host-name'), ...energyCells(item.kwh, item.cost, currency, priced));
  return tr;
}

/** Load the energy of the chosen range and host: kWh per GPU and per host, with cost if priced. */
async function loadEnergy() {
  const gen = ++state.energyGen;
  const { fromS, toS } = rangeWindow();
  document.getElementById('energy-range').textContent = `· last ${state.rangeKey}`
    + (state.hostFilter !== null ? ` · ${state.hostFilter}` : '');
  const status = document.getElementById('energy-status');
  status.textContent = 'loading…';
  const query = new URLSearchParams({ from: secondsParam(fromS), to: secondsParam(toS) });
  if (state.hostFilter !== null) query.append('host', state.hostFilter);
  const total = document.getElementById('energy-total');
  const hostsTable = document.getElementById('energy-hosts');
  const gpusTable = document.getElementById('energy-gpus');
  let answer;
  try {
    answer = await fetchJson(`api/v1/energy?${query}`, undefined);
  } catch (error) {
    if (gen !== state.energyGen) return;
    status.textContent = '';
    total.textContent = '';
    hostsTable.hidden = true;
    gpusTable.hidden = true;
    gpusTable.querySelector('tbody').replaceChildren();
    setNote('energy-note', failedText(error, 'energy', 'Energy'));
    return;
  }
  if (gen !== state.energyGen || !answer) return;
  const priced = isNumber(answer.price_per_kwh);
  const currency = typeof answer.currency === 'string' ? answer.currency : '';
  for (const head of document.querySelectorAll('.energy-cost-col')) head.hidden = !priced;
  const hosts = Array.isArray(answer.hosts) ? answer.hosts.filter((item) => item && typeof item === 'object') : [];
  const gpus = Array.isArray(answer.gpus) ? answer.gpus.filter((item) => item && typeof item === 'object') : [];
  gpus.sort(apiGpuOrder);
  hostsTable.querySelector('tbody').replaceChildren(...hosts.map((item) => energyHostRow(item, currency, priced)));
  hostsTable.hidden = hosts.length < 2;
  gpusTable.querySelector('tbody').replaceChildren(...gpus.map((item) => energyGpuRow(item, currency, priced)));
  gpusTable.hidden = gpus.length === 0;
  total.replaceChildren(
    element('span', 'fs-5 fw-semibold energy-total-kwh', isNumber(answer.total_kwh) ? `${formatAmount(answer.total_kwh)} kWh` : 'n/a'),
    element('span', 'text-body-secondary ms-2', state.hostFilter !== null ? `on ${state.hostFilter}` : 'on all GPUs'),
  );
  if (priced) {
    total.append(element('span', 'ms-2 energy-total-cost', `· ${formatCost(answer.total_cost, currency)}`));
  }
  setNote('energy-note', priced ? `At ${formatCost(answer.price_per_kwh, currency)} per kWh.`
    : 'No price set (PCW_ENERGY_PRICE_PER_KWH): no cost shown.');
  status.textContent = `as of ${formatClock(Date.now())}`;
}

export function loadRangeTables() {
  return Promise.all([loadUsage(), loadEnergy()]);
}

/** Refresh usage and energy (range queries) while the page is seen; once on return if missed. */
export const refreshRangeTables = oneAtATime(() => {
  state.tablesMissed = document.hidden;
  return document.hidden ? null : loadRangeTables();
});

/** Refresh the tables when the page is shown again after a refresh it skipped (both views). */
export function refreshTablesWhenShown() {
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && state.tablesMissed) refreshRangeTables();
  });
}
