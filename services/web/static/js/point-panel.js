/* The panel of the processes on a GPU at a clicked chart point. */

import { fetchJson, secondsParam } from './api.js';
import { formatDuration, formatFull, isNumber } from './format.js';
import { gpuLabel } from './hosts.js';
import { sortProcesses, validProcess } from './processes.js';
import { serverNowS, state } from './state.js';
import { processRow } from './tables.js';

export function closePointPanel() {
  state.pointGen += 1;
  document.getElementById('point-panel').hidden = true;
}

/** Show, under the charts, the processes on a GPU at the last tick of the clicked bucket. */
export async function showPointProcesses(uuid, bucketS) {
  const gpu = state.gpus.get(uuid);
  if (!gpu) return;
  const stepS = state.history ? state.history.stepS : state.intervalS;
  const atS = Math.min(bucketS + stepS, serverNowS()) - 0.001;
  const gen = ++state.pointGen;
  const panel = document.getElementById('point-panel');
  const title = document.getElementById('point-title');
  const note = document.getElementById('point-note');
  const table = document.getElementById('point-table');
  panel.hidden = false;
  panel.dataset.gpuUuid = uuid;
  panel.dataset.at = String(atS);
  panel.dataset.state = 'loading';
  title.textContent = `Processes on ${gpuLabel(gpu)} at ${formatFull(atS * 1000)}`;
  note.hidden = false;
  note.textContent = 'loading…';
  const query = new URLSearchParams({ gpu: uuid, at: secondsParam(atS) });
  let answer;
  try {
    answer = await fetchJson(`api/v1/processes?${query}`, undefined);
  } catch (error) {
    if (gen !== state.pointGen) return;
    panel.dataset.state = 'error';
    table.hidden = true;
    note.textContent = error.status === 404 && !/gpu/i.test(error.message)
      ? 'This server does not keep processes yet.'
      : `The processes could not be loaded: ${error.message}`;
    return;
  }
  if (gen !== state.pointGen) return;
  const processes = answer && Array.isArray(answer.processes) ? sortProcesses(answer.processes.filter(validProcess)) : [];
  const tsS = answer && isNumber(answer.ts) ? answer.ts : null;
  panel.dataset.state = 'loaded';
  panel.dataset.ts = tsS === null ? '' : String(tsS);
  if (tsS !== null) title.textContent = `Processes on ${gpuLabel(gpu)} at ${formatFull(tsS * 1000)}`;
  const rows = processes.map((proc) => processRow(proc, { sinceS: proc.since_ts, exact: true }));
  table.querySelector('tbody').replaceChildren(...rows);
  table.hidden = rows.length === 0;
  note.hidden = rows.length > 0 && stepS <= state.intervalS * 1.01;
  if (tsS === null) note.textContent = 'No process list is stored for that time.';
  else if (!rows.length) note.textContent = 'No processes at that time.';
  else note.textContent = `The last reading of the ${formatDuration(stepS)} bucket clicked.`;
  panel.scrollIntoView({ block: 'nearest' });
}
