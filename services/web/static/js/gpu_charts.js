/* The GPU page's charts: one GPU's metrics, a few to a chart, over the chosen range (Chart.js). */

import { AXIS_STEPS, cssVar, tickLabel } from './charts.js';
import { GIB, colourFor, element, formatDuration, formatFull, formatNumber, isNumber, withUnit } from './format.js';

export const NOT_REPORTED = 'not reported by this GPU';
const PCT_AXIS = { unit: '%', min: 0, max: 100, digits: 1 };

/**
 * The charts, in reading order. A line on axis y1 is drawn against the chart's right-hand axis
 * (another unit); `dashed` marks a limit or a total rather than a reading.
 */
export const GPU_CHARTS = [
  {
    id: 'util', title: 'Utilization & activity', unit: '%', digits: 1, min: 0, max: 100,
    lines: [
      { metric: 'util_gpu_pct', label: 'GPU utilization' },
      { metric: 'gr_engine_active_pct', label: 'Graphics engine active' },
      { metric: 'sm_active_pct', label: 'SM active' },
      { metric: 'tensor_active_pct', label: 'Tensor cores active' },
      { metric: 'dram_active_pct', label: 'DRAM active' },
    ],
  },
  {
    id: 'video', title: 'Video engines', unit: '%', digits: 1, min: 0, max: 100,
    lines: [
      { metric: 'enc_util_pct', label: 'Video encoder' },
      { metric: 'dec_util_pct', label: 'Video decoder' },
    ],
  },
  {
    id: 'mem', title: 'Memory', unit: 'GiB', scale: 1 / GIB, digits: 2, min: 0, y1: PCT_AXIS,
    lines: [
      { metric: 'mem_used_bytes', label: 'Used' },
      { metric: 'mem_total_bytes', label: 'Total', dashed: true },
      { metric: 'util_mem_pct', label: 'Memory bus busy', axis: 'y1' },
    ],
  },
  {
    id: 'temp', title: 'Temperature', unit: '°C', digits: 1, y1: PCT_AXIS,
    lines: [
      { metric: 'temp_c', label: 'GPU' },
      { metric: 'mem_temp_c', label: 'Memory' },
      { metric: 'fan_pct', label: 'Fan', axis: 'y1' },
    ],
  },
  {
    id: 'power', title: 'Power', unit: 'W', digits: 1, min: 0,
    lines: [
      { metric: 'power_w', label: 'Draw' },
      { metric: 'power_limit_w', label: 'Enforced limit', dashed: true },
    ],
  },
  {
    id: 'clocks', title: 'Clocks', unit: 'MHz', digits: 0, min: 0,
    y1: { unit: '', min: 0, max: 15, reverse: true, prefix: 'P', digits: 1 },
    lines: [
      { metric: 'sm_clock_mhz', label: 'SM clock' },
      { metric: 'mem_clock_mhz', label: 'Memory clock' },
      { metric: 'pstate', label: 'Performance state (P0 fastest)', axis: 'y1' },
    ],
  },
  {
    id: 'pcie', title: 'PCIe throughput', unit: 'MB/s', scale: 1 / 1000, digits: 1, min: 0,
    lines: [
      { metric: 'pcie_tx_kb_per_s', label: 'Sent (TX)' },
      { metric: 'pcie_rx_kb_per_s', label: 'Received (RX)' },
    ],
  },
];

export const CHART_METRICS = GPU_CHARTS.flatMap((def) => def.lines.map((line) => line.metric));

function axisOf(def, line) {
  return line.axis === 'y1' ? def.y1 : def;
}

/** Return a value of a line in words: its unit, or "P2" for a performance state. */
export function lineValueText(def, line, value) {
  const axis = axisOf(def, line);
  if (!isNumber(value)) return 'n/a';
  if (axis.prefix) return `${axis.prefix}${formatNumber(value, axis.digits ?? 0)}`;
  return withUnit(value, axis.unit, axis.digits ?? def.digits);
}

function chartTitle(def) {
  const units = [def.unit, def.y1 ? def.y1.unit || 'P-state' : null].filter(Boolean);
  return `${def.title} (${units.join(' · ')})`;
}

function roundTick(ms, step) {
  const date = new Date(ms);
  if (step.unit === 'minute') return date.getMinutes() % step.every === 0;
  if (step.unit === 'hour') return date.getMinutes() === 0 && date.getHours() % step.every === 0;
  // Days counted from a fixed date, so day ticks stay put from one load to the next.
  const day = Math.round(Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) / 86400e3);
  return day % step.every === 0;
}

/** Return the radius of a point: 0 on a line, 2 when no neighbour is drawn (else it is not seen). */
function pointRadius(context) {
  const data = context.dataset.data;
  const i = context.dataIndex;
  const drawn = (point) => Boolean(point) && point.y !== null;
  return drawn(data[i]) && !drawn(data[i - 1]) && !drawn(data[i + 1]) ? 2 : 0;
}

function yAxis(axis, grid, right) {
  return {
    display: 'auto', // an axis with no line drawn against it takes no room
    position: right ? 'right' : 'left',
    min: axis.min,
    max: axis.max,
    reverse: Boolean(axis.reverse),
    grid: right ? { drawOnChartArea: false } : { color: grid },
    ticks: {
      precision: axis.prefix ? 0 : undefined,
      callback: (value) => (axis.prefix ? `${axis.prefix}${value}` : `${formatNumber(value, 2)} ${axis.unit}`),
    },
  };
}

function tooltipLabel(def, item) {
  const line = item.dataset.pcwLine;
  const raw = item.raw || {};
  let text = `${line.label}: ${lineValueText(def, line, raw.y)}`;
  if (isNumber(raw.max) && isNumber(raw.y) && raw.max - raw.y > 1e-9) {
    text += ` (max ${lineValueText(def, line, raw.max)})`;
  }
  return text;
}

/** Return a chart's card (heading, canvas, notes, a line of figures) with its parts. */
function chartCard(def) {
  const column = element('div', 'col');
  const card = element('div', 'card h-100 gpu-chart');
  card.dataset.chart = def.id;
  const titleId = `gpu-chart-${def.id}-title`;
  const head = element('div', 'card-header py-2 d-flex align-items-center gap-2');
  const title = element('h3', 'h6 small fw-semibold mb-0 me-auto', chartTitle(def));
  title.id = titleId;
  // The chart's text alternative: its buckets as a table, opened by this button.
  const tableBox = element('div', 'chart-table-box');
  tableBox.id = `gpu-chart-${def.id}-table-box`;
  tableBox.setAttribute('role', 'region');
  tableBox.setAttribute('aria-label', `${def.title}, as a table`);
  tableBox.tabIndex = 0;
  tableBox.hidden = true;
  const toggle = element('button', 'btn btn-sm btn-outline-secondary py-0 chart-table-toggle', 'Table');
  toggle.type = 'button';
  toggle.setAttribute('aria-expanded', 'false');
  toggle.setAttribute('aria-controls', tableBox.id);
  head.append(title, toggle);
  const body = element('div', 'card-body p-2');
  const box = element('div', 'chart-box');
  const canvas = element('canvas');
  canvas.id = `gpu-chart-${def.id}`;
  canvas.setAttribute('role', 'img');
  box.append(canvas);
  // The legend's toggles as buttons: a keyboard switches a line off and on too.
  const lines = element('div', 'gpu-toggles mt-1 chart-lines');
  lines.setAttribute('role', 'group');
  lines.setAttribute('aria-label', `${def.title}: lines drawn`);
  const stats = element('ul', 'list-unstyled small mb-0 mt-1 chart-stats');
  stats.setAttribute('aria-label', `${def.title}: figures over the range`);
  const note = element('p', 'small text-body-secondary mb-0 mt-1 chart-note');
  note.hidden = true;
  body.append(box, lines, tableBox, stats, note);
  card.setAttribute('aria-labelledby', titleId);
  card.append(head, body);
  column.append(card);
  return { column, card, box, canvas, stats, note, toggle, tableBox, lines };
}

/** Fill a chart's table: a row a bucket (newest first), a column a line drawn, mean (max). */
function fillTable(entry) {
  const { def, chart, els } = entry;
  const datasets = chart.data.datasets.filter((dataset, i) => chart.isDatasetVisible(i));
  const table = element('table', 'table table-sm small mb-0 num-table chart-table');
  table.append(element('caption', 'visually-hidden', `${def.title}: one row a bucket, newest first`));
  const head = element('tr');
  for (const label of ['Time', ...datasets.map((dataset) => dataset.label)]) {
    const th = element('th', label === 'Time' ? '' : 'text-end', label);
    th.scope = 'col';
    head.append(th);
  }
  const thead = element('thead');
  thead.append(head);
  const tbody = element('tbody');
  const count = datasets.length ? datasets[0].data.length : 0;
  for (let i = count - 1; i >= 0; i -= 1) {
    if (!datasets.some((dataset) => isNumber(dataset.data[i]?.y))) continue;
    const row = element('tr');
    const th = element('th', 'chart-table-time', formatFull(datasets[0].data[i].x));
    th.scope = 'row';
    row.append(th);
    for (const dataset of datasets) {
      const point = dataset.data[i];
      let text = point && isNumber(point.y) ? lineValueText(def, dataset.pcwLine, point.y) : '—';
      if (point && isNumber(point.max) && isNumber(point.y) && point.max - point.y > 1e-9) {
        text += ` (max ${lineValueText(def, dataset.pcwLine, point.max)})`;
      }
      row.append(element('td', 'text-end', text));
    }
    tbody.append(row);
  }
  table.append(thead, tbody);
  els.tableBox.replaceChildren(tbody.children.length
    ? table : element('p', 'small text-body-secondary mb-0', 'No readings in this range.'));
}

/** Give a chart one toggle button a line, pressed while the line is drawn. */
function fillLineButtons(entry) {
  const { chart, els } = entry;
  const focused = els.lines.contains(document.activeElement) ? document.activeElement.dataset.line : null;
  els.lines.replaceChildren(...chart.data.datasets.map((dataset, i) => {
    const button = element('button', 'btn btn-sm btn-outline-secondary gpu-toggle');
    button.type = 'button';
    button.dataset.line = dataset.pcwMetric;
    const swatch = element('span', 'gpu-toggle-swatch');
    swatch.style.setProperty('--gpu-color', dataset.borderColor);
    button.append(swatch, element('span', 'gpu-toggle-label', dataset.label));
    button.setAttribute('aria-pressed', String(chart.isDatasetVisible(i)));
    button.addEventListener('click', () => {
      chart.setDatasetVisibility(i, !chart.isDatasetVisible(i));
      chart.update('none');
      fillLineButtons(entry);
      if (!els.tableBox.hidden) fillTable(entry);
    });
    return button;
  }));
  if (focused) els.lines.querySelector(`[data-line="${CSS.escape(focused)}"]`)?.focus();
}

/** Build every chart, empty, into the container; return their entries. */
export function buildGpuCharts(container, rangeKey) {
  const grid = cssVar('--bs-border-color-translucent', 'rgba(255,255,255,0.12)');
  return GPU_CHARTS.map((def) => {
    const els = chartCard(def);
    container.append(els.column);
    const view = { rangeKey }; // what the time axis shows now: its ticks are chosen by it
    const scales = {
      x: {
        type: 'time',
        time: { unit: AXIS_STEPS[rangeKey].unit },
        grid: { color: grid },
        afterBuildTicks: (scale) => {
          const step = AXIS_STEPS[view.rangeKey];
          scale.ticks = scale.ticks.filter((tick) => roundTick(tick.value, step));
        },
        ticks: { maxRotation: 0, autoSkip: true, source: 'auto', callback: tickLabel },
      },
      y: yAxis(def, grid, false),
    };
    if (def.y1) scales.y1 = yAxis(def.y1, grid, true);
    const chart = new window.Chart(els.canvas, {
      type: 'line',
      data: { datasets: [] },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false, // points are already { x: epoch ms, y }
        normalized: true,
        spanGaps: false, // a bucket without a reading is a gap, never a slope
        interaction: { mode: 'index', intersect: false },
        elements: {
          line: { borderWidth: 1.5, tension: 0 },
          point: { radius: pointRadius, hitRadius: 6, hoverRadius: 3 },
        },
        scales,
        plugins: {
          legend: { position: 'bottom', labels: { boxWidth: 14, boxHeight: 3, padding: 8 } },
          tooltip: {
            callbacks: {
              title: (items) => (items.length ? formatFull(items[0].parsed.x) : ''),
              label: (item) => tooltipLabel(def, item),
            },
          },
        },
      },
    });
    const entry = { def, chart, els, view };
    // The canvas legend's own click keeps its buttons in step.
    const legendClick = window.Chart.defaults.plugins.legend.onClick;
    chart.options.plugins.legend.onClick = function onLegend(event, item, legend) {
      legendClick.call(this, event, item, legend);
      fillLineButtons(entry);
    };
    els.toggle.addEventListener('click', () => {
      const open = els.tableBox.hidden;
      els.tableBox.hidden = !open;
      els.toggle.setAttribute('aria-expanded', String(open));
      els.toggle.textContent = open ? 'Hide table' : 'Table';
      if (open) fillTable(entry);
    });
    return entry;
  });
}

function pointsOf(buckets, metric, scale) {
  const value = (part) => (part && isNumber(part[metric]) ? part[metric] * scale : null);
  return buckets.map((bucket) => ({ x: bucket.ts * 1000, y: value(bucket.mean), max: value(bucket.max) }));
}

/** Return the mean over the range (each bucket weighted by its readings) and the highest max. */
function rangeFigures(buckets, points) {
  let sum = 0;
  let weight = 0;
  let max = null;
  points.forEach((point, i) => {
    if (!isNumber(point.y)) return;
    const count = isNumber(buckets[i].count) && buckets[i].count > 0 ? buckets[i].count : 1;
    sum += point.y * count;
    weight += count;
    const top = isNumber(point.max) ? point.max : point.y;
    max = max === null ? top : Math.max(max, top);
  });
  return weight ? { mean: sum / weight, max } : null;
}

/**
 * Draw one GPU's history answer. A line with no value in any bucket is left out, with a note,
 * never drawn as 0.
 */
export function showHistory(entries, series, range, stepS, intervalS) {
  const buckets = series && Array.isArray(series.buckets)
    ? series.buckets.filter((bucket) => bucket && isNumber(bucket.ts)) : [];
  const anyReading = buckets.some((bucket) => bucket.mean);
  for (const entry of entries) {
    const { def, chart, els, view } = entry;
    const datasets = [];
    const stats = [];
    const missing = [];
    def.lines.forEach((line, i) => {
      const points = pointsOf(buckets, line.metric, line.axis === 'y1' ? 1 : def.scale ?? 1);
      const figures = rangeFigures(buckets, points);
      if (!figures) {
        if (anyReading) missing.push(line.label);
        return;
      }
      const colour = colourFor(i);
      datasets.push({
        label: line.label, data: points, pcwLine: line, pcwMetric: line.metric,
        borderColor: colour, backgroundColor: colour, yAxisID: line.axis || 'y',
        borderDash: line.dashed ? [6, 4] : undefined, stepped: line.metric === 'pstate' ? 'before' : false,
      });
      const item = element('li', 'chart-stat',
        `${line.label}: mean ${lineValueText(def, line, figures.mean)}, max ${lineValueText(def, line, figures.max)}`);
      item.dataset.metric = line.metric;
      stats.push(item);
    });
    chart.data.datasets = datasets;
    view.rangeKey = range.key;
    chart.options.scales.x.time.unit = AXIS_STEPS[range.key].unit;
    chart.options.scales.x.min = range.fromS * 1000;
    chart.options.scales.x.max = range.toS * 1000;
    chart.update('none');
    fillLineButtons(entry);
    if (!els.tableBox.hidden) fillTable(entry);
    els.stats.replaceChildren(...stats);
    const notes = [];
    if (!anyReading) notes.push('No readings of this GPU in this range.');
    if (missing.length) notes.push(`${missing.join(', ')}: ${NOT_REPORTED}.`);
    els.note.textContent = notes.join(' ');
    els.note.hidden = notes.length === 0;
    els.card.dataset.lines = String(datasets.length);
    els.box.hidden = anyReading && datasets.length === 0;
    els.canvas.setAttribute('aria-label', datasets.length
      ? `${def.title} over the last ${range.key}: ${datasets.map((set) => set.label).join(', ')}`
      : `${def.title}: nothing to draw`);
  }
  return stepS > intervalS * 1.01 ? `${formatDuration(stepS)} buckets` : 'every reading';
}
