/* The GPU page's events: its XIDs, throttling, link and memory events over the range, in words. */

import { fetchJson } from './api.js';
import { element, formatClock, formatDuration, formatFull, formatNumber, isNumber } from './format.js';
import { apiUrl, rangeQuery } from './gpu_api.js';
import { page, rangeWindow } from './gpu_state.js';


// kind -> [what it is, in words; the badge's colour]
const KINDS = {
  xid: ['XID', 'danger'],
  throttling_started: ['Throttling started', 'warning'],
  throttling_stopped: ['Throttling stopped', 'secondary'],
  link_downgraded: ['PCIe link downgraded', 'warning'],
  link_restored: ['PCIe link restored', 'secondary'],
  remap_pending: ['Row remap pending', 'warning'],
  remap_cleared: ['Row remap done', 'secondary'],
  remap_failure: ['Row remap failed', 'danger'],
  remap_failure_cleared: ['Row remap failure cleared', 'secondary'],
  retirement_pending: ['Page retirement pending', 'warning'],
  retirement_cleared: ['Page retirement done', 'secondary'],
  nvlink_down: ['NVLink down', 'warning'],
  nvlink_restored: ['NVLink restored', 'secondary'],
  ecc_uncorrected: ['Uncorrected ECC error', 'danger'],
};

function counted(value, one, many) {
  return `${formatNumber(value, 0)} ${value === 1 ? one : many}`;
}

/** Return the range's counts in one sentence: "3 XIDs, 41 s of thermal throttling in this range". */
export function countsText(counts) {
  const items = [
    [counts.xids, (n) => counted(n, 'XID', 'XIDs'), 'XIDs'],
    [counts.ecc_uncorrected, (n) => counted(n, 'uncorrected ECC error', 'uncorrected ECC errors'), 'uncorrected ECC errors'],
    [counts.ecc_corrected, (n) => counted(n, 'corrected ECC error', 'corrected ECC errors'), 'corrected ECC errors'],
    [counts.thermal_violation_s, (s) => `${formatDuration(s)} of thermal throttling`, 'thermal throttling'],
    [counts.power_violation_s, (s) => `${formatDuration(s)} of power capping`, 'power capping'],
    [counts.pcie_replays, (n) => counted(n, 'PCIe replay', 'PCIe replays'), 'PCIe replays'],
  ].filter(([value]) => isNumber(value));
  const found = items.filter(([value]) => value > 0).map(([value, words]) => words(value));
  if (found.length) return `${found.join(', ')} in this range.`;
  const names = items.map(([, , name]) => name);
  if (!names.length) return 'No counts reported for this range.';
  const list = names.length > 1 ? `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}` : names[0];
  return `No ${list} in this range.`;
}

function eventItem(event) {
  const [kindText, tone] = KINDS[event.kind] ?? [String(event.kind ?? 'event'), 'secondary'];
  const item = element('li', 'gpu-event');
  item.dataset.kind = String(event.kind ?? '');
  const ms = event.ts * 1000;
  // The full date in words (a title alone reaches neither a keyboard nor a touch); the title
  // repeats it for a pointer's tooltip.
  const time = element('time', 'gpu-event-time text-body-secondary', formatFull(ms));
  time.dateTime = new Date(ms).toISOString();
  time.title = formatFull(ms);
  const badge = element('span', `badge text-bg-${tone} gpu-event-kind`, kindText);
  const text = element('span', 'gpu-event-text', String(event.text ?? ''));
  item.append(time, badge, text);
  return item;
}

function show({ summary = '', note = '', events = [] }) {
  document.getElementById('events-summary').textContent = summary;
  const noteBox = document.getElementById('events-note');
  noteBox.textContent = note;
  noteBox.hidden = !note;
  const list = document.getElementById('events-list');
  list.replaceChildren(...events.map(eventItem));
  list.hidden = events.length === 0;
}

/** Load this GPU's events over the chosen range. */
export async function loadEvents() {
  const gen = page.gen;
  const status = document.getElementById('events-status');
  const { fromS, toS } = rangeWindow();
  status.textContent = 'loading…';
  let answer;
  try {
    answer = await fetchJson(apiUrl('api/v1/events', rangeQuery(page.uuid, fromS, toS)), undefined);
  } catch (error) {
    if (gen !== page.gen) return;
    status.textContent = '';
    show({ note: `Events could not be loaded: ${error.message}` });
    return;
  }
  if (gen !== page.gen) return;
  const events = (answer && Array.isArray(answer.events) ? answer.events : [])
    .filter((event) => event && typeof event === 'object' && isNumber(event.ts)
      && (event.gpu_uuid === undefined || event.gpu_uuid === page.uuid))
    .sort((a, b) => b.ts - a.ts);
  const counts = answer && Array.isArray(answer.counts)
    ? answer.counts.find((item) => item && item.gpu_uuid === page.uuid) : null;
  const notes = [];
  if (!events.length) notes.push('No events in this range.');
  if (answer && answer.truncated === true) {
    notes.push('Only the newest events of this range are listed, older ones were left out: choose a shorter range to see them.');
  }
  show({ summary: counts ? countsText(counts) : '', note: notes.join(' '), events });
  status.textContent = `as of ${formatClock(Date.now())}`;
}
