/* The GPU page's header: identity, limits, the newest reading and the health findings. */

import { fetchJson } from './api.js';
import { element, formatClock, formatDuration, formatFull, formatNumber, isNumber, memoryText, putText, withUnit } from './format.js';
import { apiUrl } from './gpu_api.js';
import { page } from './gpu_state.js';
import { buildHealthBlock, updateHealth } from './health.js';

const NOT_REPORTED = 'not reported';

// The card's health block, so the findings read word for word as on the dashboard's card.
const holder = { els: { health: buildHealthBlock(), card: document.getElementById('gpu-header') } };
const signatures = new Map();

export function placeHealth() {
  document.getElementById('gpu-badges').append(holder.els.health.badge);
  document.getElementById('gpu-findings-box').append(holder.els.health.list);
}

function known(value) {
  return value !== null && value !== undefined && value !== '';
}

/** Fill a <dl> with [label, text] rows (text null: not reported); redrawn only when changed. */
function showFacts(id, rows) {
  const signature = JSON.stringify(rows);
  if (signatures.get(id) === signature) return;
  signatures.set(id, signature);
  const list = document.getElementById(id);
  list.replaceChildren(...rows.flatMap(([label, text, key]) => {
    const value = element('dd', known(text) ? '' : 'na', known(text) ? String(text) : NOT_REPORTED);
    value.dataset.fact = key;
    return [element('dt', '', label), value];
  }));
}

function shownOrNull(text) {
  return text === 'n/a' ? null : text;
}

function joined(parts) {
  const shown = parts.filter(([, value]) => isNumber(value));
  return shown.length ? shown.map(([label, value, unit]) => `${label} ${formatNumber(value, 0)} ${unit}`).join(' · ') : null;
}

function identityRows(gpu) {
  return [
    ['Name', gpu.gpu_name, 'name'],
    ['Host', gpu.host, 'host'],
    ['Index', isNumber(gpu.gpu_index) ? String(gpu.gpu_index) : null, 'index'],
    ['UUID', gpu.gpu_uuid, 'uuid'],
    ['PCI bus id', gpu.pci_bus_id, 'pci'],
    ['Driver version', gpu.driver_version, 'driver'],
    ['CUDA version', gpu.cuda_version, 'cuda'],
    ['Recorded since', isNumber(gpu.first_ts) ? formatFull(gpu.first_ts * 1000) : null, 'first-seen'],
  ];
}

function powerLimitText(limits, latest) {
  const enforced = latest && isNumber(latest.power_limit_w) ? `${formatNumber(latest.power_limit_w, 0)} W enforced` : null;
  const range = isNumber(limits.power_limit_min_w) && isNumber(limits.power_limit_max_w)
    ? `settable ${formatNumber(limits.power_limit_min_w, 0)}–${formatNumber(limits.power_limit_max_w, 0)} W` : null;
  const parts = [enforced, range].filter(Boolean);
  return parts.length ? parts.join(', ') : null;
}

function pcieText(limits, health) {
  const now = health && isNumber(health.pcie_link_gen) && isNumber(health.pcie_link_width)
    ? `Gen${health.pcie_link_gen} x${health.pcie_link_width} now` : null;
  const max = isNumber(limits.pcie_max_gen) && isNumber(limits.pcie_max_width)
    ? `max Gen${limits.pcie_max_gen} x${limits.pcie_max_width}` : null;
  const parts = [now, max].filter(Boolean);
  return parts.length ? parts.join(', ') : null;
}

function limitRows(gpu) {
  const limits = gpu.limits && typeof gpu.limits === 'object' ? gpu.limits : {};
  const health = gpu.health && typeof gpu.health === 'object' ? gpu.health : null;
  const nvlink = isNumber(limits.nvlink_links) && limits.nvlink_links > 0
    ? `${health && isNumber(health.nvlink_links_active) ? `${health.nvlink_links_active} of ` : ''}${limits.nvlink_links} links active`
    : null;
  const ecc = typeof limits.ecc_enabled === 'boolean' ? (limits.ecc_enabled ? 'enabled' : 'disabled') : null;
  return [
    ['Max clocks', joined([['SM', limits.max_sm_clock_mhz, 'MHz'], ['memory', limits.max_mem_clock_mhz, 'MHz']]), 'max-clocks'],
    ['Power limit', powerLimitText(limits, gpu.latest), 'power-limit'],
    ['Temperature thresholds', joined([
      ['slowdown', limits.temp_slowdown_c, '°C'], ['shutdown', limits.temp_shutdown_c, '°C'],
      ['max operating', limits.temp_max_operating_c, '°C'],
    ]), 'temp-limits'],
    ['Memory temperature max', shownOrNull(withUnit(limits.mem_temp_max_c, '°C', 0)), 'mem-temp-max'],
    ['PCIe link', pcieText(limits, health), 'pcie'],
    ['NVLink', nvlink, 'nvlink'],
    ['ECC', ecc, 'ecc'],
  ];
}

function nowRows(gpu) {
  const reading = gpu.latest && !gpu.latest.error ? gpu.latest : {};
  const health = gpu.health && typeof gpu.health === 'object' ? gpu.health : {};
  const power = isNumber(reading.power_w)
    ? `${formatNumber(reading.power_w, 0)}${isNumber(reading.power_limit_w) ? ` / ${formatNumber(reading.power_limit_w, 0)}` : ''} W` : null;
  const clocks = joined([['SM', reading.sm_clock_mhz, 'MHz'], ['memory', reading.mem_clock_mhz, 'MHz']]);
  return [
    ['GPU utilization', shownOrNull(withUnit(reading.util_gpu_pct, '%', 0)), 'util'],
    ['Memory used', shownOrNull(memoryText(reading.mem_used_bytes, reading.mem_total_bytes)), 'mem'],
    ['Temperature', shownOrNull(withUnit(reading.temp_c, '°C', 0)), 'temp'],
    ['Power', power, 'power'],
    ['Clocks', clocks, 'clocks'],
    ['Performance state', isNumber(reading.pstate) ? `P${reading.pstate}` : null, 'pstate'],
    ['Fan', shownOrNull(withUnit(reading.fan_pct, '%', 0)), 'fan'],
    ['Video encoder / decoder', isNumber(health.enc_util_pct) || isNumber(health.dec_util_pct)
      ? `${withUnit(health.enc_util_pct, '%', 0)} / ${withUnit(health.dec_util_pct, '%', 0)}` : null, 'codec'],
  ];
}

function showName(gpu) {
  putText(document.getElementById('gpu-name'), String(gpu.gpu_name ?? ''));
  putText(document.getElementById('gpu-index'), `GPU ${gpu.gpu_index}`);
  putText(document.getElementById('gpu-host'), String(gpu.host ?? ''));
  document.title = `GPU ${gpu.gpu_index} · ${gpu.gpu_name} · ${gpu.host} · pyCudaWatch`;
}

function showReadingState(gpu) {
  const latest = gpu.latest;
  const updated = document.getElementById('gpu-updated');
  if (!latest || !isNumber(latest.ts)) {
    putText(updated, 'no reading yet');
  } else if (gpu.stale) {
    putText(updated, `no reading for ${formatDuration(Math.max(0, Date.now() / 1000 - latest.ts))}`);
  } else {
    putText(updated, `reading of ${formatClock(latest.ts * 1000)}`);
  }
  // the exact time beside the short one, in words a keyboard or a touch reads too
  putText(document.getElementById('gpu-updated-at'), latest && isNumber(latest.ts) ? formatFull(latest.ts * 1000) : '');
  const error = document.getElementById('gpu-error');
  error.hidden = !(latest && latest.error);
  const since = isNumber(gpu.error_since_ts) ? gpu.error_since_ts : latest && latest.ts;
  putText(error, latest && latest.error
    ? `Reading this GPU failed since ${formatFull(since * 1000)}: ${latest.error}` : '');
}

/** Ask the server for this GPU's entry and show it; false when the server no longer lists it. */
export async function loadHeader() {
  const answer = await fetchJson(apiUrl('api/v1/gpus'), undefined);
  if (!answer || !Array.isArray(answer.gpus)) return false;
  if (answer.simulated === true) document.getElementById('sim-banner').hidden = false;
  const gpu = answer.gpus.find((item) => item && item.gpu_uuid === page.uuid);
  if (!gpu) return false;
  showName(gpu);
  showFacts('gpu-identity', identityRows(gpu));
  showFacts('gpu-limits', limitRows(gpu));
  showFacts('gpu-now', nowRows(gpu));
  showReadingState(gpu);
  updateHealth(holder, gpu);
  return true;
}
