/* The fleet heatmap: GPU utilization, one line of pixels per GPU (hosts apart by a gap line) and
 * one column per history bucket, drawn as an image the size of the data on one canvas that CSS
 * scales (image-rendering: pixelated). Live readings go into the newest bucket as running means
 * and repaint that column alone; a load or a slide of the window fills the whole ImageData
 * (GPUs x buckets pixels), a millisecond or two for 256 GPUs. */

import { element, formatClock, formatFull, formatNumber, isNumber } from './format.js';

const MAX_HEIGHT_PX = 640;
const GAP_RGBA = [73, 80, 87, 255]; // no reading in the bucket (Bootstrap gray-700)
const SEPARATOR_RGBA = [33, 37, 41, 255]; // between hosts: the page background
// Dark blue through teal and green to yellow: ordered in lightness, told apart without hue.
const STOPS = [[0, [40, 26, 95]], [25, [44, 84, 140]], [50, [32, 146, 140]], [75, [94, 201, 98]], [100, [250, 231, 35]]];
const LUT = buildLut();

function buildLut() {
  const lut = new Uint8ClampedArray(101 * 3);
  for (let pct = 0; pct <= 100; pct += 1) {
    const upper = STOPS.findIndex(([at]) => at >= pct);
    const [hiAt, hi] = STOPS[Math.max(upper, 0)];
    const [loAt, lo] = STOPS[Math.max(upper - 1, 0)];
    const mix = hiAt === loAt ? 0 : (pct - loAt) / (hiAt - loAt);
    for (let channel = 0; channel < 3; channel += 1) {
      lut[pct * 3 + channel] = lo[channel] + (hi[channel] - lo[channel]) * mix;
    }
  }
  return lut;
}

export function colourOf(pct) {
  const at = Math.max(0, Math.min(100, Math.round(pct))) * 3;
  return `rgb(${LUT[at]}, ${LUT[at + 1]}, ${LUT[at + 2]})`;
}

export class Heatmap {
  constructor(box, onPick) {
    this.onPick = onPick; // called with a GPU's UUID when its line is clicked
    this.canvas = element('canvas', 'fleet-heatmap');
    this.canvas.id = 'fleet-heatmap';
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', 'GPU utilization over time, one line per GPU, hosts apart; the table below gives each GPU\'s values');
    this.canvas.width = 1;
    this.canvas.height = 1;
    const axis = element('div', 'fleet-heatmap-axis small text-body-secondary');
    this.fromLabel = element('span', '', '');
    this.toLabel = element('span', '', '');
    axis.append(this.fromLabel, this.toLabel);
    this.readout = element('p', 'fleet-heatmap-readout small mb-0', 'Point at the heatmap to read a GPU\'s utilization at a time.');
    this.readout.setAttribute('aria-live', 'off');
    box.append(this.canvas, axis, this.readout);
    this.lines = []; // per image row: a GPU's UUID, or null for a gap between hosts
    this.lineOf = new Map(); // uuid -> image row
    this.labels = new Map(); // uuid -> "host GPU i"
    this.history = null; // { fromS, stepS, buckets }
    this.means = new Map(); // uuid -> Float32Array
    this.counts = new Map(); // uuid -> Uint32Array
    this.image = null; // the ImageData drawn last: a live reading repaints its column only
    this.dirtyColumns = new Set();
    this.canvas.addEventListener('mousemove', (event) => this.showAt(event));
    this.canvas.addEventListener('click', (event) => {
      const spot = this.spotAt(event);
      if (spot) this.onPick(spot.uuid);
    });
  }

  /** Set the GPUs drawn, in order (host by host); rows: [{ uuid, host, index }]. */
  setGpus(rows) {
    const lines = [];
    let host = null;
    for (const row of rows) {
      if (host !== null && row.host !== host) lines.push(null);
      host = row.host;
      lines.push(row.uuid);
      this.labels.set(row.uuid, `${row.host} GPU ${row.index}`);
    }
    if (lines.join('\n') === this.lines.join('\n')) return;
    this.lines = lines;
    this.image = null;
    this.lineOf = new Map(lines.map((uuid, at) => [uuid, at]).filter(([uuid]) => uuid !== null));
    const linePx = Math.max(2, Math.min(14, Math.floor(MAX_HEIGHT_PX / Math.max(1, lines.length))));
    this.canvas.style.height = `${linePx * lines.length}px`;
  }

  /** Replace the buckets with a history read by readUtilHistory(). */
  load(history) {
    this.history = { fromS: history.fromS, stepS: history.stepS, buckets: history.buckets };
    this.image = null;
    this.means = new Map();
    this.counts = new Map();
    for (const series of history.series) {
      this.means.set(series.uuid, series.means);
      this.counts.set(series.uuid, series.counts);
    }
  }

  /** Take a live reading into its bucket, sliding the window when it starts a new one. */
  add(uuid, tsS, utilPct) {
    const history = this.history;
    if (!history || !isNumber(tsS) || !isNumber(utilPct)) return false;
    let at = Math.floor((tsS - history.fromS) / history.stepS);
    if (at < 0) return false;
    if (at >= history.buckets) {
      const shift = at - history.buckets + 1;
      for (const [key, means] of this.means) {
        means.copyWithin(0, shift);
        means.fill(NaN, Math.max(0, history.buckets - shift));
        const counts = this.counts.get(key);
        counts.copyWithin(0, shift);
        counts.fill(0, Math.max(0, history.buckets - shift));
      }
      history.fromS += shift * history.stepS;
      at = history.buckets - 1;
      this.image = null;
    }
    if (!this.means.has(uuid)) {
      this.means.set(uuid, new Float32Array(history.buckets).fill(NaN));
      this.counts.set(uuid, new Uint32Array(history.buckets));
      this.image = null;
    }
    this.dirtyColumns.add(at);
    const means = this.means.get(uuid);
    const counts = this.counts.get(uuid);
    const count = counts[at];
    means[at] = count ? (means[at] * count + utilPct) / (count + 1) : utilPct;
    counts[at] = count + 1;
    return true;
  }

  /** Draw: every pixel after a load or a slide, else only the columns live readings changed. */
  draw() {
    const history = this.history;
    const width = history ? history.buckets : 1;
    const height = Math.max(1, this.lines.length);
    const context = this.canvas.getContext('2d');
    if (!this.image || this.image.width !== width || this.image.height !== height) {
      if (this.canvas.width !== width) this.canvas.width = width;
      if (this.canvas.height !== height) this.canvas.height = height;
      this.image = context.createImageData(width, height);
      this.paintColumns(0, width);
      context.putImageData(this.image, 0, 0);
    } else {
      for (const x of this.dirtyColumns) {
        if (x < 0 || x >= width) continue;
        this.paintColumns(x, x + 1);
        context.putImageData(this.image, 0, 0, x, 0, 1, height);
      }
    }
    this.dirtyColumns.clear();
    if (history) {
      this.fromLabel.textContent = formatClock(history.fromS * 1000);
      this.toLabel.textContent = formatClock((history.fromS + history.buckets * history.stepS) * 1000);
      this.canvas.dataset.buckets = String(history.buckets);
      this.canvas.dataset.stepS = String(history.stepS);
    }
    this.canvas.dataset.gpus = String(this.lineOf.size);
    this.canvas.dataset.drawn = String(Number(this.canvas.dataset.drawn || 0) + 1);
  }

  /** Fill the image's pixels of columns from..to-1 from the bucket means. */
  paintColumns(from, to) {
    const width = this.image.width;
    const pixels = this.image.data;
    const live = Boolean(this.history);
    for (let line = 0; line < this.lines.length; line += 1) {
      const uuid = this.lines[line];
      const means = uuid === null || !live ? null : this.means.get(uuid);
      for (let x = from, at = (line * width + from) * 4; x < to; x += 1, at += 4) {
        const value = means ? means[x] : NaN;
        if (uuid === null) {
          pixels.set(SEPARATOR_RGBA, at);
        } else if (Number.isNaN(value)) {
          pixels.set(GAP_RGBA, at);
        } else {
          const lut = Math.max(0, Math.min(100, Math.round(value))) * 3;
          pixels[at] = LUT[lut];
          pixels[at + 1] = LUT[lut + 1];
          pixels[at + 2] = LUT[lut + 2];
          pixels[at + 3] = 255;
        }
      }
    }
  }

  spotAt(event) {
    const box = this.canvas.getBoundingClientRect();
    if (!this.history || box.width <= 0 || box.height <= 0) return null;
    const line = Math.floor(((event.clientY - box.top) / box.height) * this.lines.length);
    const x = Math.floor(((event.clientX - box.left) / box.width) * this.history.buckets);
    const uuid = this.lines[line];
    if (!uuid || x < 0 || x >= this.history.buckets) return null;
    const means = this.means.get(uuid);
    return { uuid, x, value: means ? means[x] : NaN };
  }

  showAt(event) {
    const spot = this.spotAt(event);
    this.canvas.classList.toggle('fleet-heatmap-pick', Boolean(spot));
    if (!spot) return;
    const startMs = (this.history.fromS + spot.x * this.history.stepS) * 1000;
    const value = Number.isNaN(spot.value) ? 'no reading' : `${formatNumber(spot.value, 0)} % utilization`;
    this.readout.textContent = `${this.labels.get(spot.uuid) ?? spot.uuid} · ${formatClock(startMs)} · ${value} (click to open its page)`;
    this.readout.title = formatFull(startMs);
  }
}

/** Return a legend: the colour ramp with its labels, and the gap colour. */
export function heatmapLegend() {
  const legend = element('div', 'fleet-legend small');
  legend.setAttribute('aria-hidden', 'true'); // the canvas's label and the table say it in words
  for (const pct of [0, 25, 50, 75, 100]) {
    const item = element('span', 'fleet-legend-item');
    const swatch = element('span', 'fleet-swatch');
    swatch.style.setProperty('--swatch', colourOf(pct));
    item.append(swatch, element('span', '', `${pct} %`));
    legend.append(item);
  }
  const gap = element('span', 'fleet-legend-item');
  const swatch = element('span', 'fleet-swatch');
  swatch.style.setProperty('--swatch', `rgb(${GAP_RGBA.slice(0, 3).join(', ')})`);
  gap.append(swatch, element('span', '', 'no reading'));
  legend.append(gap);
  return legend;
}
