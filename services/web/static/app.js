/*
 * pyCudaWatch dashboard: GPU cards, four history charts and the live feed.
 *
 * Data flow:
 *   GET api/v1/gpus            -> cards (identity, latest reading, processes, MIG, idle flag,
 *                                 stale flag), asked again every POLL_MS
 *   GET api/v1/hosts           -> the host selector and each host's stale badge
 *   GET api/v1/history         -> chart points, one per server bucket (mean, tooltip shows max)
 *   GET api/v1/processes       -> since when each process runs; the processes at a clicked point
 *   GET api/v1/usage, energy   -> the "who used the GPUs" and energy tables of the chosen range
 *   WS  ws (snapshot, ticks)   -> each tick's GPUs in the shape api/v1/gpus lists them (one
 *                                 ensureGpu / updateCard reads both): cards and process
 *                                 tables, and points merged into the same
 *                                 buckets, so a page left open for days keeps about as many
 *                                 points as one history answer; each host's stale flag, and
 *                                 {type: hosts} the moment a host goes stale
 * Staleness is the server's word, never judged here: the server has one rule, each host's own
 * interval, and the clock the hosts' ticks arrived by (see takeHostState).
 * An endpoint the server does not have (404) leaves its part of the page saying so; the rest works.
 * Polls never overlap: one still waiting for a slow server makes the next one skip. A 401 (the
 * sign-in was revoked) shows a "signed out" notice until a request is accepted again.
 * Times are UTC epoch seconds on the wire and are shown in the browser's time zone.
 * Text from the machine (GPU, host, process and user names, command lines, errors) only ever goes
 * through textContent, title attributes or Chart.js labels drawn on a canvas, never through HTML
 * parsing. No inline style either (the Content-Security-Policy forbids it): classes and CSSOM only.
 */
'use strict';

(function dashboard() {
  const RANGES_S = { '1h': 3600, '6h': 6 * 3600, '24h': 24 * 3600, '7d': 7 * 86400, '30d': 30 * 86400 };
  const DEFAULT_RANGE = '1h';
  // Time-axis ticks at round local times: every `every` units (Chart.js skips some if crowded).
  const AXIS_STEPS = {
    '1h': { unit: 'minute', every: 10 },
    '6h': { unit: 'hour', every: 1 },
    '24h': { unit: 'hour', every: 3 },
    '7d': { unit: 'day', every: 1 },
    '30d': { unit: 'day', every: 5 },
  };
  const MAX_API_POINTS = 2000;
  const RING_TICKS = 512; // recent ticks kept to rebuild the newest buckets after a history load
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  const OFFLINE_AFTER_MS = 60000; // reconnecting for longer than this shows "offline"
  const CLOCK_SKEW_MIN_S = 2; // server clock differences below this are latency, not skew
  const POLL_MS = 15000; // idle flags and stale flags are asked of the server this often
  const USAGE_REFRESH_MS = 60000;
  const FETCH_TIMEOUT_MS = 120000; // a request the server never answers does not stop the polls
  const USAGE_BY = { user: 'User', process: 'Process', container: 'Container' };
  const ENERGY_SOURCES = {
    counter: 'energy counter',
    power: 'power readings, integrated',
    mixed: 'energy counter, and power readings where it had none',
    none: 'no readings',
  };
  const NOT_VISIBLE_HELP = 'This PID is outside the sampler\'s view (a sampler in a container'
    + ' without pid: host): its name, user and command line cannot be read.';
  const GIB = 1024 ** 3;
  const MIB = 1024 ** 2;
  const PALETTE = [
    '#5aa9e6', '#f4a259', '#7bd389', '#f25f5c', '#c49bff',
    '#ffe066', '#4ecdc4', '#ff8fd0', '#b8b8b8', '#c8a27a',
  ];
  const CHARTS = [
    { id: 'chart-util', metric: 'util_gpu_pct', unit: '%', scale: 1, digits: 1, min: 0, max: 100 },
    { id: 'chart-temp', metric: 'temp_c', unit: '°C', scale: 1, digits: 1 },
    { id: 'chart-mem', metric: 'mem_used_bytes', unit: 'GiB', scale: 1 / GIB, digits: 2, min: 0 },
    { id: 'chart-power', metric: 'power_w', unit: 'W', scale: 1, digits: 1, min: 0 },
  ];
  const CHARTED_METRICS = CHARTS.map((chart) => chart.metric);

  const config = readConfig();
  const state = {
    rangeKey: rangeFromUrl(),
    hostFilter: hostFromUrl(), // null: every host
    usageBy: 'user',
    serverHosts: new Map(), // host -> { stale, staleSinceS, lastSeenS, intervalS } from the server
    hostsApi: true, // false once api/v1/hosts answered 404
    idleUtilPct: null,
    idleAfterS: null,
    usageGen: 0,
    tablesMissed: false, // a usage and energy refresh was skipped while the page was hidden
    energyGen: 0,
    pointGen: 0,
    historyByHost: true, // false once the server refused history's host parameter
    intervalS: positive(config.interval_s, 60),
    gpus: new Map(), // uuid -> GPU record (identity, card elements, colour)
    hosts: new Map(), // host name -> { section, row, alert }
    charts: [], // { def, chart }
    ring: [], // recent ticks, oldest first
    history: null, // { stepS } of the loaded range
    historyPending: false,
    gpusLoaded: false,
    loadGen: 0,
    loadAbort: null,
    clockOffsetS: 0,
    lastTickTs: null, // newest reading timestamp shown on any card
    hostTickTs: new Map(), // host -> newest tick timestamp taken into the charts
    lastLiveTs: null, // newest tick timestamp merged into the charts
    ws: null,
    everConnected: false,
    attempts: 0,
    downSinceMs: null,
    reconnectTimer: null,
    renderQueued: false,
  };

  // ---------------------------------------------------------------- small helpers

  function readConfig() {
    const node = document.getElementById('pcw-config');
    try {
      return node ? JSON.parse(node.textContent) : {};
    } catch (error) {
      return {};
    }
  }

  function positive(value, fallback) {
    return typeof value === 'number' && value > 0 && Number.isFinite(value) ? value : fallback;
  }

  function isNumber(value) {
    return typeof value === 'number' && Number.isFinite(value);
  }

  function rangeFromUrl() {
    const key = new URLSearchParams(window.location.search).get('range');
    return Object.prototype.hasOwnProperty.call(RANGES_S, key) ? key : DEFAULT_RANGE;
  }

  function hostFromUrl() {
    const host = new URLSearchParams(window.location.search).get('host');
    return host ? host : null;
  }

  function hostShown(host) {
    return state.hostFilter === null || host === state.hostFilter;
  }

  function serverNowS() {
    return Date.now() / 1000 + state.clockOffsetS;
  }

  /** Set a node's text only when it differs: an alert re-set every tick is re-announced. */
  function putText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const numberFormats = new Map();
  function formatNumber(value, digits, fixed) {
    const key = `${digits}/${Boolean(fixed)}`;
    if (!numberFormats.has(key)) {
      const options = { maximumFractionDigits: digits, minimumFractionDigits: fixed ? digits : 0 };
      numberFormats.set(key, new Intl.NumberFormat(undefined, options));
    }
    return numberFormats.get(key).format(value);
  }

  function withUnit(value, unit, digits) {
    return isNumber(value) ? `${formatNumber(value, digits)} ${unit}` : 'n/a';
  }

  function formatClock(ms) {
    return new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function formatFull(ms) {
    return new Date(ms).toLocaleString(undefined, {
      year: 'numeric', month: 'short', day: 'numeric',
      hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
  }

  function formatDuration(seconds) {
    if (seconds < 90) return `${formatNumber(seconds, 1)} s`;
    if (seconds < 5400) return `${formatNumber(seconds / 60, 1)} min`;
    if (seconds < 129600) return `${formatNumber(seconds / 3600, 1)} h`;
    return `${formatNumber(seconds / 86400, 1)} d`;
  }

  /** Return a short local time for a moment today, else the date and time. */
  function formatWhen(ms) {
    const date = new Date(ms);
    if (date.toDateString() === new Date().toDateString()) return formatClock(ms);
    return date.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  }

  function colourFor(position) {
    if (position < PALETTE.length) return PALETTE[position];
    const hue = Math.round((position * 137.508) % 360); // golden angle: far from its neighbours
    return `hsl(${hue}, 65%, 65%)`;
  }

  // ---------------------------------------------------------------- GPU cards

  function ensureHost(host) {
    let entry = state.hosts.get(host);
    if (entry) return entry;
    const section = element('section', 'host-group mb-3');
    section.dataset.host = host;
    section.dataset.stale = 'false';
    section.hidden = !hostShown(host);
    const title = element('h2', 'host-title mb-2'); // no display class: those beat `hidden`
    const stale = element('span', 'badge text-bg-warning ms-2 host-stale', 'stale');
    stale.hidden = true;
    const seen = element('span', 'small ms-2 host-seen');
    seen.hidden = true;
    title.append(element('span', 'host-name', host), stale, seen);
    const alert = element('div', 'alert alert-danger py-1 px-2 small host-error');
    alert.hidden = true;
    alert.setAttribute('role', 'alert');
    const row = element('div', 'row row-cols-1 row-cols-lg-2 g-3 gpu-row');
    section.append(title, alert, row);
    const container = document.getElementById('gpu-cards');
    const after = [...state.hosts.keys()].sort().find((other) => other > host);
    container.insertBefore(section, after ? state.hosts.get(after).section : null);
    entry = { section, title, stale, seen, alert, row, staleNow: false };
    state.hosts.set(host, entry);
    refreshHostTitles();
    fillHostSelect();
    document.getElementById('no-gpus').hidden = true;
    if (state.hosts.size > 1) relabelDatasets();
    return entry;
  }

  /** Return whether this page or the server knows of more than one host. */
  function severalHosts() {
    return state.hosts.size > 1 || state.serverHosts.size > 1;
  }

  /** Show the host headings when there are several hosts, and always on a stale host. */
  function refreshHostTitles() {
    const several = severalHosts();
    for (const entry of state.hosts.values()) entry.title.hidden = !several && !entry.staleNow;
  }

  /** Return the newest reading time of a host that this page has seen, or null. */
  function hostSeenHereS(host) {
    let newest = state.hostTickTs.get(host) ?? null;
    for (const gpu of state.gpus.values()) {
      if (gpu.host === host && gpu.lastTs !== null && (newest === null || gpu.lastTs > newest)) newest = gpu.lastTs;
    }
    return newest;
  }

  /**
   * Take what the server says of a host: { host, stale, stale_since_ts, last_seen_ts,
   * interval_s }. What the websocket says is the newest word and replaces the last. An API
   * answer may have been computed before a message that came first: it is taken only when it
   * speaks of a newer tick, or calls stale the same tick (a host only goes stale while silent).
   */
  function takeHostState(item, fromSocket) {
    if (!item || typeof item.host !== 'string') return false;
    const said = {
      stale: item.stale === true,
      staleSinceS: isNumber(item.stale_since_ts) ? item.stale_since_ts : null,
      lastSeenS: isNumber(item.last_seen_ts) ? item.last_seen_ts : null,
      intervalS: positive(item.interval_s, null),
    };
    const known = state.serverHosts.get(item.host);
    const newer = !known || fromSocket || (said.lastSeenS ?? -Infinity) > (known.lastSeenS ?? -Infinity)
      || (said.lastSeenS === known.lastSeenS && said.stale && !known.stale);
    if (newer) {
      if (known && said.staleSinceS === null && said.stale && known.stale && said.lastSeenS === known.lastSeenS) {
        said.staleSinceS = known.staleSinceS; // the GPU list does not say since when
      }
      state.serverHosts.set(item.host, said);
    } else if (known.staleSinceS === null && said.stale === known.stale && said.lastSeenS === known.lastSeenS) {
      known.staleSinceS = said.staleSinceS;
    }
  }

  /** Return whether the server says the host is stale. */
  function hostStale(host) {
    const server = state.serverHosts.get(host);
    return Boolean(server && server.stale);
  }

  /** Show a host stale when the server says so; its GPUs stay listed, the heading says since when. */
  function refreshHostState(host) {
    const entry = state.hosts.get(host);
    if (!entry) return;
    const server = state.serverHosts.get(host);
    const hereS = hostSeenHereS(host);
    const serverS = server ? server.lastSeenS : null;
    const lastSeenS = hereS === null || (serverS !== null && serverS > hereS) ? serverS : hereS;
    const stale = hostStale(host);
    entry.staleNow = stale;
    entry.section.dataset.stale = String(stale);
    entry.stale.hidden = !stale;
    entry.seen.hidden = !stale;
    if (stale) {
      entry.seen.textContent = lastSeenS === null ? 'never seen' : `last seen ${formatWhen(lastSeenS * 1000)}`;
      entry.seen.title = lastSeenS === null ? '' : formatFull(lastSeenS * 1000);
      const since = server.staleSinceS === null ? 'lately' : `since ${formatFull(server.staleSinceS * 1000)}`;
      const every = server.intervalS === null ? '' : ` (it reads every ${formatDuration(server.intervalS)})`;
      entry.stale.title = `No reading from this host ${since}${every}; its GPUs show their last readings`;
    }
    refreshHostTitles();
  }

  function fillHostSelect() {
    const select = document.getElementById('host-select');
    const names = new Set([...state.hosts.keys(), ...state.serverHosts.keys()]);
    if (state.hostFilter !== null) names.add(state.hostFilter);
    const wanted = [...names].sort();
    const have = [...select.options].slice(1).map((option) => option.value);
    if (wanted.join('\n') !== have.join('\n')) {
      const options = wanted.map((name) => {
        const option = element('option', '', name);
        option.value = name;
        return option;
      });
      select.replaceChildren(select.options[0], ...options);
    }
    select.value = state.hostFilter ?? '';
  }

  function setHostError(host, message) {
    const entry = ensureHost(host);
    entry.alert.hidden = !message;
    putText(entry.alert, message ? `Reading this host failed: ${message}` : '');
  }

  function metricBlock(label, valueClass, columnClass) {
    const block = element('div', columnClass);
    const value = element('div', `metric-value ${valueClass}`, 'n/a');
    block.append(element('div', 'metric-label', label), value);
    return { block, value };
  }

  function barBlock(label, valueClass, barClass) {
    const block = element('div', 'mt-2');
    const head = element('div', 'd-flex justify-content-between');
    const value = element('span', valueClass, 'n/a');
    head.append(element('span', 'metric-label', label), value);
    const progress = element('div', 'progress');
    progress.setAttribute('role', 'progressbar');
    progress.setAttribute('aria-label', label);
    progress.setAttribute('aria-valuemin', '0');
    progress.setAttribute('aria-valuemax', '100');
    const bar = element('div', `progress-bar ${barClass}`);
    progress.append(bar);
    block.append(head, progress);
    return { block, value, progress, bar };
  }

  function buildCard(gpu) {
    const column = element('div', 'col');
    const card = element('div', 'card gpu-card h-100');
    card.dataset.gpuUuid = gpu.uuid;
    card.dataset.state = 'ok';
    card.style.setProperty('--gpu-color', gpu.colour);

    const header = element('div', 'card-header d-flex align-items-center gap-2');
    const index = element('span', 'badge text-bg-secondary gpu-index');
    const name = element('span', 'gpu-name text-truncate fw-semibold');
    const badges = element('span', 'ms-auto d-flex gap-1');
    const idleBadge = element('span', 'badge text-bg-warning idle-badge', 'idle but allocated');
    idleBadge.hidden = true;
    const pstate = element('span', 'badge text-bg-dark border gpu-pstate', 'P n/a');
    pstate.title = 'Performance state (P0 = fastest, P8 and up = idle)';
    badges.append(idleBadge, pstate);
    header.append(element('span', 'gpu-swatch'), index, name, badges);

    const body = element('div', 'card-body py-2');
    const error = element('div', 'alert alert-danger py-1 px-2 mb-2 small gpu-error');
    error.hidden = true;
    error.setAttribute('role', 'alert');
    const top = element('div', 'd-flex justify-content-between align-items-end');
    const utilBox = element('div');
    const util = element('div', 'metric-util', 'n/a');
    utilBox.append(util, element('div', 'metric-label', 'GPU utilization'));
    const tempBox = element('div', 'text-end');
    const temp = element('div', 'fs-5 fw-semibold metric-temp', 'n/a');
    tempBox.append(temp, element('div', 'metric-label', 'Temperature'));
    top.append(utilBox, tempBox);
    const memory = barBlock('Memory', 'metric-mem', 'bg-info');
    const power = barBlock('Power', 'metric-power', 'bg-warning');
    const grid = element('div', 'row g-1 mt-2 small metric-grid');
    const fan = metricBlock('Fan', 'metric-fan', 'col-3');
    const memUtil = metricBlock('Mem bus', 'metric-util-mem', 'col-3');
    const clocks = metricBlock('Clocks SM / mem', 'metric-clocks', 'col-6 text-end');
    memUtil.block.title = 'Memory bus utilization';
    grid.append(fan.block, memUtil.block, clocks.block);
    const idle = element('div', 'small mt-2 gpu-idle');
    idle.hidden = true;
    const mig = buildMigBlock();
    const processes = buildProcessBlock();
    body.append(error, idle, top, memory.block, power.block, grid, mig.block, processes.block);

    const footer = element('div', 'card-footer small text-body-secondary d-flex gap-2');
    const updated = element('span', 'gpu-updated', 'no reading yet');
    const pci = element('span', 'gpu-pci ms-auto text-truncate');
    footer.append(updated, pci);

    card.append(header, body, footer);
    column.append(card);
    return {
      column, card, index, name, pstate, error, util, temp, memory, power, updated, pci,
      fan: fan.value, memUtil: memUtil.value, clocks: clocks.value,
      idleBadge, idle, mig, processes,
    };
  }

  function tableHead(columns) {
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

  function buildMigBlock() {
    const block = element('div', 'mt-2 gpu-mig');
    block.hidden = true;
    const table = element('table', 'table table-sm table-borderless mb-0 mig-table');
    table.append(tableHead([['MIG instance', ''], ['Memory', 'text-end'], ['Util', 'text-end']]));
    const tbody = element('tbody');
    table.append(tbody);
    block.append(table);
    return { block, tbody, signature: '' };
  }

  const PROCESS_COLUMNS = [
    ['PID', 'text-end'], ['User', ''], ['Name', ''], ['Command line', ''], ['Container', ''],
    ['Memory', 'text-end'], ['Since', ''],
  ];

  function buildProcessBlock() {
    const block = element('div', 'mt-2 gpu-processes');
    const head = element('div', 'd-flex align-items-baseline gap-2');
    const count = element('span', 'small text-body-secondary process-count');
    head.append(element('span', 'section-label', 'Processes'), count);
    const note = element('div', 'small text-body-secondary process-note', 'no process list yet');
    const wrap = element('div', 'table-responsive');
    const table = element('table', 'table table-sm table-borderless mb-0 process-table');
    table.hidden = true;
    table.append(tableHead(PROCESS_COLUMNS));
    const tbody = element('tbody');
    table.append(tbody);
    wrap.append(table);
    block.append(head, note, wrap);
    return { block, count, note, table, tbody, signature: null };
  }

  function cell(text, className, title) {
    const td = element('td', className, text);
    if (title) td.title = title;
    return td;
  }

  function knownText(value) {
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
  function processRow(proc, since) {
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

  function validProcess(proc) {
    return proc && typeof proc === 'object' && Number.isInteger(proc.pid);
  }

  function sortProcesses(processes) {
    const memory = (proc) => (isNumber(proc.used_mem_bytes) ? proc.used_mem_bytes : -1);
    return [...processes].sort((a, b) => memory(b) - memory(a) || a.pid - b.pid);
  }

  /**
   * Take a GPU's process list (undefined: not carried, null: unknown this tick) at tsS, keeping
   * since when each PID runs: the server's since_ts where known, else the tick a new PID first
   * came in, else (PIDs already running when the page first saw them) an upper bound.
   */
  function updateProcesses(gpu, list, tsS) {
    if (list === undefined) return;
    const els = gpu.els.processes;
    if (!Array.isArray(list)) {
      gpu.processes = null;
      els.signature = null;
      els.table.hidden = true;
      els.tbody.replaceChildren();
      els.count.textContent = '';
      els.note.hidden = false;
      els.note.textContent = 'process list not available';
      return;
    }
    const first = !Array.isArray(gpu.processes);
    const processes = sortProcesses(list.filter(validProcess));
    const next = new Map();
    for (const proc of processes) {
      let since = gpu.since.get(proc.pid);
      if (isNumber(proc.since_ts)) since = { sinceS: proc.since_ts, exact: true };
      else if (!since) since = { sinceS: tsS, exact: !first };
      next.set(proc.pid, since);
    }
    gpu.since = next;
    gpu.processes = processes;
    renderProcesses(gpu);
    if (!gpu.sinceAsked && [...next.values()].some((since) => !since.exact)) fetchSince(gpu);
  }

  /**
   * Return what a process row shows, as text: a list from the API carries fields a tick's does not
   * (since_ts), and memory moves by bytes that the row rounds away, so neither redraws the rows.
   */
  function processShown(proc, since) {
    return [
      proc.pid, proc.visible === true, proc.kind, proc.user, proc.name, proc.cmdline,
      proc.container_id, proc.container_name,
      isNumber(proc.used_mem_bytes) ? memoryText(proc.used_mem_bytes, null) : null,
      since ? since.sinceS : null, since ? since.exact : null,
    ];
  }

  function renderProcesses(gpu) {
    const els = gpu.els.processes;
    const processes = gpu.processes;
    if (!Array.isArray(processes)) return;
    // The local day is part of it: "Since" shows a bare time for today, and a date after.
    const shown = processes.map((proc) => processShown(proc, gpu.since.get(proc.pid)));
    const signature = JSON.stringify([new Date().toDateString(), shown]);
    if (signature === els.signature) return;
    els.signature = signature;
    els.count.textContent = processes.length ? `(${processes.length})` : '';
    els.note.hidden = processes.length > 0;
    els.note.textContent = processes.length ? '' : 'no processes';
    els.table.hidden = processes.length === 0;
    els.tbody.replaceChildren(...processes.map((proc) => processRow(proc, gpu.since.get(proc.pid))));
  }

  /** Ask the server since when the processes that were already running when the page opened run. */
  async function fetchSince(gpu) {
    gpu.sinceAsked = true;
    let answer;
    try {
      answer = await fetchJson(`api/v1/processes?${new URLSearchParams({ gpu: gpu.uuid })}`, undefined);
    } catch (error) {
      return; // an older server, or a GPU it does not know yet: the upper bounds stay
    }
    if (!answer || !Array.isArray(answer.processes)) return;
    for (const proc of answer.processes) {
      if (validProcess(proc) && isNumber(proc.since_ts) && gpu.since.has(proc.pid)) {
        gpu.since.set(proc.pid, { sinceS: proc.since_ts, exact: true });
      }
    }
    renderProcesses(gpu);
  }

  function migRow(device) {
    const row = element('tr', 'mig-device');
    row.dataset.migUuid = String(device.uuid ?? '');
    const label = `${device.index ?? '?'} · ${device.name ?? 'MIG device'}`;
    const memText = memoryText(device.mem_used_bytes, device.mem_total_bytes);
    const utilText = withUnit(device.util_gpu_pct, '%', 0);
    const util = cell(utilText, `text-end mig-util${utilText === 'n/a' ? ' na' : ''}`,
      utilText === 'n/a' ? 'utilization is not reported for this MIG instance' : '');
    row.append(
      cell(label, 'mig-name', String(device.uuid ?? '')),
      cell(memText, `text-end mig-mem${memText === 'n/a' ? ' na' : ''}`),
      util,
    );
    return row;
  }

  /** List a MIG-enabled GPU's instances under it (undefined or null: leave the list as it is). */
  function updateMig(gpu, list) {
    if (!Array.isArray(list)) return;
    const mig = gpu.els.mig;
    const devices = list.filter((device) => device && typeof device === 'object')
      .sort((a, b) => (Number(a.index) || 0) - (Number(b.index) || 0));
    const signature = JSON.stringify(devices.map((device) => [
      device.uuid, device.index, device.name, memoryText(device.mem_used_bytes, device.mem_total_bytes),
      withUnit(device.util_gpu_pct, '%', 0),
    ]));
    if (signature === mig.signature) return;
    mig.signature = signature;
    mig.block.hidden = devices.length === 0;
    gpu.els.card.dataset.mig = String(devices.length > 0);
    mig.tbody.replaceChildren(...devices.map(migRow));
  }

  function holdersText(processes) {
    if (!Array.isArray(processes)) return '';
    return processes.filter(validProcess).map((proc) => {
      if (proc.visible !== true) return `PID ${proc.pid} (not visible)`;
      return `${knownText(proc.user) ?? 'unknown user'} (${knownText(proc.name) ?? 'PID'} ${proc.pid})`;
    }).join(', ');
  }

  /** Flag a GPU that holds memory while idle, with since when and who holds it (null: clear). */
  function updateIdle(gpu, idle) {
    gpu.idle = idle && typeof idle === 'object' && isNumber(idle.since_ts) ? idle : null;
    const els = gpu.els;
    els.idleBadge.hidden = !gpu.idle;
    els.idle.hidden = !gpu.idle;
    els.card.dataset.idle = String(Boolean(gpu.idle));
    if (!gpu.idle) {
      els.idle.textContent = '';
      return;
    }
    const sinceMs = gpu.idle.since_ts * 1000;
    const holders = holdersText(gpu.idle.processes);
    els.idle.textContent = `Idle but allocated since ${formatWhen(sinceMs)}`
      + ` (${formatDuration(Math.max(0, serverNowS() - gpu.idle.since_ts))})`
      + (holders ? `, held by ${holders}` : '');
    els.idle.title = formatFull(sinceMs);
    els.idleBadge.title = isNumber(state.idleUtilPct) && isNumber(state.idleAfterS)
      ? `Memory held while utilization stayed under ${formatNumber(state.idleUtilPct, 1)} % for over ${formatDuration(state.idleAfterS)}`
      : 'Memory held while the GPU is not used';
  }

  function setIdentity(gpu) {
    const els = gpu.els;
    els.index.textContent = `GPU ${gpu.index}`;
    els.name.textContent = gpu.name;
    els.name.title = gpu.name;
    els.pci.textContent = gpu.pci || '';
    els.pci.title = gpu.pci ? `PCI bus ${gpu.pci} · ${gpu.uuid}` : gpu.uuid;
  }

  function placeCard(gpu) {
    const row = ensureHost(gpu.host).row;
    const next = [...row.children].find((column) => {
      const other = state.gpus.get(column.firstChild.dataset.gpuUuid);
      return other && other !== gpu && other.index > gpu.index;
    });
    row.insertBefore(gpu.els.column, next || null);
  }

  /** Return the GPU's card state, made on first sight; item: a GPU entry as the API sends it. */
  function ensureGpu(item) {
    const identity = {
      uuid: item.gpu_uuid, host: item.host, index: item.gpu_index, name: item.gpu_name, pci: item.pci_bus_id,
    };
    const uuid = identity.uuid;
    if (typeof uuid !== 'string' || !uuid) return null;
    let gpu = state.gpus.get(uuid);
    if (!gpu) {
      gpu = {
        uuid, host: String(identity.host ?? ''), index: Number(identity.index) || 0,
        name: String(identity.name ?? uuid), pci: identity.pci ?? null,
        colour: colourFor(state.gpus.size), hidden: false, lastTs: null, error: null,
        stale: false, // the server's word on this GPU alone (its host's is in serverHosts)
        processes: undefined, since: new Map(), sinceAsked: false, idle: null,
      };
      gpu.els = buildCard(gpu);
      state.gpus.set(uuid, gpu);
      setIdentity(gpu);
      placeCard(gpu);
      for (const entry of state.charts) datasetFor(entry, gpu);
      return gpu;
    }
    const name = identity.name == null ? gpu.name : String(identity.name);
    const pci = identity.pci ?? gpu.pci;
    if (name !== gpu.name || pci !== gpu.pci) {
      gpu.name = name;
      gpu.pci = pci;
      setIdentity(gpu);
      relabelDatasets();
    }
    return gpu;
  }

  function setText(node, text) {
    putText(node, text);
    node.classList.toggle('na', text === 'n/a');
  }

  function setBar(bar, used, total, text) {
    const known = isNumber(used) && isNumber(total) && total > 0;
    const pct = known ? Math.max(0, Math.min(100, (100 * used) / total)) : 0;
    bar.bar.style.width = `${pct}%`;
    bar.bar.classList.toggle('bg-danger', pct >= 90);
    bar.progress.setAttribute('aria-valuenow', String(Math.round(pct)));
    bar.progress.setAttribute('aria-valuetext', text);
    setText(bar.value, text);
  }

  function memoryText(used, total) {
    if (!isNumber(used)) return 'n/a';
    const unitBytes = Math.max(used, isNumber(total) ? total : 0) >= GIB ? GIB : MIB;
    const unit = unitBytes === GIB ? 'GiB' : 'MiB';
    const digits = unitBytes === GIB ? 1 : 0;
    const shown = formatNumber(used / unitBytes, digits, true);
    return isNumber(total) ? `${shown} / ${formatNumber(total / unitBytes, digits, true)} ${unit}` : `${shown} ${unit}`;
  }

  function powerText(power, limit) {
    if (!isNumber(power)) return 'n/a';
    return isNumber(limit) ? `${formatNumber(power, 0)} / ${formatNumber(limit, 0)} W` : `${formatNumber(power, 0)} W`;
  }

  function clocksText(smMhz, memMhz) {
    if (!isNumber(smMhz) && !isNumber(memMhz)) return 'n/a';
    const shown = (mhz) => (isNumber(mhz) ? formatNumber(mhz, 0) : 'n/a');
    return `${shown(smMhz)} / ${shown(memMhz)} MHz`;
  }

  /**
   * Show a GPU entry's reading ("latest") on its card; lists: the entry, when its processes and
   * MIG devices are as new as the reading (a websocket tick's).
   */
  function updateCard(gpu, reading, tsS, lists) {
    if (!isNumber(tsS) || (gpu.lastTs !== null && tsS < gpu.lastTs)) return false;
    gpu.lastTs = tsS;
    gpu.error = reading.error ? String(reading.error) : null;
    if (!gpu.error) gpu.errorSinceS = null;
    else if (!isNumber(gpu.errorSinceS)) gpu.errorSinceS = tsS; // the API may know earlier
    const els = gpu.els;
    setText(els.util, withUnit(reading.util_gpu_pct, '%', 0));
    setText(els.temp, withUnit(reading.temp_c, '°C', 0));
    setBar(els.memory, reading.mem_used_bytes, reading.mem_total_bytes,
      memoryText(reading.mem_used_bytes, reading.mem_total_bytes));
    setBar(els.power, reading.power_w, reading.power_limit_w,
      powerText(reading.power_w, reading.power_limit_w));
    setText(els.fan, withUnit(reading.fan_pct, '%', 0));
    setText(els.memUtil, withUnit(reading.util_mem_pct, '%', 0));
    setText(els.clocks, clocksText(reading.sm_clock_mhz, reading.mem_clock_mhz));
    els.pstate.textContent = isNumber(reading.pstate) ? `P${reading.pstate}` : 'P n/a';
    els.error.hidden = !gpu.error;
    putText(els.error, gpu.error
      ? `Reading this GPU failed since ${formatFull(gpu.errorSinceS * 1000)}: ${gpu.error}`
      : '');
    els.card.dataset.ts = String(tsS);
    els.updated.textContent = `updated ${formatClock(tsS * 1000)}`;
    els.updated.title = formatFull(tsS * 1000);
    if (state.lastTickTs === null || tsS > state.lastTickTs) {
      state.lastTickTs = tsS;
      document.getElementById('last-update').textContent = `last reading ${formatClock(tsS * 1000)}`;
    }
    refreshCardState(gpu);
    growScales(reading);
    if (lists) {
      updateProcesses(gpu, lists.processes, tsS);
      updateMig(gpu, lists.mig_devices);
    }
    return true;
  }

  function refreshCardState(gpu) {
    let cardState = 'ok';
    if (gpu.error) {
      cardState = 'error';
    } else if (gpu.lastTs !== null && (gpu.stale || hostStale(gpu.host))) {
      cardState = 'stale';
    }
    gpu.els.card.dataset.state = cardState;
    if (cardState === 'stale') {
      gpu.els.updated.textContent = `no reading for ${formatDuration(serverNowS() - gpu.lastTs)}`;
    }
  }

  function refreshStale() {
    for (const gpu of state.gpus.values()) {
      if (gpu.lastTs !== null) refreshCardState(gpu);
      renderProcesses(gpu); // a no-op unless the local day changed under a silent host
    }
    for (const host of state.hosts.keys()) refreshHostState(host);
  }

  // ---------------------------------------------------------------- charts

  function cssVar(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  /** Return the short legend label; the card of the same colour and the tooltip give the name. */
  function chartLabel(gpu) {
    return state.hosts.size > 1 ? `${gpu.host} · GPU ${gpu.index}` : `GPU ${gpu.index}`;
  }

  function relabelDatasets() {
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

  function gpuOrder(a, b) {
    return a.host === b.host ? a.index - b.index : (a.host < b.host ? -1 : 1);
  }

  /** gpuOrder for GPU items of an API answer (host, gpu_index). */
  function apiGpuOrder(a, b) {
    return gpuOrder({ host: String(a.host), index: a.gpu_index }, { host: String(b.host), index: b.gpu_index });
  }

  function datasetFor(entry, gpu) {
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

  function tickLabel(value) {
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
  function showDatasets() {
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

  function buildChart(def) {
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
  function growScales(reading) {
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

  // ---------------------------------------------------------------- chart points

  function bucketStartS(tsS, stepS) {
    return Math.floor(tsS / stepS + 1e-9) * stepS;
  }

  function scaled(value, def) {
    return isNumber(value) ? value * def.scale : null;
  }

  function gapAfterS(stepS, intervalS) {
    return Math.max(1.5 * stepS, 2.5 * intervalS);
  }

  /** Merge one live reading into the dataset's bucket for its time; false when not taken. */
  function addPoint(dataset, tsS, value, intervalS) {
    const stepS = state.history.stepS;
    if (tsS < dataset.pcwLiveFromS) return false; // already part of the loaded history
    const x = bucketStartS(tsS, stepS) * 1000;
    const data = dataset.data;
    const last = data.length ? data[data.length - 1] : null;
    if (last && x < last.x) return false;
    if (last && x === last.x) {
      if (value !== null) {
        last.n = (last.n || 0) + 1;
        last.sum = (last.sum || 0) + value;
        last.y = last.sum / last.n;
        last.max = isNumber(last.max) ? Math.max(last.max, value) : value;
      }
      return true;
    }
    if (last && last.y !== null && x - last.x > gapAfterS(stepS, intervalS) * 1000) {
      data.push({ x: last.x + stepS * 1000, y: null, max: null }); // a gap, not a slope
    }
    data.push({ x, y: value, max: value, n: value === null ? 0 : 1, sum: value === null ? 0 : value });
    dropOlderThan(data, x - RANGES_S[state.rangeKey] * 1000 - stepS * 1000);
    return true;
  }

  /** Drop the points before minMs, keeping one so the line enters from the chart's edge. */
  function dropOlderThan(data, minMs) {
    let first = 0;
    while (first + 1 < data.length && data[first + 1].x < minMs) first += 1;
    if (first > 0) data.splice(0, first);
  }

  function mergeTickIntoCharts(tick) {
    if (!state.history) return;
    const intervalS = positive(tick.interval_s, state.intervalS);
    for (const item of tick.gpus) {
      const gpu = state.gpus.get(item.gpu_uuid);
      const reading = item.latest;
      if (!gpu || !reading) continue;
      for (const entry of state.charts) {
        const value = reading.error ? null : scaled(reading[entry.def.metric], entry.def);
        if (addPoint(datasetFor(entry, gpu), tick.ts, value, intervalS)) {
          state.lastLiveTs = Math.max(state.lastLiveTs ?? tick.ts, tick.ts);
        }
      }
    }
  }

  function pointFromBucket(bucket, def) {
    const mean = bucket.mean ? scaled(bucket.mean[def.metric], def) : null;
    const max = bucket.max ? scaled(bucket.max[def.metric], def) : null;
    return { x: bucket.ts * 1000, y: mean, max };
  }

  /**
   * Put a history answer into the charts. Buckets from cutS on replace what the charts hold
   * (cutS null: everything). The bucket still filling at requestNowS and the empty buckets at
   * the end are left out: live ticks (and the recent ones in the ring) fill them instead, so no
   * reading is counted twice and the newest point keeps moving.
   */
  function applyHistory(answer, cutS, requestNowS) {
    const stepS = answer.step_s;
    const seen = new Set();
    for (const series of answer.series) {
      const gpu = ensureGpu(series);
      if (!gpu || !Array.isArray(series.buckets)) continue;
      seen.add(gpu.uuid);
      const buckets = series.buckets.filter((bucket) => isNumber(bucket.ts) && bucket.ts + stepS <= requestNowS);
      while (buckets.length && !buckets[buckets.length - 1].mean) buckets.pop();
      const liveFromS = buckets.length ? buckets[buckets.length - 1].ts + stepS : (cutS ?? answer.from);
      for (const entry of state.charts) {
        const dataset = datasetFor(entry, gpu);
        const kept = cutS === null ? [] : dataset.data.filter((point) => point.x < cutS * 1000);
        dataset.data = kept.concat(buckets.map((bucket) => pointFromBucket(bucket, entry.def)));
        dataset.pcwLiveFromS = liveFromS;
      }
    }
    for (const entry of state.charts) {
      for (const dataset of entry.chart.data.datasets) {
        if (!seen.has(dataset.pcwUuid)) {
          // No history for this GPU in the answer: drop what the answer covers, rebuild from ticks.
          dataset.data = cutS === null ? [] : dataset.data.filter((point) => point.x < cutS * 1000);
          dataset.pcwLiveFromS = cutS === null ? -Infinity : cutS;
        }
      }
    }
    for (const tick of state.ring) mergeTickIntoCharts(tick);
    queueRender();
  }

  // ---------------------------------------------------------------- drawing

  function queueRender() {
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

  // ---------------------------------------------------------------- history requests

  function chartWidthPx() {
    const box = document.querySelector('.chart-box');
    const width = box ? box.clientWidth : 0;
    return width > 0 ? width : 600;
  }

  function secondsParam(value) {
    return String(Math.round(value * 1000) / 1000);
  }

  async function fetchJson(url, signal) {
    const response = await fetch(url, {
      signal: signal ?? AbortSignal.timeout(FETCH_TIMEOUT_MS), headers: { Accept: 'application/json' },
    });
    // 401: the sign-in this page was opened with is no longer accepted (password changed).
    document.getElementById('auth-alert').hidden = response.status !== 401;
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (!response.ok) {
      const reason = body && typeof body.error === 'string' ? body.error : `HTTP ${response.status}`;
      const error = new Error(reason);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function historyUrl(fromS, toS, points) {
    const query = new URLSearchParams({ from: secondsParam(fromS), to: secondsParam(toS), points: String(points) });
    for (const metric of CHARTED_METRICS) query.append('metric', metric); // a third of the bytes
    if (state.hostFilter !== null && state.historyByHost) query.append('host', state.hostFilter);
    return `api/v1/history?${query}`;
  }

  function validHistory(answer) {
    return answer && isNumber(answer.step_s) && answer.step_s > 0 && Array.isArray(answer.series);
  }

  function showHistoryError(message) {
    const box = document.getElementById('history-error');
    box.hidden = !message;
    box.textContent = message ? `History could not be loaded: ${message}` : '';
  }

  function setHistoryStatus(text) {
    document.getElementById('history-status').textContent = text;
  }

  /** Load the whole selected range and replace the charts' points with it. */
  async function loadRange() {
    const gen = ++state.loadGen;
    if (state.loadAbort) state.loadAbort.abort();
    const abort = new AbortController();
    state.loadAbort = abort;
    const spanS = RANGES_S[state.rangeKey];
    const intervalS = state.intervalS;
    // At most one bucket per interval: narrower buckets would be mostly empty and draw as gaps.
    const points = Math.max(1, Math.min(MAX_API_POINTS, Math.round(chartWidthPx()), Math.floor(spanS / intervalS)));
    const requestNowS = serverNowS();
    const toS = Math.ceil(requestNowS / intervalS) * intervalS;
    setHistoryStatus('loading…');
    state.historyPending = true;
    try {
      const answer = await fetchJson(historyUrl(toS - spanS, toS, points), abort.signal);
      if (gen !== state.loadGen) return;
      if (!validHistory(answer)) throw new Error('unexpected answer from api/v1/history');
      state.history = { stepS: answer.step_s };
      applyHistory(answer, null, requestNowS);
      showHistoryError('');
      setHistoryStatus(`${formatDuration(answer.step_s)} buckets`);
    } catch (error) {
      if (gen !== state.loadGen || error.name === 'AbortError') return;
      if (error.status === 400 && state.hostFilter !== null && state.historyByHost && /host/.test(error.message)) {
        state.historyByHost = false; // an older server: ask for every host, draw the chosen one
        loadRange();
        return;
      }
      setHistoryStatus('');
      showHistoryError(error.message);
    } finally {
      if (gen === state.loadGen) state.historyPending = false;
    }
  }

  /** After a reconnect, fetch only the buckets from the last live one on, and merge them. */
  async function fillMissed(lastLiveTs) {
    const history = state.history;
    if (!history || lastLiveTs === null) {
      await loadRange();
      return;
    }
    const stepS = history.stepS;
    const requestNowS = serverNowS();
    const fromS = bucketStartS(lastLiveTs, stepS);
    const toS = bucketStartS(requestNowS, stepS) + stepS;
    const points = Math.round((toS - fromS) / stepS);
    if (points > MAX_API_POINTS || fromS < requestNowS - RANGES_S[state.rangeKey]) {
      await loadRange();
      return;
    }
    const gen = state.loadGen;
    try {
      const answer = await fetchJson(historyUrl(fromS, toS, points), undefined);
      if (gen !== state.loadGen) return;
      if (!validHistory(answer) || Math.abs(answer.step_s - stepS) > 1e-9) {
        await loadRange(); // the server chose other buckets: start over rather than mix them
        return;
      }
      applyHistory(answer, fromS, requestNowS);
      showHistoryError('');
    } catch (error) {
      if (gen === state.loadGen) showHistoryError(error.message);
    }
  }

  async function loadGpus(quiet) {
    try {
      const answer = await fetchJson('api/v1/gpus', undefined);
      if (!answer || !Array.isArray(answer.gpus)) return;
      state.gpusLoaded = true;
      if (answer.simulated === true) document.getElementById('sim-banner').hidden = false;
      if (isNumber(answer.interval_s) && answer.interval_s > 0) state.intervalS = answer.interval_s;
      if (isNumber(answer.idle_util_pct)) state.idleUtilPct = answer.idle_util_pct;
      if (isNumber(answer.idle_after_s)) state.idleAfterS = answer.idle_after_s;
      const gpus = [...answer.gpus].sort(apiGpuOrder);
      for (const item of gpus) {
        const gpu = ensureGpu(item);
        if (!gpu) continue;
        if (isNumber(item.error_since_ts)) gpu.errorSinceS = item.error_since_ts;
        const latestTs = item.latest ? item.latest.ts : null;
        // The list is as new as the reading beside it: never older than what a tick showed.
        const fresh = item.latest ? updateCard(gpu, item.latest, latestTs) : gpu.lastTs === null;
        const current = fresh || (isNumber(latestTs) && latestTs >= gpu.lastTs);
        if (current) {
          updateProcesses(gpu, item.processes, isNumber(latestTs) ? latestTs : serverNowS());
          updateMig(gpu, item.mig_devices);
          if (typeof item.stale === 'boolean') gpu.stale = item.stale;
        }
        if (item.idle !== undefined) updateIdle(gpu, item.idle);
        if (typeof item.host_stale === 'boolean') {
          takeHostState({
            host: gpu.host, stale: item.host_stale, last_seen_ts: item.host_last_seen_ts,
            interval_s: item.interval_s, stale_since_ts: null, // api/v1/hosts says since when
          }, false);
        }
      }
      refreshStale();
    } catch (error) {
      if (!quiet) showHistoryError(`GPU list: ${error.message}`);
    }
  }

  /** Take the server's list of hosts, with which are stale and when each was last seen. */
  async function loadHosts() {
    if (!state.hostsApi) return;
    let answer;
    try {
      answer = await fetchJson('api/v1/hosts', undefined);
    } catch (error) {
      if (error.status === 404) state.hostsApi = false; // an older server: the GPU list tells
      return;
    }
    if (!answer || !Array.isArray(answer.hosts)) return;
    const listed = new Set();
    for (const item of answer.hosts) {
      takeHostState(item, false);
      if (item && typeof item.host === 'string') listed.add(item.host);
    }
    for (const host of [...state.serverHosts.keys()]) {
      if (!listed.has(host)) state.serverHosts.delete(host); // purged from the server's file
    }
    fillHostSelect();
    refreshStale();
  }

  /** Return fn wrapped so that a call made while the last one still runs is skipped, not piled. */
  function oneAtATime(fn) {
    let running = false;
    return async () => {
      if (running) return;
      running = true;
      try {
        await fn();
      } finally {
        running = false;
      }
    };
  }

  const pollServer = oneAtATime(() => Promise.all([loadGpus(true), loadHosts()]));

  // ---------------------------------------------------------------- processes at a chart point

  function gpuLabel(gpu) {
    const host = severalHosts() ? `${gpu.host} · ` : '';
    return `${host}GPU ${gpu.index} (${gpu.name})`;
  }

  function closePointPanel() {
    state.pointGen += 1;
    document.getElementById('point-panel').hidden = true;
  }

  /** Show, under the charts, the processes on a GPU at the last tick of the clicked bucket. */
  async function showPointProcesses(uuid, bucketS) {
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

  // ---------------------------------------------------------------- usage and energy

  const amountFormat = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 3 });

  /** Format an amount with 3 significant digits below 100, and whole numbers above. */
  function formatAmount(value) {
    if (!isNumber(value)) return 'n/a';
    return Math.abs(value) >= 100 ? formatNumber(value, 0) : amountFormat.format(value);
  }

  function formatCost(value, currency) {
    if (!isNumber(value)) return 'n/a';
    if (/^[A-Za-z]{3}$/.test(currency || '')) {
      try {
        return new Intl.NumberFormat(undefined, { style: 'currency', currency: currency.toUpperCase() }).format(value);
      } catch (error) {
        // not a currency Intl knows: shown as a number and its code below
      }
    }
    const amount = formatNumber(value, 2, true);
    return currency ? `${amount} ${currency}` : amount;
  }

  function rangeWindow() {
    const toS = serverNowS();
    return { fromS: toS - RANGES_S[state.rangeKey], toS };
  }

  function setNote(id, text) {
    const note = document.getElementById(id);
    note.hidden = !text;
    note.textContent = text || '';
  }

  /** Return the note of a range table whose request failed (404: an older server). */
  function failedText(error, what, title) {
    return error.status === 404 ? `This server does not report ${what} yet.`
      : `${title} could not be loaded: ${error.message}`;
  }

  function uuidLabels(uuids) {
    if (!Array.isArray(uuids)) return '';
    return uuids.map((uuid) => {
      const gpu = state.gpus.get(uuid);
      return gpu ? gpuLabel(gpu) : String(uuid);
    }).join('\n');
  }

  function usageRow(row) {
    const tr = element('tr', 'usage-row');
    const known = knownText(row.key);
    tr.dataset.key = known ?? '';
    const key = known
      ? cell(known, 'usage-key text-truncate', known)
      : cell('not visible / unknown', 'usage-key na', NOT_VISIBLE_HELP);
    const gpus = Array.isArray(row.gpus) ? row.gpus : [];
    tr.append(
      key,
      cell(formatAmount(row.gpu_hours), 'text-end usage-gpu-hours'),
      cell(`${formatAmount(row.gpu_mem_gib_hours)} GiB·h`, 'text-end usage-mem-hours'),
      cell(String(gpus.length), 'text-end usage-gpus', uuidLabels(gpus)),
    );
    return tr;
  }

  /** Load who used the GPUs over the chosen range, by user, process or container. */
  async function loadUsage() {
    const gen = ++state.usageGen;
    const { fromS, toS } = rangeWindow();
    const by = state.usageBy;
    document.getElementById('usage-key-head').textContent = USAGE_BY[by];
    document.getElementById('usage-range').textContent = `· last ${state.rangeKey}`
      + (state.hostFilter !== null ? ', all hosts' : '');
    markPressed('data-usage-by', by);
    const status = document.getElementById('usage-status');
    status.textContent = 'loading…';
    const query = new URLSearchParams({ from: secondsParam(fromS), to: secondsParam(toS), by });
    let answer;
    try {
      answer = await fetchJson(`api/v1/usage?${query}`, undefined);
    } catch (error) {
      if (gen !== state.usageGen) return;
      status.textContent = '';
      document.querySelector('#usage-table tbody').replaceChildren();
      document.getElementById('usage-table').hidden = true;
      setNote('usage-note', failedText(error, 'usage', 'Usage'));
      return;
    }
    if (gen !== state.usageGen) return;
    const rows = answer && Array.isArray(answer.rows) ? answer.rows.filter((row) => row && typeof row === 'object') : [];
    document.querySelector('#usage-table tbody').replaceChildren(...rows.map(usageRow));
    document.getElementById('usage-table').hidden = rows.length === 0;
    setNote('usage-note', rows.length ? '' : 'No process held a GPU in this range.');
    status.textContent = `as of ${formatClock(Date.now())}`;
  }

  function energyCells(kwh, cost, currency, priced) {
    const cells = [cell(isNumber(kwh) ? `${formatAmount(kwh)} kWh` : 'n/a', `text-end energy-kwh${isNumber(kwh) ? '' : ' na'}`)];
    if (priced) cells.push(cell(formatCost(cost, currency), `text-end energy-cost${isNumber(cost) ? '' : ' na'}`));
    return cells;
  }

  function energyGpuRow(item, currency, priced) {
    const tr = element('tr', 'energy-gpu');
    tr.dataset.gpuUuid = String(item.gpu_uuid ?? '');
    const label = `${severalHosts() ? `${item.host} · ` : ''}GPU ${item.gpu_index}`;
    const name = element('td', 'energy-gpu-name');
    name.append(element('span', '', label), element('span', 'text-body-secondary ms-1', String(item.gpu_name ?? '')));
    name.title = String(item.gpu_uuid ?? '');
    const source = ENERGY_SOURCES[item.source] ?? String(item.source ?? 'unknown');
    tr.append(name, ...energyCells(item.kwh, item.cost, currency, priced),
      cell(source, `energy-source${item.source === 'none' ? ' na' : ''}`));
    return tr;
  }

  function energyHostRow(item, currency, priced) {
    const tr = element('tr', 'energy-host');
    tr.dataset.host = String(item.host ?? '');
    tr.append(cell(String(item.host ?? ''), 'energy-host-name'), ...energyCells(item.kwh, item.cost, currency, priced));
    return tr;
  }

  /** Load the energy of the chosen range and host: kWh per GPU and per host, with cost if priced. */
  async function loadEnergy() {
    const gen = ++state.energyGen;
    const { fromS, toS } = rangeWindow();
    document.getElementById('energy-range').textContent = `· last ${state.rangeKey}`
      + (state.hostFilter !== null ? ` · ${state.hostFilter}` : '');
    const status = document.getElementById('energy-status');
    status.textContent = 'loading…';
    const query = new URLSearchParams({ from: secondsParam(fromS), to: secondsParam(toS) });
    if (state.hostFilter !== null) query.append('host', state.hostFilter);
    const total = document.getElementById('energy-total');
    const hostsTable = document.getElementById('energy-hosts');
    const gpusTable = document.getElementById('energy-gpus');
    let answer;
    try {
      answer = await fetchJson(`api/v1/energy?${query}`, undefined);
    } catch (error) {
      if (gen !== state.energyGen) return;
      status.textContent = '';
      total.textContent = '';
      hostsTable.hidden = true;
      gpusTable.hidden = true;
      gpusTable.querySelector('tbody').replaceChildren();
      setNote('energy-note', failedText(error, 'energy', 'Energy'));
      return;
    }
    if (gen !== state.energyGen || !answer) return;
    const priced = isNumber(answer.price_per_kwh);
    const currency = typeof answer.currency === 'string' ? answer.currency : '';
    for (const head of document.querySelectorAll('.energy-cost-col')) head.hidden = !priced;
    const hosts = Array.isArray(answer.hosts) ? answer.hosts.filter((item) => item && typeof item === 'object') : [];
    const gpus = Array.isArray(answer.gpus) ? answer.gpus.filter((item) => item && typeof item === 'object') : [];
    gpus.sort(apiGpuOrder);
    hostsTable.querySelector('tbody').replaceChildren(...hosts.map((item) => energyHostRow(item, currency, priced)));
    hostsTable.hidden = hosts.length < 2;
    gpusTable.querySelector('tbody').replaceChildren(...gpus.map((item) => energyGpuRow(item, currency, priced)));
    gpusTable.hidden = gpus.length === 0;
    total.replaceChildren(
      element('span', 'fs-5 fw-semibold energy-total-kwh', isNumber(answer.total_kwh) ? `${formatAmount(answer.total_kwh)} kWh` : 'n/a'),
      element('span', 'text-body-secondary ms-2', state.hostFilter !== null ? `on ${state.hostFilter}` : 'on all GPUs'),
    );
    if (priced) {
      total.append(element('span', 'ms-2 energy-total-cost', `· ${formatCost(answer.total_cost, currency)}`));
    }
    setNote('energy-note', priced ? `At ${formatCost(answer.price_per_kwh, currency)} per kWh.`
      : 'No price set (PCW_ENERGY_PRICE_PER_KWH): no cost shown.');
    status.textContent = `as of ${formatClock(Date.now())}`;
  }

  function loadRangeTables() {
    return Promise.all([loadUsage(), loadEnergy()]);
  }

  /** Refresh usage and energy (range queries) while the page is seen; once on return if missed. */
  const refreshRangeTables = oneAtATime(() => {
    state.tablesMissed = document.hidden;
    return document.hidden ? null : loadRangeTables();
  });

  // ---------------------------------------------------------------- live feed

  function validTick(tick) {
    return tick && typeof tick.host === 'string' && isNumber(tick.ts) && Array.isArray(tick.gpus);
  }

  /** Take a tick; hostState: what the server said of its host with it (null: nothing). */
  function takeTick(tick, live, hostState) {
    if (!validTick(tick)) return;
    if (live) {
      const offsetS = tick.ts - Date.now() / 1000;
      state.clockOffsetS = Math.abs(offsetS) > CLOCK_SKEW_MIN_S ? offsetS : 0;
    }
    if (hostState) takeHostState(hostState, true);
    setHostError(tick.host, tick.error);
    for (const item of tick.gpus) {
      if (!item || typeof item !== 'object' || !item.latest) continue;
      const gpu = ensureGpu(item);
      if (!gpu) continue;
      // A GPU in its host's tick is as stale as its host: the server's word on it alone is old.
      if (hostState && (gpu.lastTs === null || tick.ts >= gpu.lastTs)) gpu.stale = hostState.stale === true;
      updateCard(gpu, item.latest, tick.ts, item);
    }
    refreshHostState(tick.host);
    // A snapshot after a reconnect repeats the tick seen last: count each tick once.
    const hostTs = state.hostTickTs.get(tick.host);
    if (hostTs !== undefined && tick.ts <= hostTs) return;
    state.hostTickTs.set(tick.host, tick.ts);
    state.ring.push(tick);
    if (state.ring.length > RING_TICKS) state.ring.splice(0, state.ring.length - RING_TICKS);
    mergeTickIntoCharts(tick);
    queueRender();
  }

  function setConnection(name) {
    const badge = document.getElementById('conn-badge');
    const styles = { live: 'text-bg-success', reconnecting: 'text-bg-warning', offline: 'text-bg-danger' };
    badge.dataset.state = name;
    badge.textContent = name;
    badge.className = `badge ${styles[name]}`;
  }

  function onMessage(socket, event) {
    if (socket !== state.ws) return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (error) {
      return;
    }
    if (!message || typeof message !== 'object') return;
    if (message.type === 'snapshot' && Array.isArray(message.ticks)) {
      const reconnected = state.everConnected;
      const lastLiveTs = state.lastLiveTs; // before the snapshot moves it
      state.everConnected = true;
      state.attempts = 0;
      state.downSinceMs = null;
      const hosts = new Map();
      for (const item of Array.isArray(message.hosts) ? message.hosts : []) {
        if (item && typeof item.host === 'string') hosts.set(item.host, item);
      }
      for (const tick of message.ticks) takeTick(tick, false, validTick(tick) ? hosts.get(tick.host) : null);
      if (!state.gpusLoaded) loadGpus(false); // the first try found the server down
      if (!state.history && !state.historyPending) loadRange();
      else if (reconnected && state.history) fillMissed(lastLiveTs);
    } else if (message.type === 'tick') {
      takeTick(message.tick, true, message.host_state);
    } else if (message.type === 'hosts' && Array.isArray(message.hosts)) {
      for (const item of message.hosts) takeHostState(item, true);
      refreshStale();
    }
  }

  function onClose(socket) {
    if (socket !== state.ws) return;
    state.ws = null;
    if (state.downSinceMs === null) state.downSinceMs = Date.now();
    const longDown = Date.now() - state.downSinceMs > OFFLINE_AFTER_MS;
    setConnection(longDown || navigator.onLine === false ? 'offline' : 'reconnecting');
    scheduleReconnect();
  }

  function scheduleReconnect() {
    window.clearTimeout(state.reconnectTimer);
    const baseMs = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** state.attempts);
    state.attempts = Math.min(state.attempts + 1, 30);
    const delayMs = baseMs / 2 + Math.random() * (baseMs / 2); // jitter: browsers do not reconnect in step
    state.reconnectTimer = window.setTimeout(connect, delayMs);
  }

  function connect() {
    window.clearTimeout(state.reconnectTimer);
    const url = new URL('ws', document.baseURI);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.search = '';
    url.hash = '';
    let socket;
    try {
      socket = new WebSocket(url.href);
    } catch (error) {
      scheduleReconnect();
      return;
    }
    state.ws = socket;
    socket.addEventListener('open', () => {
      if (socket === state.ws) setConnection('live');
    });
    socket.addEventListener('message', (event) => onMessage(socket, event));
    socket.addEventListener('close', () => onClose(socket));
  }

  // ---------------------------------------------------------------- range buttons

  /** Mark the button whose `attribute` is `value` pressed, and the others of its group not. */
  function markPressed(attribute, value) {
    for (const button of document.querySelectorAll(`[${attribute}]`)) {
      const active = button.getAttribute(attribute) === value;
      button.classList.toggle('active', active);
      button.setAttribute('aria-pressed', String(active));
    }
  }

  function showRange() {
    markPressed('data-range', state.rangeKey);
  }

  function chooseRange(key) {
    if (!Object.prototype.hasOwnProperty.call(RANGES_S, key) || key === state.rangeKey) return;
    state.rangeKey = key;
    const url = new URL(window.location.href);
    url.searchParams.set('range', key);
    window.history.pushState({ range: key }, '', url);
    showRange();
    queueRender();
    loadRange();
    loadRangeTables();
  }

  function chooseHost(host) {
    if (host === state.hostFilter) return;
    state.hostFilter = host;
    const url = new URL(window.location.href);
    if (host === null) url.searchParams.delete('host');
    else url.searchParams.set('host', host);
    window.history.pushState({ host }, '', url);
    applyHostFilter();
  }

  /** Show the chosen host's cards and lines only, and load its history and energy. */
  function applyHostFilter() {
    for (const [host, entry] of state.hosts) entry.section.hidden = !hostShown(host);
    fillHostSelect();
    showDatasets();
    const panel = document.getElementById('point-panel');
    const pointGpu = state.gpus.get(panel.dataset.gpuUuid);
    if (!panel.hidden && pointGpu && !hostShown(pointGpu.host)) closePointPanel();
    loadRange();
    loadRangeTables();
  }

  function chooseUsageBy(by) {
    if (!Object.prototype.hasOwnProperty.call(USAGE_BY, by) || by === state.usageBy) return;
    state.usageBy = by;
    loadUsage();
  }

  function bindControls() {
    for (const button of document.querySelectorAll('[data-range]')) {
      button.addEventListener('click', () => chooseRange(button.dataset.range));
    }
    for (const button of document.querySelectorAll('[data-usage-by]')) {
      button.addEventListener('click', () => chooseUsageBy(button.dataset.usageBy));
    }
    const select = document.getElementById('host-select');
    select.addEventListener('change', () => chooseHost(select.value || null));
    document.getElementById('point-close').addEventListener('click', closePointPanel);
    window.addEventListener('popstate', () => {
      const key = rangeFromUrl();
      const host = hostFromUrl();
      if (host !== state.hostFilter) {
        state.rangeKey = key;
        showRange();
        state.hostFilter = host;
        applyHostFilter();
        return;
      }
      if (key === state.rangeKey) return;
      state.rangeKey = key;
      showRange();
      loadRange();
      loadRangeTables();
    });
    window.addEventListener('online', () => {
      if (!state.ws) {
        state.attempts = 0;
        connect();
      }
    });
    window.addEventListener('offline', () => {
      if (!state.ws) setConnection('offline');
    });
  }

  // ---------------------------------------------------------------- start

  async function start() {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone) document.getElementById('time-zone').textContent = zone;
    if (config.simulated === true) document.getElementById('sim-banner').hidden = false;
    window.Chart.defaults.color = cssVar('--bs-secondary-color', '#adb5bd');
    window.Chart.defaults.font.family = cssVar('--bs-body-font-family', 'system-ui, sans-serif');
    state.charts = CHARTS.map(buildChart);
    showRange();
    bindControls();
    setConnection('offline');
    connect();
    fillHostSelect();
    window.setInterval(refreshStale, 5000);
    window.setInterval(queueRender, 10000); // slide the window even when no tick comes
    window.setInterval(pollServer, POLL_MS);
    window.setInterval(refreshRangeTables, USAGE_REFRESH_MS);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && state.tablesMissed) refreshRangeTables();
    });
    loadHosts();
    await loadGpus(false);
    loadRangeTables();
    await loadRange();
  }

  start();
})();
