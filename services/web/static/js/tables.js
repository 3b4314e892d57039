/* Table heads and process rows, shared by the cards and the chart point panel. */

import { element, formatFull, formatWhen, isNumber, memoryText } from './format.js';

export const NOT_VISIBLE_HELP = 'This PID is outside the sampler\'s view (a sampler in a container'
  + ' without pid: host): its name, user and command line cannot be read.';

export function tableHead(columns) {
  const thead = element('thead');
  const row = element('tr');
  for (const [label, className] of columns) {
    const th = element('th', className || '', label);
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
  return row;
}
