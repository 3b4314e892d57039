/* Table heads and process rows, shared by the cards and the chart point panel. */

import { element, formatFull, formatWhen, isNumber, memoryText } from './format.js';

export const NOT_VISIBLE_HELP = 'This PID is outside the sampler\'s view (a sampler in a container'
  + ' without pid: host): its name, user and command line cannot be read.';

export function tableHead(columns) {
  const thead = element('thead');
  const row = element('tr');
  for (const [label, className] of columns) {
    // A header heard but not seen (a column of buttons): its text only is visually hidden.
    const unseen = className === 'visually-hidden-header';
    const th = element('th', unseen ? '' : className || '', unseen ? undefined : label);
    if (unseen) th.append(element('span', 'visually-hidden', label));
    th.scope = 'col';
    row.append(th);
  }
  thead.append(row);
  return thead;
}

export function cell(text, className, title) {
  const td = element('td', className, text);
  if (title) td.title = title;
  return td;
}

export function knownText(value) {
  return typeof value === 'string' && value !== '' ? value : null;
}

function sinceCell(since) {
  if (!since || !isNumber(since.sinceS)) return cell('—', 'process-since na');
  const ms = since.sinceS * 1000;
  // No "running for" here: a table left unchanged for days would keep an age long wrong.
  if (since.exact) return cell(formatWhen(ms), 'process-since', `running since ${formatFull(ms)}`);
  return cell(`≤ ${formatWhen(ms)}`, 'process-since',
    `Already running when this page first saw it, at ${formatFull(ms)}`);
}

function containerCell(proc) {
  const id = knownText(proc.container_id);
  const name = knownText(proc.container_name);
  if (!id && !name) return cell('—', 'process-container na', proc.visible === true ? 'not in a container' : '');
  const shown = name || id.slice(0, 12);
  return cell(shown, 'process-container', id ? `container ${id}` : '');
}

/** The columns of every process table; the last one holds each row's details button. */
export const PROCESS_COLUMNS = [
  ['PID', 'text-end'], ['User', ''], ['Name', ''], ['Command line', ''], ['Container', ''],
  ['Memory', 'text-end'], ['Since', ''], ['Details', 'visually-hidden-header'],
];

/** Give each cell its column's name: a phone stacks a row's cells, each under its label. */
function labelCells(row) {
  [...row.children].forEach((td, position) => {
    const column = PROCESS_COLUMNS[position];
    if (column && position < PROCESS_COLUMNS.length - 1) td.dataset.label = column[0];
  });
}

/** Return one process table row; every text goes through textContent or a title. */
export function processRow(proc, since) {
  const row = element('tr', 'process-row');
  row.dataset.pid = String(proc.pid);
  row.dataset.visible = String(proc.visible === true);
  const pid = cell(String(proc.pid), 'text-end process-pid', `${proc.kind === 'graphics' ? 'graphics' : 'compute'} process`);
  const memKnown = isNumber(proc.used_mem_bytes);
  const mem = cell(memKnown ? memoryText(proc.used_mem_bytes, null) : 'n/a', `text-end process-mem${memKnown ? '' : ' na'}`);
  if (proc.visible !== true) {
    row.classList.add('process-hidden');
    const nameCell = element('td', 'process-name');
    const badge = element('span', 'badge text-bg-secondary process-not-visible', 'not visible');
    badge.title = NOT_VISIBLE_HELP;
    nameCell.append(badge);
    row.append(pid, cell('—', 'process-user na'), nameCell, cell('—', 'process-cmd na'),
      containerCell(proc), mem, sinceCell(since));
    labelCells(row);
    return row;
  }
  const user = knownText(proc.user);
  const name = knownText(proc.name);
  const cmdline = knownText(proc.cmdline);
  row.append(
    pid,
    cell(user ?? 'unknown', `process-user${user ? '' : ' na'}`, user ?? ''),
    cell(name ?? 'unknown', `process-name${name ? '' : ' na'}`, name ?? ''),
    cell(cmdline ?? '—', `process-cmd${cmdline ? '' : ' na'}`, cmdline ?? ''),
    containerCell(proc), mem, sinceCell(since),
  );
  labelCells(row);
  return row;
}

/** Return what a process row's tooltips say, as label / text pairs a keyboard user can open. */
function processFacts(proc, since) {
  const facts = [['PID', `${proc.pid} (${proc.kind === 'graphics' ? 'graphics' : 'compute'} process)`]];
  if (proc.visible !== true) {
    facts.push(['Not visible', NOT_VISIBLE_HELP]);
  } else {
    facts.push(['User', knownText(proc.user) ?? 'unknown'], ['Name', knownText(proc.name) ?? 'unknown'],
      ['Command line', knownText(proc.cmdline) ?? '—']);
  }
  const id = knownText(proc.container_id);
  const containerName = knownText(proc.container_name);
  if (id || containerName) facts.push(['Container', [containerName, id].filter(Boolean).join(' · ')]);
  else if (proc.visible === true) facts.push(['Container', 'not in a container']);
  if (since && isNumber(since.sinceS)) {
    const full = formatFull(since.sinceS * 1000);
    facts.push(['Running since', since.exact ? full : `already running when this page first saw it, at ${full}`]);
  }
  return facts;
}

let detailCount = 0;

/**
 * Return a process's row and, under it, its details row (the full command line, container id
 * and exact times that the row's tooltips also give), opened by the row's own button; open:
 * the PIDs whose details are open, kept by the caller across redraws.
 */
export function processRows(proc, since, open) {
  const row = processRow(proc, since);
  const detail = element('tr', 'process-detail');
  detail.dataset.pid = String(proc.pid);
  detail.id = `process-detail-${++detailCount}`;
  const body = element('td', 'process-detail-cell');
  body.colSpan = PROCESS_COLUMNS.length;
  const list = element('dl', 'process-facts mb-0');
  for (const [label, text] of processFacts(proc, since)) list.append(element('dt', '', label), element('dd', '', text));
  body.append(list);
  detail.append(body);
  const isOpen = open.has(proc.pid);
  detail.hidden = !isOpen;
  const more = element('td', 'process-more');
  // A disclosure triangle, narrow enough for a card's table; its label names the process.
  const button = element('button', 'btn btn-sm btn-link p-0 process-more-button', isOpen ? '▾' : '▸');
  button.type = 'button';
  button.setAttribute('aria-expanded', String(isOpen));
  button.setAttribute('aria-controls', detail.id);
  button.setAttribute('aria-label', `Details of process ${proc.pid}`);
  button.addEventListener('click', () => {
    const opening = detail.hidden;
    detail.hidden = !opening;
    button.setAttribute('aria-expanded', String(opening));
    button.textContent = opening ? '▾' : '▸';
    if (opening) open.add(proc.pid);
    else open.delete(proc.pid);
  });
  more.append(button);
  row.append(more);
  return [row, detail];
}

/**
 * Replace a process table's rows; the keyboard's focus on a row's button moves to the same
 * process's new button (a redraw every tick must not drop it to the page's body).
 */
export function replaceProcessRows(tbody, processes, sinceOf, open) {
  const focused = tbody.contains(document.activeElement) ? document.activeElement.closest('tr') : null;
  const focusedPid = focused ? focused.dataset.pid : null;
  for (const pid of [...open]) {
    if (!processes.some((proc) => proc.pid === pid)) open.delete(pid);
  }
  tbody.replaceChildren(...processes.flatMap((proc) => processRows(proc, sinceOf(proc), open)));
  if (focusedPid === null) return;
  const again = tbody.querySelector(`tr.process-row[data-pid="${CSS.escape(focusedPid)}"] .process-more-button`);
  if (again) again.focus();
  else {
    const table = tbody.closest('table'); // the process left: the keyboard stays on its table
    table.tabIndex = -1;
    table.focus();
  }
}
