/* The GPU cards: identity, latest reading, health, alerts, MIG devices, idle flag; the GPU list poll. */

import { buildAlertBadge, updateAlertBadge } from './alert_badges.js';
import { cardId } from './alert_text.js';
import { fetchJson } from './api.js';
import { datasetFor, growScales, relabelDatasets } from './charts.js';
import { refreshConnBadge } from './conn_badge.js';
import {
  colourFor,
  element,
  formatClock,
  formatDuration,
  formatFull,
  formatNumber,
  formatWhen,
  isNumber,
  memoryText,
  putText,
  setText,
  withUnit,
} from './format.js';
import { buildHealthBlock, updateHealth } from './health.js';
import { showHistoryError } from './history.js';
import { apiGpuOrder, ensureHost, hostStale, refreshHostState, takeHostState } from './hosts.js';
import { refreshProblems } from './problems.js';
import { buildProcessBlock, renderProcesses, updateProcesses, validProcess } from './processes.js';
import { serverNowS, state } from './state.js';
import { cell, knownText, tableHead } from './tables.js';

function metricBlock(label, valueClass, columnClass) {
  const block = element('div', columnClass);
  const value = element('div', `metric-value ${valueClass}`, 'n/a');
  block.append(element('div', 'metric-label', label), value);
  return { block, value };
}

function barBlock(label, valueClass, barClass) {
  const block = element('div', 'mt-2');
  const head = element('div', 'd-flex justify-content-between');
  const value = element('span', valueClass, 'n/a');
  head.append(element('span', 'metric-label', label), value);
  const progress = element('div', 'progress');
  progress.setAttribute('role', 'progressbar');
  progress.setAttribute('aria-label', label);
  progress.setAttribute('aria-valuemin', '0');
  progress.setAttribute('aria-valuemax', '100');
  const bar = element('div', `progress-bar ${barClass}`);
  progress.append(bar);
  block.append(head, progress);
  return { block, value, progress, bar };
}

function buildCard(gpu) {
  const column = element('div', 'col');
  const card = element('div', 'card gpu-card h-100');
  card.dataset.gpuUuid = gpu.uuid;
  card.id = cardId(gpu.uuid); // the alerts link here
  card.dataset.state = 'ok';
  card.style.setProperty('--gpu-color', gpu.colour);

  const header = element('div', 'card-header d-flex align-items-center gap-2');
  const index = element('span', 'badge text-bg-secondary gpu-index');
  // The name leads to the GPU's own page (relative: the dashboard may be mounted under a path).
  const name = element('a', 'gpu-name fw-semibold');
  name.href = `gpu/${encodeURIComponent(gpu.uuid)}`;
  // Each card is a heading of its own (under its host's), so a screen reader can go card by card.
  const heading = element('h3', 'gpu-heading mb-0');
  heading.append(name);
  const staleBadge = element('span', 'badge gpu-stale-badge', 'stale');
  staleBadge.hidden = true;
  const badges = element('span', 'ms-auto d-flex gap-1');
  const idleBadge = element('span', 'badge text-bg-warning idle-badge', 'idle but allocated');
  idleBadge.hidden = true;
  const pstate = element('span', 'badge text-bg-dark border gpu-pstate', 'P n/a');
  pstate.title = `Performance state\n${PSTATE_MEANING}`; // said in words in the card's details too
  const health = buildHealthBlock();
  const alertBadge = buildAlertBadge();
  badges.append(staleBadge, alertBadge, health.badge, idleBadge, pstate);
  header.append(element('span', 'gpu-swatch'), index, heading, badges);

  const body = element('div', 'card-body py-2');
  const error = element('div', 'alert alert-danger py-1 px-2 mb-2 small gpu-error');
  error.hidden = true;
  error.setAttribute('role', 'alert');
  const top = element('div', 'd-flex justify-content-between align-items-end');
  const utilBox = element('div');
  const util = element('div', 'metric-util', 'n/a');
  utilBox.append(util, element('div', 'metric-label', 'GPU utilization'));
  const tempBox = element('div', 'text-end');
  const temp = element('div', 'fs-5 fw-semibold metric-temp', 'n/a');
  tempBox.append(temp, element('div', 'metric-label', 'Temperature'));
  top.append(utilBox, tempBox);
  const memory = barBlock('Memory', 'metric-mem', 'bg-info');
  const power = barBlock('Power', 'metric-power', 'bg-warning');
  const grid = element('div', 'row g-1 mt-2 small metric-grid');
  const fan = metricBlock('Fan', 'metric-fan', 'col-3');
  const memUtil = metricBlock('Mem bus', 'metric-util-mem', 'col-3');
  const clocks = metricBlock('Clocks SM / mem', 'metric-clocks', 'col-6 text-end');
  memUtil.block.title = MEM_BUS_MEANING; // said in words in the card's details too
  grid.append(fan.block, memUtil.block, clocks.block);
  const idle = element('div', 'small mt-2 gpu-idle');
  idle.hidden = true;
  const mig = buildMigBlock();
  const processes = buildProcessBlock();
  const details = buildDetails();
  body.append(error, health.list, idle, top, memory.block, power.block, grid, mig.block, processes.block,
    details.block);

  const footer = element('div', 'card-footer small text-body-secondary d-flex gap-2');
  const updated = element('span', 'gpu-updated', 'no reading yet');
  const pci = element('span', 'gpu-pci ms-auto text-truncate');
  footer.append(updated, pci);

  card.append(header, body, footer);
  column.append(card);
  return {
    column, card, index, name, pstate, error, util, temp, memory, power, updated, pci,
    fan: fan.value, memUtil: memUtil.value, clocks: clocks.value,
    idleBadge, idle, mig, processes, health, alertBadge, staleBadge, details,
  };
}

const PSTATE_MEANING = 'P0 = fastest, P8 and up = idle';
const MEM_BUS_MEANING = 'Memory bus utilization';

/**
 * Return the card's "more" disclosure: what the card's tooltips say (UUID, PCI bus, the exact
 * time of the last reading, what a P-state, the memory bus and the idle flag mean, each MIG
 * instance's UUID and profile), for a keyboard or a phone. Closed, it is one line: opening it
 * moves nothing above it.
 */
function buildDetails() {
  const block = element('details', 'gpu-details small mt-2');
  block.append(element('summary', 'gpu-details-summary', 'More about this GPU'));
  const list = element('dl', 'gpu-details-list mb-0');
  const facts = {};
  const terms = {};
  for (const [key, label] of [['uuid', 'UUID'], ['pci', 'PCI bus'], ['reading', 'Last reading'],
    ['pstate', 'Performance state'], ['memBus', 'Mem bus'], ['idle', 'Idle but allocated'],
    ['mig', 'MIG instances']]) {
    facts[key] = element('dd', '', '—');
    terms[key] = element('dt', '', label);
    list.append(terms[key], facts[key]);
  }
  facts.pstate.textContent = PSTATE_MEANING;
  facts.memBus.textContent = `${MEM_BUS_MEANING}: the share of time the GPU's memory was read or written`;
  facts.idle.textContent = idleRuleText();
  terms.mig.hidden = true;
  facts.mig.hidden = true;
  block.append(list);
  return { block, facts, terms };
}

/** Return what "idle but allocated" means, with the server's threshold once it is known. */
function idleRuleText() {
  return isNumber(state.idleUtilPct) && isNumber(state.idleAfterS)
    ? `Memory held while utilization stayed under ${formatNumber(state.idleUtilPct, 1)} % for over ${formatDuration(state.idleAfterS)}`
    : 'Memory held while the GPU is not used';
}

function buildMigBlock() {
  const block = element('div', 'mt-2 gpu-mig');
  block.hidden = true;
  const table = element('table', 'table table-sm table-borderless mb-0 mig-table');
  table.append(tableHead([['MIG instance', ''], ['Memory', 'text-end'], ['Util', 'text-end']]));
  const tbody = element('tbody');
  table.append(tbody);
  block.append(table);
  return { block, tbody, signature: '' };
}

/**
 * A MIG instance's utilization: NVML's where it gives one, else its graphics engine activity
 * from GPM (Hopper and newer), else n/a. Returns [text, tooltip].
 */
function migUtil(device) {
  if (isNumber(device.util_gpu_pct)) return [withUnit(device.util_gpu_pct, '%', 0), ''];
  if (isNumber(device.gr_engine_active_pct)) {
    return [withUnit(device.gr_engine_active_pct, '%', 0),
      'graphics engine activity of this MIG instance since the previous reading (GPM)'];
  }
  return ['n/a', 'utilization is not reported for this MIG instance'];
}

function migTitle(device) {
  return [String(device.uuid ?? ''), knownText(device.profile),
    isNumber(device.gpu_instance_id) ? `GPU instance ${device.gpu_instance_id}` : null]
    .filter(Boolean).join(' · ');
}

function migLabel(device) {
  return `${device.index ?? '?'} · ${device.name ?? 'MIG device'}`;
}

/** Return a MIG instance's line in the card's details: what its row's tooltips say, in words. */
function migFact(device) {
  const utilNote = migUtil(device)[1];
  return element('div', 'gpu-details-mig',
    `${migLabel(device)}: ${migTitle(device)}${utilNote ? `; ${utilNote}` : ''}`);
}

function migRow(device) {
  const row = element('tr', 'mig-device');
  row.dataset.migUuid = String(device.uuid ?? '');
  const title = migTitle(device);
  const label = migLabel(device);
  const memText = memoryText(device.mem_used_bytes, device.mem_total_bytes);
  const [utilText, utilTitle] = migUtil(device);
  const util = cell(utilText, `text-end mig-util${utilText === 'n/a' ? ' na' : ''}`, utilTitle);
  row.append(
    cell(label, 'mig-name', title),
    cell(memText, `text-end mig-mem${memText === 'n/a' ? ' na' : ''}`),
    util,
  );
  return row;
}

/** List a MIG-enabled GPU's instances under it (undefined or null: leave the list as it is). */
function updateMig(gpu, list) {
  if (!Array.isArray(list)) return;
  const mig = gpu.els.mig;
  const devices = list.filter((device) => device && typeof device === 'object')
    .sort((a, b) => (Number(a.index) || 0) - (Number(b.index) || 0));
  const signature = JSON.stringify(devices.map((device) => [
    device.uuid, device.index, device.name, memoryText(device.mem_used_bytes, device.mem_total_bytes),
    migUtil(device)[0], device.profile, device.gpu_instance_id,
  ]));
  if (signature === mig.signature) return;
  mig.signature = signature;
  mig.block.hidden = devices.length === 0;
  gpu.els.card.dataset.mig = String(devices.length > 0);
  mig.tbody.replaceChildren(...devices.map(migRow));
  const { facts, terms } = gpu.els.details;
  terms.mig.hidden = devices.length === 0;
  facts.mig.hidden = devices.length === 0;
  facts.mig.replaceChildren(...devices.map(migFact));
}

function holdersText(processes) {
  if (!Array.isArray(processes)) return '';
  return processes.filter(validProcess).map((proc) => {
    if (proc.visible !== true) return `PID ${proc.pid} (not visible)`;
    return `${knownText(proc.user) ?? 'unknown user'} (${knownText(proc.name) ?? 'PID'} ${proc.pid})`;
  }).join(', ');
}

/** Flag a GPU that holds memory while idle, with since when and who holds it (null: clear). */
function updateIdle(gpu, idle) {
  gpu.idle = idle && typeof idle === 'object' && isNumber(idle.since_ts) ? idle : null;
  const els = gpu.els;
  els.idleBadge.hidden = !gpu.idle;
  els.idle.hidden = !gpu.idle;
  putText(els.details.facts.idle, idleRuleText()); // the threshold may have come since the card
  els.card.dataset.idle = String(Boolean(gpu.idle));
  if (!gpu.idle) {
    els.idle.textContent = '';
    return;
  }
  const sinceMs = gpu.idle.since_ts * 1000;
  const holders = holdersText(gpu.idle.processes);
  els.idle.textContent = `Idle but allocated since ${formatWhen(sinceMs)}`
    + ` (${formatDuration(Math.max(0, serverNowS() - gpu.idle.since_ts))})`
    + (holders ? `, held by ${holders}` : '');
  els.idle.title = formatFull(sinceMs);
  els.idleBadge.title = idleRuleText(); // said in words in the card's details too
}

function setIdentity(gpu) {
  const els = gpu.els;
  els.index.textContent = `GPU ${gpu.index}`;
  els.name.textContent = gpu.name || gpu.uuid; // a lost GPU may have no name: never an empty link
  els.name.title = gpu.name;
  els.details.facts.uuid.textContent = gpu.uuid;
  els.details.facts.pci.textContent = gpu.pci || 'unknown';
  els.processes.wrap.setAttribute('aria-label', `Processes on GPU ${gpu.index} of ${gpu.host}`);
  els.pci.textContent = gpu.pci || '';
  // Two lines, each said in words in the card's details ("PCI bus …", "UUID …").
  els.pci.title = gpu.pci ? `PCI bus ${gpu.pci}\n${gpu.uuid}` : gpu.uuid;
}

function placeCard(gpu) {
  const row = ensureHost(gpu.host).row;
  const next = [...row.children].find((column) => {
    const other = state.gpus.get(column.firstChild.dataset.gpuUuid);
    return other && other !== gpu && other.index > gpu.index;
  });
  row.insertBefore(gpu.els.column, next || null);
}

/** Return the GPU's card state, made on first sight; item: a GPU entry as the API sends it. */
export function ensureGpu(item) {
  const identity = {
    uuid: item.gpu_uuid, host: item.host, index: item.gpu_index, name: item.gpu_name, pci: item.pci_bus_id,
  };
  const uuid = identity.uuid;
  if (typeof uuid !== 'string' || !uuid) return null;
  let gpu = state.gpus.get(uuid);
  if (!gpu) {
    gpu = {
      uuid, host: String(identity.host ?? ''), index: Number(identity.index) || 0,
      name: String(identity.name ?? uuid), pci: identity.pci ?? null,
      colour: colourFor(state.gpus.size), hidden: false, lastTs: null, error: null,
      stale: false, // the server's word on this GPU alone (its host's is in serverHosts)
      processes: undefined, since: new Map(), sinceAsked: false, idle: null, findings: [],
    };
    gpu.els = buildCard(gpu);
    state.gpus.set(uuid, gpu);
    setIdentity(gpu);
    placeCard(gpu);
    updateAlertBadge(gpu);
    for (const entry of state.charts) datasetFor(entry, gpu);
    return gpu;
  }
  const name = identity.name == null ? gpu.name : String(identity.name);
  const pci = identity.pci ?? gpu.pci;
  if (name !== gpu.name || pci !== gpu.pci) {
    gpu.name = name;
    gpu.pci = pci;
    setIdentity(gpu);
    relabelDatasets();
  }
  return gpu;
}

function setBar(bar, used, total, text) {
  const known = isNumber(used) && isNumber(total) && total > 0;
  const pct = known ? Math.max(0, Math.min(100, (100 * used) / total)) : 0;
  bar.bar.style.width = `${pct}%`;
  bar.bar.classList.toggle('bg-danger', pct >= 90);
  bar.progress.setAttribute('aria-valuenow', String(Math.round(pct)));
  bar.progress.setAttribute('aria-valuetext', text);
  setText(bar.value, text);
}

function powerText(power, limit) {
  if (!isNumber(power)) return 'n/a';
  return isNumber(limit) ? `${formatNumber(power, 0)} / ${formatNumber(limit, 0)} W` : `${formatNumber(power, 0)} W`;
}

function clocksText(smMhz, memMhz) {
  if (!isNumber(smMhz) && !isNumber(memMhz)) return 'n/a';
  const shown = (mhz) => (isNumber(mhz) ? formatNumber(mhz, 0) : 'n/a');
  return `${shown(smMhz)} / ${shown(memMhz)} MHz`;
}

/**
 * Show a GPU entry's reading ("latest") on its card; lists: the entry, when its processes and
 * MIG devices are as new as the reading (a websocket tick's).
 */
export function updateCard(gpu, reading, tsS, lists) {
  if (!isNumber(tsS) || (gpu.lastTs !== null && tsS < gpu.lastTs)) return false;
  gpu.lastTs = tsS;
  gpu.error = reading.error ? String(reading.error) : null;
  if (!gpu.error) gpu.errorSinceS = null;
  else if (!isNumber(gpu.errorSinceS)) gpu.errorSinceS = tsS; // the API may know earlier
  const els = gpu.els;
  setText(els.util, withUnit(reading.util_gpu_pct, '%', 0));
  setText(els.temp, withUnit(reading.temp_c, '°C', 0));
  setBar(els.memory, reading.mem_used_bytes, reading.mem_total_bytes,
    memoryText(reading.mem_used_bytes, reading.mem_total_bytes));
  setBar(els.power, reading.power_w, reading.power_limit_w,
    powerText(reading.power_w, reading.power_limit_w));
  setText(els.fan, withUnit(reading.fan_pct, '%', 0));
  setText(els.memUtil, withUnit(reading.util_mem_pct, '%', 0));
  setText(els.clocks, clocksText(reading.sm_clock_mhz, reading.mem_clock_mhz));
  els.pstate.textContent = isNumber(reading.pstate) ? `P${reading.pstate}` : 'P n/a';
  els.error.hidden = !gpu.error;
  putText(els.error, gpu.error
    ? `Reading this GPU failed since ${formatFull(gpu.errorSinceS * 1000)}: ${gpu.error}`
    : '');
  els.card.dataset.ts = String(tsS);
  els.updated.textContent = `updated ${formatClock(tsS * 1000)}`;
  els.updated.title = formatFull(tsS * 1000);
  els.details.facts.reading.textContent = formatFull(tsS * 1000);
  if (state.lastTickTs === null || tsS > state.lastTickTs) {
    state.lastTickTs = tsS;
    document.getElementById('last-update').textContent = `last reading ${formatClock(tsS * 1000)}`;
  }
  refreshCardState(gpu);
  growScales(reading);
  if (lists) {
    updateProcesses(gpu, lists.processes, tsS);
    updateMig(gpu, lists.mig_devices);
    updateHealth(gpu, lists);
  }
  return true;
}

function refreshCardState(gpu) {
  let cardState = 'ok';
  if (gpu.error) {
    cardState = 'error';
  } else if (gpu.lastTs !== null && (gpu.stale || hostStale(gpu.host))) {
    cardState = 'stale';
  }
  gpu.els.card.dataset.state = cardState;
  gpu.els.staleBadge.hidden = cardState !== 'stale'; // marked in words and a border, not faded
  if (cardState === 'stale') {
    gpu.els.updated.textContent = `no reading for ${formatDuration(serverNowS() - gpu.lastTs)}`;
  }
}

export function refreshStale() {
  for (const gpu of state.gpus.values()) {
    if (gpu.lastTs !== null) refreshCardState(gpu);
    renderProcesses(gpu); // a no-op unless the local day changed under a silent host
  }
  for (const host of state.hosts.keys()) refreshHostState(host);
  refreshProblems();
  refreshConnBadge();
}

export async function loadGpus(quiet) {
  try {
    const answer = await fetchJson('api/v1/gpus', undefined);
    if (!answer || !Array.isArray(answer.gpus)) return;
    state.gpusLoaded = true;
    if (answer.simulated === true) document.getElementById('sim-banner').hidden = false;
    if (isNumber(answer.interval_s) && answer.interval_s > 0) state.intervalS = answer.interval_s;
    if (isNumber(answer.idle_util_pct)) state.idleUtilPct = answer.idle_util_pct;
    if (isNumber(answer.idle_after_s)) state.idleAfterS = answer.idle_after_s;
    const gpus = [...answer.gpus].sort(apiGpuOrder);
    for (const item of gpus) {
      const gpu = ensureGpu(item);
      if (!gpu) continue;
      if (isNumber(item.error_since_ts)) gpu.errorSinceS = item.error_since_ts;
      const latestTs = item.latest ? item.latest.ts : null;
      // The list is as new as the reading beside it: never older than what a tick showed.
      const fresh = item.latest ? updateCard(gpu, item.latest, latestTs) : gpu.lastTs === null;
      const current = fresh || (isNumber(latestTs) && latestTs >= gpu.lastTs);
      if (current) {
        updateProcesses(gpu, item.processes, isNumber(latestTs) ? latestTs : serverNowS());
        updateMig(gpu, item.mig_devices);
        updateHealth(gpu, item);
        if (typeof item.stale === 'boolean') gpu.stale = item.stale;
      }
      if (item.idle !== undefined) updateIdle(gpu, item.idle);
      if (typeof item.host_stale === 'boolean') {
        takeHostState({
          host: gpu.host, stale: item.host_stale, last_seen_ts: item.host_last_seen_ts,
          interval_s: item.interval_s, stale_since_ts: null, // api/v1/hosts says since when
        }, false);
      }
    }
    refreshStale();
  } catch (error) {
    if (!quiet) showHistoryError(`GPU list: ${error.message}`);
  }
}
