/* The panel of the processes on a GPU at a chart point: clicked, or chosen with the keyboard. */

import { fetchJson, secondsParam } from './api.js';
import { element, fillSelect, formatDuration, formatFull, isNumber } from './format.js';
import { gpuLabel } from './hosts.js';
import { sortProcesses, validProcess } from './processes.js';
import { RANGES_S, hostShown, serverNowS, state } from './state.js';
import { replaceProcessRows } from './tables.js';

let opener = null; // what had the focus when the panel opened: it gets it back on close

/** Close the panel; the focus goes back to what opened it (else the picker's button). */
export function closePointPanel() {
  state.pointGen += 1;
  const panel = document.getElementById('point-panel');
  const hadFocus = panel.contains(document.activeElement);
  panel.hidden = true;
  if (!hadFocus) return;
  const back = opener && opener.isConnected && !opener.closest('[hidden]') ? opener : document.getElementById('point-show');
  opener = null;
  back.focus();
}

/** Return the bucket start (epoch s) of the loaded range's newest bucket, and the step. */
function bucketBounds() {
  const stepS = state.history ? state.history.stepS : state.intervalS;
  const lastS = Math.floor(serverNowS() / stepS) * stepS;
  return { stepS, firstS: lastS - Math.max(0, Math.round(RANGES_S[state.rangeKey] / stepS) - 1) * stepS, lastS };
}

function showPickedTime() {
  const slider = document.getElementById('point-time');
  const text = formatFull(Number(slider.value) * 1000);
  slider.setAttribute('aria-valuetext', text);
  document.getElementById('point-time-shown').textContent = text;
}

/**
 * Fit the keyboard's picker to the chosen range: one slider step a chart bucket, its GPUs the
 * lines drawn; the time stays where it was when still in range, else goes to the newest bucket.
 */
export function refreshPointPicker() {
  const slider = document.getElementById('point-time');
  const select = document.getElementById('point-gpu');
  const { stepS, firstS, lastS } = bucketBounds();
  const was = Number(slider.value);
  const keep = slider.dataset.picked === 'true' && was >= firstS && was <= lastS;
  slider.min = String(firstS);
  slider.max = String(lastS);
  slider.step = String(stepS);
  slider.value = String(keep ? firstS + Math.round((was - firstS) / stepS) * stepS : lastS);
  showPickedTime();
  const chosen = select.value;
  const gpus = [...state.gpus.values()].filter((gpu) => hostShown(gpu.host))
    .sort((a, b) => (a.host === b.host ? a.index - b.index : (a.host < b.host ? -1 : 1)));
  const options = gpus.map((gpu) => {
    const option = element('option', '', gpuLabel(gpu));
    option.value = gpu.uuid;
    return option;
  });
  if (options.map((o) => `${o.value}\n${o.textContent}`).join('\n')
    !== [...select.options].map((o) => `${o.value}\n${o.textContent}`).join('\n')) {
    select.replaceChildren(...options);
  }
  if (gpus.some((gpu) => gpu.uuid === chosen)) select.value = chosen;
}

/** Wire the picker (GPU, time slider, Show button) and the panel's Escape key. */
export function bindPointPanel() {
  const slider = document.getElementById('point-time');
  const select = document.getElementById('point-gpu');
  slider.addEventListener('focus', refreshPointPicker);
  select.addEventListener('focus', refreshPointPicker);
  slider.addEventListener('input', () => {
    slider.dataset.picked = 'true';
    showPickedTime();
  });
  document.getElementById('point-picker').addEventListener('submit', (event) => {
    event.preventDefault();
    refreshPointPicker();
    if (select.value) showPointProcesses(select.value, Number(slider.value), event.submitter || document.getElementById('point-show'));
  });
  const panel = document.getElementById('point-panel');
  panel.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      event.preventDefault();
      closePointPanel();
    }
  });
  refreshPointPicker();
}

/**
 * Show, under the charts, the processes on a GPU at the last tick of the chosen bucket; the panel
 * takes the focus (a screen reader starts reading it) and gives it back to from on close.
 */
export async function showPointProcesses(uuid, bucketS, from) {
  const gpu = state.gpus.get(uuid);
  if (!gpu) return;
  opener = from || (document.activeElement !== document.body ? document.activeElement : null);
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
  panel.focus({ preventScroll: true });
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
  const tbody = table.querySelector('tbody');
  replaceProcessRows(tbody, processes, (proc) => ({ sinceS: proc.since_ts, exact: true }), new Set());
  const rows = processes;
  table.hidden = rows.length === 0;
  note.hidden = rows.length > 0 && stepS <= state.intervalS * 1.01;
  if (tsS === null) note.textContent = 'No process list is stored for that time.';
  else if (!rows.length) note.textContent = 'No processes at that time.';
  else note.textContent = `The last reading of the ${formatDuration(stepS)} bucket clicked.`;
  panel.scrollIntoView({ block: 'nearest' });
}
