/* The fleet table: one dense row per GPU, grouped by host (a <tbody> each, headed by the host's
 * totals over the rows shown), sortable by a button in each column's heading, filterable by text.
 * Built once; a render only rewrites the cells whose text changed and moves rows out of order.
 * table-layout: fixed (fleet.css), so that a changed cell never lays out the whole table.
 * A GPU's row has its card's id and a host's group its section's (alert_text.js, hosts.js), so
 * that the problems strip's links lead to them in this view too. */

import { cardId } from './alert_text.js';
import { element, formatNumber, isNumber, putText } from './format.js';
import { hostSectionId } from './hosts.js';
import {
  COLUMNS, filterText, gib, healthOf, holdersText, hostKey, hostTotals, rowOrder,
} from './fleet_rows.js';

const SORT_LABEL = { 1: 'ascending', '-1': 'descending' };

export function gpuHref(uuid) {
  return `gpu/${encodeURIComponent(uuid)}`; // relative: the page may be mounted under a path
}

function pct(value) {
  return isNumber(value) ? `${formatNumber(value, 0)} %` : 'n/a';
}

function memText(used, total) {
  if (!isNumber(used) || !isNumber(total) || total <= 0) return 'n/a';
  return `${formatNumber(gib(used), 1, true)} / ${formatNumber(gib(total), 0)} GiB`;
}

function powerText(power, limit) {
  if (!isNumber(power)) return 'n/a';
  return isNumber(limit) && limit > 0
    ? `${formatNumber(power, 0)} / ${formatNumber(limit, 0)} W` : `${formatNumber(power, 0)} W`;
}

function tempText(value) {
  return isNumber(value) ? `${formatNumber(value, 0)} °C` : 'n/a';
}

export class FleetTable {
  constructor(box, { sortId = 'host', direction = 1, filter = '', onChange = () => {} } = {}) {
    this.rows = new Map(); // uuid -> row (fleet_rows.js)
    this.views = new Map(); // uuid -> { tr, cells, seen }
    this.hosts = new Map(); // host -> { tbody, head, cells }
    this.sortId = COLUMNS.some((column) => column.id === sortId) ? sortId : 'host';
    this.direction = direction === -1 ? -1 : 1;
    this.filter = filter;
    this.onChange = onChange;
    this.orderDirty = true;
    this.build(box);
  }

  build(box) {
    this.table = element('table', 'table table-sm fleet-table mb-0');
    this.table.id = 'fleet-table';
    const caption = element('caption', 'visually-hidden',
      'Every GPU, grouped by host; each host\'s first row gives its totals over the GPUs shown.');
    const colgroup = element('colgroup');
    for (const column of COLUMNS) colgroup.append(element('col', `fleet-col-${column.id}`));
    const head = element('thead');
    const tr = element('tr');
    this.heads = new Map();
    for (const column of COLUMNS) {
      const th = element('th', `fleet-h-${column.id}`);
      th.scope = 'col';
      const button = element('button', 'fleet-sort');
      button.type = 'button';
      button.dataset.sort = column.id;
      const mark = element('span', 'fleet-sort-mark');
      mark.setAttribute('aria-hidden', 'true');
      button.append(element('span', '', column.label), mark);
      button.addEventListener('click', () => this.sortBy(column.id));
      th.append(button);
      tr.append(th);
      this.heads.set(column.id, { th, mark });
    }
    head.append(tr);
    this.table.append(caption, colgroup, head);
    // A click anywhere on a GPU's row opens its page; the link in it is the keyboard's way.
    this.table.addEventListener('click', (event) => {
      if (event.defaultPrevented || event.button !== 0 || event.target.closest('a, button')) return;
      const tr = event.target.closest('tr[data-gpu-uuid]');
      if (tr && !String(window.getSelection() || '')) window.location.assign(gpuHref(tr.dataset.gpuUuid));
    });
    this.empty = element('p', 'fleet-empty text-body-secondary small mt-2', 'No GPU matches the filter.');
    this.empty.hidden = true;
    box.append(this.table, this.empty);
    this.showSort();
  }

  sortBy(id) {
    if (id === this.sortId) this.direction = -this.direction;
    else {
      this.sortId = id;
      const column = COLUMNS.find((item) => item.id === id);
      this.direction = column.numeric || id === 'health' ? -1 : 1; // biggest or worst first
    }
    this.showSort();
    this.orderDirty = true;
    this.onChange();
  }

  setFilter(text) {
    const filter = text.trim().toLowerCase();
    if (filter === this.filter) return;
    this.filter = filter;
    this.orderDirty = true;
    this.onChange();
  }

  showSort() {
    for (const [id, { th, mark }] of this.heads) {
      if (id === this.sortId) th.setAttribute('aria-sort', SORT_LABEL[this.direction]);
      else th.removeAttribute('aria-sort');
      mark.textContent = id === this.sortId ? (this.direction === 1 ? ' ▲' : ' ▼') : '';
    }
  }

  /** Add a row (its model object, fleet_rows.js) once; its cells follow it in render(). */
  add(row) {
    this.rows.set(row.uuid, row);
    const tr = element('tr', 'fleet-gpu');
    tr.id = cardId(row.uuid);
    tr.dataset.gpuUuid = row.uuid;
    tr.dataset.host = row.host;
    const cells = {};
    for (const column of COLUMNS) {
      const td = element(column.id === 'gpu' ? 'th' : 'td', `fleet-c-${column.id}`);
      if (column.id === 'gpu') {
        td.scope = 'row';
        const link = element('a', 'fleet-link');
        link.href = gpuHref(row.uuid);
        td.append(link);
        cells.link = link;
      }
      cells[column.id] = td;
      tr.append(td);
    }
    this.views.set(row.uuid, { tr, cells, seen: -1 });
    this.orderDirty = true;
  }

  /** Remove a GPU's row (one the server no longer lists), and its host's group with its last. */
  remove(uuid) {
    const row = this.rows.get(uuid);
    if (!row) return;
    this.rows.delete(uuid);
    this.views.get(uuid).tr.remove();
    this.views.delete(uuid);
    if (![...this.rows.values()].some((other) => other.host === row.host)) {
      const group = this.hosts.get(row.host);
      if (group) group.tbody.remove();
      this.hosts.delete(row.host);
    }
    this.orderDirty = true;
  }

  hostGroup(host) {
    let group = this.hosts.get(host);
    if (group) return group;
    const tbody = element('tbody', 'fleet-host-group');
    tbody.id = hostSectionId(host);
    tbody.dataset.host = host;
    const head = element('tr', 'fleet-host');
    head.dataset.host = host;
    const cells = {};
    for (const column of COLUMNS) {
      const cell = element(column.id === 'host' ? 'th' : 'td', `fleet-t-${column.id}`);
      if (column.id === 'host') cell.scope = 'rowgroup';
      cells[column.id] = cell;
      head.append(cell);
    }
    putText(cells.host, host);
    tbody.append(head);
    group = { tbody, head, cells };
    this.hosts.set(host, group);
    return group;
  }

  /** Bring the table up to date: changed cells, then (if needed) order, filter and totals. */
  render(changedHosts) {
    let refilter = false; // a changed row now matches the filter, or no longer does
    for (const [uuid, row] of this.rows) {
      const view = this.views.get(uuid);
      if (view.seen === row.version) continue;
      view.seen = row.version;
      this.fillRow(row, view);
      if (changedHosts) changedHosts.add(row.host);
      if (this.filter && this.matches(row) === view.tr.hidden) refilter = true;
    }
    const column = COLUMNS.find((item) => item.id === this.sortId);
    const byValue = this.sortId !== 'host' && this.sortId !== 'gpu' && this.sortId !== 'model';
    const reorder = this.orderDirty || refilter || (changedHosts && changedHosts.size && byValue);
    if (reorder) {
      this.placeAll(column);
      this.orderDirty = false;
    } else if (changedHosts) {
      for (const host of changedHosts) this.fillTotals(host, this.shownRows(host));
    }
  }

  fillRow(row, { tr, cells }) {
    putText(cells.host, row.host);
    putText(cells.link, `GPU ${row.index}`);
    cells.link.setAttribute('aria-label', `${row.host} GPU ${row.index}, open its page`);
    putText(cells.model, row.name);
    putText(cells.util, pct(row.util));
    putText(cells.mem, memText(row.memUsed, row.memTotal));
    putText(cells.temp, tempText(row.temp));
    putText(cells.power, powerText(row.power, row.powerLimit));
    const health = healthOf(row);
    putText(cells.health, health.text);
    if (cells.health.title !== health.title) cells.health.title = health.title;
    if (tr.dataset.health !== health.look) tr.dataset.health = health.look;
    const holders = holdersText(row);
    putText(cells.holders, holders);
    tr.dataset.ts = String(row.lastTs ?? ''); // the reading shown: scripts and tests wait on it
    if (cells.holders.title !== holders) cells.holders.title = holders;
  }

  shownRows(host) {
    const rows = [];
    for (const row of this.rows.values()) {
      if (row.host === host && this.matches(row)) rows.push(row);
    }
    return rows;
  }

  matches(row) {
    return !this.filter || filterText(row).includes(this.filter);
  }

  /** Order hosts and their rows by the sort column, hide what the filter leaves out. */
  placeAll(column) {
    const byHost = new Map();
    for (const row of this.rows.values()) {
      const shown = this.matches(row);
      const view = this.views.get(row.uuid);
      if (view.tr.hidden === shown) view.tr.hidden = !shown;
      if (!byHost.has(row.host)) byHost.set(row.host, []);
      if (shown) byHost.get(row.host).push(row);
    }
    const order = rowOrder(column, this.direction);
    const hostOrder = [...byHost.keys()].map((host) => ({ host, rows: byHost.get(host).sort(order) }));
    if (column.id === 'host' || column.id === 'gpu') {
      hostOrder.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0) * (column.id === 'host' ? this.direction : 1));
    } else {
      const keys = new Map(hostOrder.map((item) => [item.host, hostKey(column, item.rows)]));
      hostOrder.sort((a, b) => {
        const ka = keys.get(a.host);
        const kb = keys.get(b.host);
        if ((ka === null) !== (kb === null)) return ka === null ? 1 : -1;
        const by = ka === null ? 0 : this.direction * (column.text ? String(ka).localeCompare(String(kb)) : ka - kb);
        return by || (a.host < b.host ? -1 : 1);
      });
    }
    let shownTotal = 0;
    let previous = null;
    for (const { host, rows } of hostOrder) {
      const group = this.hostGroup(host);
      group.tbody.hidden = rows.length === 0;
      shownTotal += rows.length;
      // Rows in order after the host's head; the hidden ones after them.
      let after = group.head;
      for (const row of rows) {
        const tr = this.views.get(row.uuid).tr;
        if (after.nextSibling !== tr) after.after(tr);
        after = tr;
      }
      for (const row of this.rows.values()) {
        if (row.host !== host) continue;
        const tr = this.views.get(row.uuid).tr;
        if (tr.parentNode !== group.tbody) group.tbody.append(tr);
      }
      const place = previous ? previous.nextSibling : this.table.tHead.nextSibling;
      if (place !== group.tbody) this.table.insertBefore(group.tbody, place);
      previous = group.tbody;
      this.fillTotals(host, rows);
    }
    this.empty.hidden = shownTotal > 0 || this.rows.size === 0;
  }

  fillTotals(host, rows) {
    const group = this.hostGroup(host);
    const totals = hostTotals(rows);
    const all = [...this.rows.values()].filter((row) => row.host === host).length;
    const cells = group.cells;
    putText(cells.gpu, totals.gpus === all ? `${all} GPUs` : `${totals.gpus} of ${all} GPUs`);
    putText(cells.model, 'host total');
    putText(cells.util, isNumber(totals.utilMean) ? `${pct(totals.utilMean)} mean` : 'n/a');
    putText(cells.mem, memText(totals.memUsed, totals.memTotal));
    putText(cells.temp, isNumber(totals.tempMax) ? `${tempText(totals.tempMax)} max` : 'n/a');
    putText(cells.power, powerText(totals.power, totals.powerLimit));
    putText(cells.health, totals.unhealthy ? `${totals.unhealthy} need a look` : 'all well');
    const holders = new Set(rows.flatMap((row) => row.holders || []));
    putText(cells.holders, holders.size ? `${holders.size} ${holders.size === 1 ? 'holder' : 'holders'}` : '');
    group.head.dataset.gpus = String(totals.gpus);
    group.head.dataset.utilMean = isNumber(totals.utilMean) ? String(totals.utilMean) : '';
    group.head.dataset.memUsedBytes = String(totals.memUsed);
    group.head.dataset.powerW = isNumber(totals.power) ? String(totals.power) : '';
  }
}
