/* The four history charts (Chart.js): datasets per GPU, round time ticks, tooltips, drawing. */

import {
  GIB, dateFormat, element, formatDuration, formatFull, formatNumber, isNumber, withUnit,
} from './format.js';
import { gpuOrder } from './hosts.js';
import { refreshPointPicker, showPointProcesses } from './point-panel.js';
import { dropOlderThan } from './series.js';
import { RANGES_S, hostShown, serverNowS, state } from './state.js';

// Time-axis ticks at round local times: every `every` units (Chart.js skips some if crowded).
export const AXIS_STEPS = {
  '1h': { unit: 'minute', every: 10 },
  '6h': { unit: 'hour', every: 1 },
  '24h': { unit: 'hour', every: 3 },
  '7d': { unit: 'day', every: 1 },
  '30d': { unit: 'day', every: 5 },
};

export const CHARTS = [
  { id: 'chart-util', metric: 'util_gpu_pct', unit: '%', scale: 1, digits: 1, min: 0, max: 100 },
  { id: 'chart-temp', metric: 'temp_c', unit: '°C', scale: 1, digits: 1 },
  { id: 'chart-mem', metric: 'mem_used_bytes', unit: 'GiB', scale: 1 / GIB, digits: 2, min: 0 },
  { id: 'chart-power', metric: 'power_w', unit: 'W', scale: 1, digits: 1, min: 0 },
];

export const CHARTED_METRICS = CHARTS.map((chart) => chart.metric);

export function cssVar(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

/** Return the short legend label; the card of the same colour and the tooltip give the name. */
function chartLabel(gpu) {
  return state.hosts.size > 1 ? `${gpu.host} · GPU ${gpu.index}` : `GPU ${gpu.index}`;
}

export function relabelDatasets() {
  for (const entry of state.charts) {
    for (const dataset of entry.chart.data.datasets) {
      const gpu = state.gpus.get(dataset.pcwUuid);
      if (gpu) {
        dataset.label = chartLabel(gpu);
        dataset.pcwName = gpu.name;
      }
    }
  }
  refreshGpuToggles();
  queueRender();
}

export function datasetFor(entry, gpu) {
  const datasets = entry.chart.data.datasets;
  let dataset = datasets.find((candidate) => candidate.pcwUuid === gpu.uuid);
  if (dataset) return dataset;
  dataset = {
    label: chartLabel(gpu),
    pcwName: gpu.name,
    pcwUuid: gpu.uuid,
    pcwLiveFromS: -Infinity, // no history of this GPU is drawn yet: every tick is new
    data: [],
    borderColor: gpu.colour,
    backgroundColor: gpu.colour,
    hidden: gpu.hidden || !hostShown(gpu.host),
  };
  const at = datasets.findIndex((other) => {
    const otherGpu = state.gpus.get(other.pcwUuid);
    return otherGpu && gpuOrder(gpu, otherGpu) < 0;
  });
  if (at < 0) datasets.push(dataset);
  else datasets.splice(at, 0, dataset);
  refreshGpuToggles();
  queueRender();
  return dataset;
}

/**
 * Draw a dot at each point with no drawn neighbour (a bucket between gaps: no line shows it).
 * A plugin rather than a scriptable point radius: a function option makes Chart.js resolve
 * every point's options one by one on each redraw, most of a redraw's time on a phone.
 */
const isolatedDots = {
  id: 'pcwIsolatedDots',
  afterDatasetsDraw(chart) {
    const { ctx } = chart;
    chart.data.datasets.forEach((dataset, index) => {
      if (!chart.isDatasetVisible(index)) return;
      const data = dataset.data;
      const points = chart.getDatasetMeta(index).data;
      ctx.fillStyle = dataset.borderColor;
      for (let i = 0; i < data.length; i += 1) {
        const lone = data[i].y !== null && (i === 0 || data[i - 1].y === null)
          && (i === data.length - 1 || data[i + 1].y === null);
        if (!lone || !points[i] || points[i].skip) continue;
        ctx.beginPath();
        ctx.arc(points[i].x, points[i].y, 2, 0, 2 * Math.PI);
        ctx.fill();
      }
    });
  },
};

// Cached formatters: toLocale*String builds one a call, and Chart.js asks for each tick's label
// several times a redraw (most of a phone's main-thread time before).
export function tickLabel(value) {
  const date = new Date(value);
  const midnight = date.getHours() === 0 && date.getMinutes() === 0;
  return dateFormat(midnight ? 'day' : 'minute').format(date);
}

/** Return the first local time at or after minMs that is a whole number of `every` units. */
function firstRoundTime(minMs, step) {
  const date = new Date(minMs);
  date.setSeconds(0, 0);
  if (step.unit === 'minute') {
    date.setMinutes(Math.floor(date.getMinutes() / step.every) * step.every);
  } else if (step.unit === 'hour') {
    date.setMinutes(0);
    date.setHours(Math.floor(date.getHours() / step.every) * step.every);
  } else {
    date.setHours(0, 0);
    // Count days from a fixed date, so day ticks stay put while the window slides.
    const day = Math.round(Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) / 86400e3);
    date.setDate(date.getDate() - (day % step.every));
  }
  while (date.getTime() < minMs) advance(date, step);
  return date;
}

function advance(date, step) {
  if (step.unit === 'minute') date.setMinutes(date.getMinutes() + step.every);
  else if (step.unit === 'hour') date.setHours(date.getHours() + step.every);
  else date.setDate(date.getDate() + step.every);
}

/** Chart.js afterBuildTicks hook: replace the time scale's ticks with round local times. */
function roundTicks(scale) {
  const step = AXIS_STEPS[state.rangeKey];
  if (!isNumber(scale.min) || !isNumber(scale.max) || scale.max <= scale.min) return;
  const ticks = [];
  for (const date = firstRoundTime(scale.min, step); date.getTime() <= scale.max && ticks.length < 100; advance(date, step)) {
    ticks.push({ value: date.getTime() });
  }
  scale.ticks = ticks;
}

function tooltipTitle(items) {
  if (!items.length) return '';
  const title = formatFull(items[0].parsed.x);
  const stepS = state.history ? state.history.stepS : 0;
  return stepS > state.intervalS * 1.01 ? `${title} (${formatDuration(stepS)} bucket)` : title;
}

function tooltipLabel(def, item) {
  const raw = item.raw || {};
  const name = item.dataset.pcwName ? ` · ${item.dataset.pcwName}` : '';
  let text = `${item.dataset.label}${name}: ${withUnit(raw.y, def.unit, def.digits)}`;
  if (isNumber(raw.max) && isNumber(raw.y) && raw.max - raw.y > 1e-9) {
    text += ` (max ${withUnit(raw.max, def.unit, def.digits)})`;
  }
  return text;
}

function toggleGpu(uuid) {
  const gpu = state.gpus.get(uuid);
  if (!gpu) return;
  gpu.hidden = !gpu.hidden;
  showDatasets();
}

/** Draw the lines of the GPUs that are neither switched off in a legend nor of another host. */
export function showDatasets() {
  for (const entry of state.charts) {
    entry.chart.data.datasets.forEach((dataset, index) => {
      const gpu = state.gpus.get(dataset.pcwUuid);
      const shown = Boolean(gpu) && !gpu.hidden && hostShown(gpu.host);
      dataset.hidden = !shown;
      entry.chart.setDatasetVisibility(index, shown);
    });
  }
  refreshGpuToggles();
  queueRender();
}

/**
 * The legends' toggles as real buttons, one a GPU of the shown hosts (aria-pressed: its lines
 * drawn): the canvas legends take a click only. Buttons stay in place while only their state
 * changes, so the keyboard's focus stays on the one just pressed.
 */
function refreshGpuToggles() {
  const box = document.getElementById('gpu-toggles');
  if (!box) return;
  refreshPointPicker(); // its list of GPUs is the same
  const gpus = [...state.gpus.values()].filter((gpu) => hostShown(gpu.host)).sort(gpuOrder);
  const have = new Map([...box.children].map((button) => [button.dataset.gpuUuid, button]));
  const buttons = gpus.map((gpu) => {
    let button = have.get(gpu.uuid);
    if (!button) {
      button = element('button', 'btn btn-sm btn-outline-secondary gpu-toggle');
      button.type = 'button';
      button.dataset.gpuUuid = gpu.uuid;
      button.append(element('span', 'gpu-toggle-swatch'), element('span', 'gpu-toggle-label'));
      button.firstChild.style.setProperty('--gpu-color', gpu.colour);
      button.addEventListener('click', () => toggleGpu(gpu.uuid));
    }
    const label = chartLabel(gpu);
    if (button.lastChild.textContent !== label) button.lastChild.textContent = label;
    button.setAttribute('aria-pressed', String(!gpu.hidden));
    button.title = gpu.name; // on or off: aria-pressed; the legend group names what they draw
    return button;
  });
  buttons.forEach((button, position) => {
    if (box.children[position] !== button) box.insertBefore(button, box.children[position] || null);
  });
  for (const [uuid, button] of have) {
    if (!buttons.includes(button)) {
      if (button === document.activeElement) {
        box.tabIndex = -1; // the keyboard stays in the group, not on the page's body
        box.focus();
      }
      button.remove();
      have.delete(uuid);
    }
  }
}

let pickerStepS = null; // the bucket width the point picker was last fitted to

const TABLE_ROWS_MAX = 500; // the newest buckets a chart's table lists (a 30-day range has 2,000)
const TABLE_REFRESH_MS = 5000; // an open table follows the live ticks this often at most

/** Show or hide a chart's table of its buckets (its text alternative); button: its toggle. */
export function toggleChartTable(button) {
  const box = document.getElementById(button.getAttribute('aria-controls'));
  const open = box.hidden;
  box.hidden = !open;
  button.setAttribute('aria-expanded', String(open));
  button.textContent = open ? 'Hide table' : 'Table';
  if (open) {
    box.dataset.builtMs = '0';
    fillChartTable(box, button.dataset.chart);
  }
}

/**
 * Fill a chart's table: a row a bucket (newest first), a column a drawn GPU, each cell the mean
 * and, where higher, the maximum, in the chart's unit: what the tooltip says at each point.
 */
function fillChartTable(box, chartId) {
  const entry = state.charts.find((candidate) => candidate.def.id === chartId);
  if (!entry) return;
  box.dataset.builtMs = String(Date.now());
  const def = entry.def;
  const datasets = entry.chart.data.datasets.filter((dataset) => !dataset.hidden && datasetShown(dataset));
  const byTime = new Map();
  datasets.forEach((dataset, column) => {
    for (const point of dataset.data) {
      if (!point || !isNumber(point.x) || point.y === null) continue;
      if (!byTime.has(point.x)) byTime.set(point.x, new Array(datasets.length).fill(null));
      byTime.get(point.x)[column] = point;
    }
  });
  const allTimes = [...byTime.keys()].sort((a, b) => b - a);
  const times = allTimes.slice(0, TABLE_ROWS_MAX);
  const table = element('table', 'table table-sm small mb-0 num-table chart-table');
  const caption = element('caption', 'visually-hidden',
    `${document.getElementById(`${chartId}-title`)?.textContent ?? def.id}: one row a bucket, newest first`);
  const head = element('tr');
  const timeHead = element('th', '', 'Time');
  timeHead.scope = 'col';
  head.append(timeHead);
  for (const dataset of datasets) {
    const th = element('th', 'text-end', dataset.label);
    th.scope = 'col';
    th.title = dataset.pcwName || '';
    head.append(th);
  }
  const thead = element('thead');
  thead.append(head);
  const tbody = element('tbody');
  for (const time of times) {
    const row = element('tr');
    const th = element('th', 'chart-table-time', formatFull(time));
    th.scope = 'row';
    row.append(th);
    for (const point of byTime.get(time)) {
      let text = point ? withUnit(point.y, def.unit, def.digits) : '—';
      if (point && isNumber(point.max) && isNumber(point.y) && point.max - point.y > 1e-9) {
        text += ` (max ${withUnit(point.max, def.unit, def.digits)})`;
      }
      row.append(element('td', 'text-end', text));
    }
    tbody.append(row);
  }
  table.append(caption, thead, tbody);
  if (!times.length) {
    box.replaceChildren(element('p', 'small text-body-secondary mb-0', 'No readings in this range.'));
    return;
  }
  const parts = [table];
  if (allTimes.length > times.length) {
    parts.push(element('p', 'small text-body-secondary mb-0',
      `The newest ${times.length} of the ${allTimes.length} buckets are listed.`));
  }
  box.replaceChildren(...parts);
}

/** Refill the open tables after a redraw, each at most every TABLE_REFRESH_MS. */
function refreshChartTables() {
  for (const box of document.querySelectorAll('.chart-table-box:not([hidden])')) {
    if (Date.now() - Number(box.dataset.builtMs || 0) < TABLE_REFRESH_MS) continue;
    const chartId = box.id.replace(/-table-box$/, '');
    // The table is refilled in place: a keyboard user reading it keeps the box's focus.
    fillChartTable(box, chartId);
  }
}

function datasetShown(dataset) {
  const gpu = dataset && state.gpus.get(dataset.pcwUuid);
  return Boolean(gpu) && hostShown(gpu.host);
}

/** Chart.js onClick: show the processes of the GPU whose point is nearest, at its time. */
function onChartClick(event, elements, chart) {
  const nearest = elements && elements.length ? elements : chart.getElementsAtEventForMode(
    event, 'nearest', { axis: 'x', intersect: false }, false);
  // Of the lines at the clicked time, the one drawn nearest to the click, vertically.
  let hit = null;
  let best = Infinity;
  for (const item of nearest) {
    if (!datasetShown(chart.data.datasets[item.datasetIndex])) continue;
    const distance = isNumber(item.element.y) ? Math.abs(item.element.y - event.y) : 1e9;
    if (hit === null || distance < best) {
      hit = item;
      best = distance;
    }
  }
  if (!hit) return;
  const dataset = chart.data.datasets[hit.datasetIndex];
  const point = dataset.data[hit.index];
  if (!point || !isNumber(point.x)) return;
  showPointProcesses(dataset.pcwUuid, point.x / 1000, document.getElementById('point-show'));
}

export function buildChart(def) {
  const canvas = document.getElementById(def.id);
  const grid = cssVar('--bs-border-color-translucent', 'rgba(255,255,255,0.12)');
  const chart = new window.Chart(canvas, {
    type: 'line',
    data: { datasets: [] },
    plugins: [isolatedDots],
    options: {
      animation: false, // a page left open redraws every tick: keep it cheap
      maintainAspectRatio: false,
      parsing: false, // points are already { x: epoch ms, y }
      normalized: true, // x is sorted and unique in every dataset
      spanGaps: false,
      interaction: { mode: 'nearest', axis: 'x', intersect: false },
      onClick: onChartClick,
      elements: {
        line: { borderWidth: 1.5, tension: 0 },
        point: { radius: 0, hitRadius: 6, hoverRadius: 3 }, // lone points: isolatedDots
      },
      scales: {
        x: {
          type: 'time',
          grid: { color: grid },
          afterBuildTicks: roundTicks,
          ticks: { maxRotation: 0, autoSkip: true, callback: tickLabel },
        },
        y: {
          min: def.min,
          max: def.max,
          grid: { color: grid },
          ticks: { callback: (value) => `${formatNumber(value, 2)} ${def.unit}` },
        },
      },
      plugins: {
        legend: {
          position: 'bottom',
          labels: {
            boxWidth: 14, boxHeight: 3, padding: 8,
            filter: (item, data) => datasetShown(data.datasets[item.datasetIndex]),
          },
          onClick: (event, item, legend) => {
            const dataset = legend.chart.data.datasets[item.datasetIndex];
            if (dataset) toggleGpu(dataset.pcwUuid);
          },
        },
        tooltip: {
          callbacks: {
            title: tooltipTitle,
            label: (item) => tooltipLabel(def, item),
          },
        },
      },
    },
  });
  visibility.observe(canvas);
  return { def, chart };
}

/** Raise the memory and power charts' y-axis ceiling to the largest total and limit seen. */
export function growScales(reading) {
  const ceilings = {
    'chart-mem': isNumber(reading.mem_total_bytes) ? reading.mem_total_bytes / GIB : null,
    'chart-power': isNumber(reading.power_limit_w) ? reading.power_limit_w : null,
  };
  for (const entry of state.charts) {
    const ceiling = ceilings[entry.def.id];
    const y = entry.chart.options.scales.y;
    if (isNumber(ceiling) && !(y.suggestedMax >= ceiling)) {
      y.suggestedMax = ceiling;
      queueRender();
    }
  }
}

export function queueRender() {
  if (state.renderQueued || !state.charts.length) return;
  state.renderQueued = true;
  window.requestAnimationFrame(render);
}

/** Slide every chart's window to end now, drop points left of it, and redraw. */
function render() {
  state.renderQueued = false;
  const spanMs = RANGES_S[state.rangeKey] * 1000;
  const stepMs = state.history ? state.history.stepS * 1000 : 0;
  let maxMs = serverNowS() * 1000;
  for (const entry of state.charts) {
    for (const dataset of entry.chart.data.datasets) {
      const last = dataset.data[dataset.data.length - 1];
      if (last && last.x > maxMs) maxMs = last.x;
    }
  }
  const minMs = maxMs - spanMs;
  for (const entry of state.charts) {
    for (const dataset of entry.chart.data.datasets) dropOlderThan(dataset.data, minMs - stepMs);
    const x = entry.chart.options.scales.x;
    x.min = minMs;
    x.max = maxMs;
    const drawn = entry.chart.scales.x;
    const newSpan = !drawn || Math.abs(drawn.max - drawn.min - spanMs) > 1;
    if (onScreen.has(entry.chart.canvas) || newSpan) entry.chart.update('none');
  }
  refreshChartTables();
  const stepS = state.history ? state.history.stepS : null;
  if (stepS !== pickerStepS) { // the loaded range's buckets are the picker's steps
    pickerStepS = stepS;
    refreshPointPicker();
  }
}

/*
 * A chart off the screen is not redrawn at each tick (on a phone the charts are screens below
 * the cards, and these redraws were most of the page's main-thread time); a new range still
 * redraws it. One coming into view is redrawn at once, before a click on it can land.
 */
const onScreen = new WeakSet();
const visibility = new IntersectionObserver((entries) => {
  let shown = false;
  for (const entry of entries) {
    if (entry.isIntersecting) {
      shown = shown || !onScreen.has(entry.target);
      onScreen.add(entry.target);
    } else {
      onScreen.delete(entry.target);
    }
  }
  if (shown) render();
}, { rootMargin: '100px' });
