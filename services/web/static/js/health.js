/* A GPU card's health: a badge that says at a glance whether it is healthy, and why not. */

import { element, exactTime, formatFull, formatWhen, isNumber } from './format.js';

/** Return the header badge and the list of findings of a card, both hidden until known. */
export function buildHealthBlock() {
  const badge = element('span', 'badge health-badge');
  badge.hidden = true;
  const list = element('ul', 'list-unstyled small mb-2 gpu-findings');
  list.hidden = true;
  list.setAttribute('aria-label', 'Health findings');
  return { badge, list, signature: '' };
}

function findingText(finding) {
  const when = isNumber(finding.since_ts) ? formatWhen(finding.since_ts * 1000) : null;
  if (!when) return String(finding.text);
  return finding.kind === 'xid' ? `${finding.text} at ${when}` : `${finding.text} since ${when}`;
}

function findingItem(finding) {
  const item = element('li', 'gpu-finding', findingText(finding));
  item.dataset.kind = String(finding.kind ?? '');
  if (isNumber(finding.since_ts)) {
    // the exact time in words beside the short one: a title alone reaches no keyboard or touch
    item.title = formatFull(finding.since_ts * 1000);
    item.append(' ', exactTime(finding.since_ts * 1000));
  }
  return item;
}

/**
 * Show a GPU entry's health on its card (the API's or a websocket tick's); an entry without
 * health (a sampler too old to read it, or a GPU the file alone knows) shows no badge.
 */
export function updateHealth(gpu, entry) {
  if (!entry || entry.findings === undefined) return;
  const block = gpu.els.health;
  const findings = Array.isArray(entry.findings)
    ? entry.findings.filter((finding) => finding && typeof finding === 'object')
    : [];
  gpu.findings = findings; // the problems strip reads them
  const known = Boolean(entry.health) || findings.length > 0;
  const signature = JSON.stringify([known, findings.map(findingText)]);
  if (signature === block.signature) return;
  block.signature = signature;
  block.badge.hidden = !known;
  block.list.hidden = findings.length === 0;
  gpu.els.card.dataset.health = !known ? 'unknown' : findings.length ? 'findings' : 'healthy';
  block.badge.className = `badge health-badge ${findings.length ? 'text-bg-danger' : 'text-bg-success'}`;
  block.badge.textContent = findings.length
    ? `${findings.length} health ${findings.length === 1 ? 'issue' : 'issues'}`
    : 'healthy';
  block.badge.title = findings.map(findingText).join('\n');
  block.list.replaceChildren(...findings.map(findingItem));
}
