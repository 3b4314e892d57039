/* The four history charts (Chart.js): datasets per GPU, round time ticks, tooltips, drawing. */

import { GIB, formatDuration, formatFull, formatNumber, isNumber, withUnit } from './format.js';
import { gpuOrder } from './hosts.js';
import { showPointProcesses } from './point-panel.js';
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
  queueRender();
  return dataset;
}

function isolated(context) {
  const data = context.dataset.data;
  const i = context.dataIndex;
  const before = i > 0 ? data[i - 1].y : null;
  const after = i < data.length - 1 ? data[i + 1].y : null;
  return data[i] && data[i].y !== null && before === null && after === null;
}

export function tickLabel(value) {
  const date = new Date(value);
  if (date.getHours() === 0 && date.getMinutes() === 0) {
    return date.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  }
  return date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
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
  queueRender();
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
  showPointProcesses(dataset.pcwUuid, point.x / 1000);
}

export function buildChart(def) {
  const canvas = document.getElementById(def.id);
  const grid = cssVar('--bs-border-color-translucent', 'rgba(255,255,255,0.12)');
  const chart = new window.Chart(canvas, {
    type: 'line',
    data: { datasets: [] },
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
        point: { radius: (context) => (isolated(context) ? 2 : 0), hitRadius: 6, hoverRadius: 3 },
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
    entry.chart.update('none');
  }
}
