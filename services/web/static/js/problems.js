/* The problems strip under the navbar: what is wrong now by the live data, before any alert rule
 * fires (GPUs in error, stale hosts, throttled GPUs, GPUs idle but allocated), each a link to its
 * card or host, and their count in the page title. Redrawn only when the problems change, item
 * by item, so that a tick neither moves the page nor re-announces the strip. */

import { cardId, plural } from './alert_text.js';
import {
  disclosureButton, element, formatFull, formatMinute, isNumber, placeInOrder, putText,
} from './format.js';
import { gpuOrder, hostLastSeenS, hostSectionId, hostStale, knownHosts, severalHosts } from './hosts.js';
import { hostShown, state } from './state.js';

const KINDS = ['error', 'stale', 'throttled', 'idle']; // worst first, the strip's order
const PAGE_TITLE = document.title;
const items = new Map(); // problem key -> its list item, kept while the problem lasts
let shown = ''; // what the strip shows now, to leave it alone while nothing changed
let gpusNow = () => state.gpus.values(); // the cards' GPUs; the fleet view gives its rows

/** Read the GPUs from source() (records with a card's fields: uuid, host, index, lastTs,
 * stale, error, errorSinceS, findings, idle): the fleet view's rows, which have no card. */
export function readProblemGpusFrom(source) {
  gpusNow = source;
}

function fragment(id) {
  return `#${encodeURIComponent(id)}`;
}

function gpuText(gpu) {
  return severalHosts() ? `${gpu.host} · GPU ${gpu.index}` : `GPU ${gpu.index}`;
}

function since(text, sinceS) {
  return isNumber(sinceS) ? `${text} since ${formatFull(sinceS * 1000)}` : text;
}

/** Return a GPU's problems now; one whose readings are stale has none of its own (its host's
 * problem says it, or its card does), as its last reading is no longer news. */
function gpuProblems(gpu) {
  if (gpu.lastTs === null || gpu.stale || hostStale(gpu.host)) return [];
  const name = gpuText(gpu);
  const link = { href: fragment(cardId(gpu.uuid)), gpuUuid: gpu.uuid };
  const found = [];
  if (gpu.error) {
    found.push({ ...link, kind: 'error', text: `${name} in error`,
      title: `${since('Reading this GPU fails', gpu.errorSinceS)}: ${gpu.error}` });
  }
  const throttled = gpu.findings.find((finding) => finding.kind === 'throttled');
  if (throttled) {
    found.push({ ...link, kind: 'throttled', text: `${name} throttled`,
      title: since(String(throttled.text), throttled.since_ts) });
  }
  if (gpu.idle) {
    found.push({ ...link, kind: 'idle', text: `${name} idle but allocated`,
      title: since('Holds memory while idle', gpu.idle.since_ts) });
  }
  return found;
}

function hostProblem(host) {
  const lastSeenS = hostLastSeenS(host);
  const when = lastSeenS === null ? 'yet' : `since ${formatMinute(lastSeenS * 1000)}`;
  return {
    kind: 'stale', host, href: fragment(hostSectionId(host)), text: `${host}: no reading ${when}`,
    title: `${since('No reading from this host', lastSeenS)}; its GPUs show their last readings`,
  };
}

/** Return the problems of the hosts shown, worst kind first, then by host and GPU. */
function currentProblems() {
  const gpus = [...gpusNow()].filter((gpu) => hostShown(gpu.host)).sort(gpuOrder);
  const hosts = [...knownHosts()].filter((host) => hostShown(host) && hostStale(host)).sort();
  const problems = [...hosts.map(hostProblem), ...gpus.flatMap(gpuProblems)];
  for (const problem of problems) problem.key = `${problem.kind}:${problem.gpuUuid ?? problem.host}`;
  return problems.sort((a, b) => KINDS.indexOf(a.kind) - KINDS.indexOf(b.kind)); // stable
}

function itemFor(problem) {
  let item = items.get(problem.key);
  if (!item) {
    item = element('li', 'problem');
    item.dataset.key = problem.key;
    item.dataset.kind = problem.kind;
    if (problem.gpuUuid) item.dataset.gpuUuid = problem.gpuUuid;
    if (problem.host) item.dataset.host = problem.host;
    item.append(element('a', 'problem-link'));
    items.set(problem.key, item);
  }
  const link = item.firstChild;
  putText(link, problem.text);
  if (link.getAttribute('href') !== problem.href) link.setAttribute('href', problem.href);
  if (link.title !== problem.title) link.title = problem.title;
  return item;
}

/*
 * The strip's Details: a real button that opens, under the strip, each problem's link title in
 * words (since when, the error's text), which no keyboard or touch can read from a tooltip.
 * Drawn only while open, so that the data's small changes move nothing while it is closed.
 */
let details = null;

function drawDetails(problems) {
  if (details.list.hidden) return;
  details.list.replaceChildren(...problems.map((problem) => {
    const item = element('li', 'problem-detail');
    item.dataset.key = problem.key;
    item.append(element('span', 'fw-semibold', `${problem.text}: `), element('span', '', problem.title));
    return item;
  }));
}

function ensureDetails() {
  if (details) return;
  const list = element('ul', 'problems-details');
  list.hidden = true;
  list.setAttribute('aria-label', 'Details of the problems');
  const button = disclosureButton(list, 'Details', 'problems-details-button');
  details = { list, button, problems: [] };
  button.addEventListener('click', () => drawDetails(details.problems));
  const box = document.getElementById('problems-box');
  box.append(button, list);
}

/** Show the problems now in the strip and the page title; hide the strip when there is none. */
export function refreshProblems() {
  const problems = currentProblems();
  const next = JSON.stringify(problems.map((p) => [p.key, p.text, p.title, p.href]));
  if (next === shown) return;
  shown = next;
  ensureDetails();
  details.problems = problems;
  drawDetails(problems);
  const keys = new Set(problems.map((problem) => problem.key));
  for (const key of [...items.keys()]) {
    if (!keys.has(key)) items.delete(key);
  }
  const count = problems.length;
  document.getElementById('problems').dataset.count = String(count);
  const box = document.getElementById('problems-box');
  box.hidden = count === 0;
  box.dataset.worst = count ? problems[0].kind : '';
  putText(document.getElementById('problems-title'), count ? plural(count, 'problem') : '');
  placeInOrder(document.getElementById('problems-list'), problems.map(itemFor));
  document.title = count ? `(${count}) ${PAGE_TITLE}` : PAGE_TITLE;
}
