/* Each card's process table, and since when each process runs (api/v1/processes). */

import { fetchJson } from './api.js';
import { element, isNumber, memoryText, namedScrollArea } from './format.js';
import { PROCESS_COLUMNS, replaceProcessRows, tableHead } from './tables.js';


export function buildProcessBlock() {
  const block = element('div', 'mt-2 gpu-processes');
  const head = element('div', 'd-flex align-items-baseline gap-2');
  const count = element('span', 'small text-body-secondary process-count');
  head.append(element('span', 'section-label', 'Processes'), count);
  const note = element('div', 'small text-body-secondary process-note', 'no process list yet');
  const wrap = element('div', 'table-responsive');
  const table = element('table', 'table table-sm table-borderless mb-0 process-table');
  table.hidden = true;
  table.append(tableHead(PROCESS_COLUMNS));
  const tbody = element('tbody');
  table.append(tbody);
  wrap.append(table);
  namedScrollArea(wrap, 'Processes'); // the card names its GPU here (setIdentity)
  block.append(head, note, wrap);
  return { block, count, note, wrap, table, tbody, signature: null, open: new Set() };
}

export function validProcess(proc) {
  return proc && typeof proc === 'object' && Number.isInteger(proc.pid);
}

export function sortProcesses(processes) {
  const memory = (proc) => (isNumber(proc.used_mem_bytes) ? proc.used_mem_bytes : -1);
  return [...processes].sort((a, b) => memory(b) - memory(a) || a.pid - b.pid);
}

/**
 * Take a GPU's process list (undefined: not carried, null: unknown this tick) at tsS, keeping
 * since when each PID runs: the server's since_ts where known, else the tick a new PID first
 * came in, else (PIDs already running when the page first saw them) an upper bound.
 */
export function updateProcesses(gpu, list, tsS) {
  if (list === undefined) return;
  const els = gpu.els.processes;
  if (!Array.isArray(list)) {
    gpu.processes = null;
    els.signature = null;
    els.table.hidden = true;
    els.tbody.replaceChildren();
    els.count.textContent = '';
    els.note.hidden = false;
    els.note.textContent = 'process list not available';
    return;
  }
  const first = !Array.isArray(gpu.processes);
  const processes = sortProcesses(list.filter(validProcess));
  const next = new Map();
  for (const proc of processes) {
    let since = gpu.since.get(proc.pid);
    if (isNumber(proc.since_ts)) since = { sinceS: proc.since_ts, exact: true };
    else if (!since) since = { sinceS: tsS, exact: !first };
    next.set(proc.pid, since);
  }
  gpu.since = next;
  gpu.processes = processes;
  renderProcesses(gpu);
  if (!gpu.sinceAsked && [...next.values()].some((since) => !since.exact)) fetchSince(gpu);
}

/**
 * Return what a process row shows, as text: a list from the API carries fields a tick's does not
 * (since_ts), and memory moves by bytes that the row rounds away, so neither redraws the rows.
 */
function processShown(proc, since) {
  return [
    proc.pid, proc.visible === true, proc.kind, proc.user, proc.name, proc.cmdline,
    proc.container_id, proc.container_name,
    isNumber(proc.used_mem_bytes) ? memoryText(proc.used_mem_bytes, null) : null,
    since ? since.sinceS : null, since ? since.exact : null,
  ];
}

export function renderProcesses(gpu) {
  const els = gpu.els.processes;
  const processes = gpu.processes;
  if (!Array.isArray(processes)) return;
  // The local day is part of it: "Since" shows a bare time for today, and a date after.
  const shown = processes.map((proc) => processShown(proc, gpu.since.get(proc.pid)));
  const signature = JSON.stringify([new Date().toDateString(), shown]);
  if (signature === els.signature) return;
  els.signature = signature;
  els.count.textContent = processes.length ? `(${processes.length})` : '';
  els.note.hidden = processes.length > 0;
  els.note.textContent = processes.length ? '' : 'no processes';
  els.table.hidden = processes.length === 0;
  replaceProcessRows(els.tbody, processes, (proc) => gpu.since.get(proc.pid), els.open);
}

/** Ask the server since when the processes that were already running when the page opened run. */
async function fetchSince(gpu) {
  gpu.sinceAsked = true;
  let answer;
  try {
    answer = await fetchJson(`api/v1/processes?${new URLSearchParams({ gpu: gpu.uuid })}`, undefined);
  } catch (error) {
    return; // an older server, or a GPU it does not know yet: the upper bounds stay
  }
  if (!answer || !Array.isArray(answer.processes)) return;
  for (const proc of answer.processes) {
    if (validProcess(proc) && isNumber(proc.since_ts) && gpu.since.has(proc.pid)) {
      gpu.since.set(proc.pid, { sinceS: proc.since_ts, exact: true });
    }
  }
  renderProcesses(gpu);
}
