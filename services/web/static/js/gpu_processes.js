/* The GPU page's processes: who used it over the range (api/v1/usage), and who is on it now. */

import { fetchJson, secondsParam } from './api.js';
import { element, formatAmount, formatDuration, formatWhen, isNumber, setNote } from './format.js';
import { apiUrl } from './gpu_api.js';
import { page, rangeWindow } from './gpu_state.js';
import { sortProcesses, validProcess } from './processes.js';
import { NOT_VISIBLE_HELP, cell, knownText, replaceProcessRows } from './tables.js';

const openDetails = new Set(); // the PIDs whose details rows are open

function usageRow(row) {
  const tr = element('tr', 'usage-row');
  const name = knownText(row.key);
  tr.dataset.key = name ?? '';
  // The name wraps rather than being cut; the help on an unknown one is the note under the table.
  const key = name
    ? cell(name, 'usage-key')
    : cell('not visible / unknown', 'usage-key na', NOT_VISIBLE_HELP);
  tr.append(
    key,
    cell(formatDuration(row.gpu_hours * 3600), 'text-end usage-gpu-time'),
    cell(`${formatAmount(row.gpu_mem_gib_hours)} GiB·h`, 'text-end usage-mem-hours'),
  );
  return tr;
}

/** List the processes (by name) that used this GPU over the chosen range, most GPU time first. */
async function loadRangeUsage(gen) {
  const { fromS, toS } = rangeWindow();
  const query = new URLSearchParams({
    from: secondsParam(fromS), to: secondsParam(toS), by: 'process', gpu: page.uuid,
  });
  const table = document.getElementById('usage-table');
  let answer;
  try {
    answer = await fetchJson(apiUrl('api/v1/usage', query), undefined);
  } catch (error) {
    if (gen !== page.gen) return;
    table.hidden = true;
    setNote('usage-note', `Usage could not be loaded: ${error.message}`);
    return;
  }
  if (gen !== page.gen) return;
  const rows = (answer && Array.isArray(answer.rows) ? answer.rows : []).filter((row) => row
    && typeof row === 'object' && isNumber(row.gpu_hours) && Array.isArray(row.gpus) && row.gpus.includes(page.uuid));
  table.querySelector('tbody').replaceChildren(...rows.map(usageRow));
  table.hidden = rows.length === 0;
  const unknown = rows.some((row) => !knownText(row.key));
  setNote('usage-note', !rows.length ? 'No process held this GPU in this range.'
    : unknown ? `not visible / unknown: ${NOT_VISIBLE_HELP}` : '');
}

/** List the processes on this GPU at its newest reading, each with since when it runs. */
async function loadNow(gen) {
  const table = document.getElementById('now-processes');
  const at = document.getElementById('now-processes-at');
  let answer;
  try {
    answer = await fetchJson(apiUrl('api/v1/processes', new URLSearchParams({ gpu: page.uuid })), undefined);
  } catch (error) {
    if (gen !== page.gen) return;
    table.hidden = true;
    setNote('now-processes-note', `The processes could not be loaded: ${error.message}`);
    return;
  }
  if (gen !== page.gen) return;
  at.textContent = answer && isNumber(answer.ts) ? `· at ${formatWhen(answer.ts * 1000)}` : '';
  if (!answer || !Array.isArray(answer.processes)) {
    table.hidden = true;
    setNote('now-processes-note', 'The process list of this GPU is not available.');
    return;
  }
  const processes = sortProcesses(answer.processes.filter(validProcess));
  replaceProcessRows(table.querySelector('tbody'), processes,
    (proc) => (isNumber(proc.since_ts) ? { sinceS: proc.since_ts, exact: true } : null), openDetails);
  table.hidden = processes.length === 0;
  setNote('now-processes-note', processes.length ? '' : 'No process is on this GPU now.');
}

export async function loadProcesses() {
  const gen = page.gen;
  const status = document.getElementById('processes-status');
  status.textContent = 'loading…';
  await Promise.all([loadRangeUsage(gen), loadNow(gen)]);
  if (gen === page.gen) status.textContent = '';
}
