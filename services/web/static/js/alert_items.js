/* A list of alerts kept across websocket messages: one item per alert, updated in place, so that
 * a message each second neither re-announces the list nor takes the focus from its buttons. */

import { buildSilenceControl } from './alert_silence.js';
import { cardHref, isSilenced, severityColour, whereText } from './alert_text.js';
import {
  element, formatFull, formatMinute, isNumber, placeInOrder, putText,
} from './format.js';

function buildItem(detailed) {
  const item = element('li', 'alert-item d-flex flex-wrap align-items-center gap-2');
  const severity = element('span', 'badge alert-severity');
  const stateBadge = element('span', 'badge text-bg-dark border alert-state');
  stateBadge.hidden = !detailed;
  const message = element('a', 'alert-message');
  const where = element('span', 'small text-body-secondary alert-where');
  where.hidden = !detailed;
  const when = element('span', 'small text-body-secondary alert-when');
  when.hidden = !detailed;
  // The rule, in words in the alerts section (the severity badge's title says it too).
  const rule = element('span', 'small text-body-secondary alert-rule');
  rule.hidden = !detailed;
  const silenced = element('span', 'small alert-silenced');
  const entry = { item, severity, stateBadge, message, where, when, rule, silenced, key: '' };
  entry.control = buildSilenceControl(() => entry.key);
  item.append(severity, stateBadge, message, where, when, rule, silenced, entry.control);
  return entry;
}

/** Return a moment (epoch s) to the minute and, in brackets, exactly: "14:05 (Dec 7, 2026, 14:05:31)". */
export function timeText(seconds) {
  return `${formatMinute(seconds * 1000)} (${formatFull(seconds * 1000)})`;
}

function setClass(node, className) {
  if (node.className !== className) node.className = className;
}

function fill(entry, alert) {
  const { item } = entry;
  entry.key = alert.key;
  const silenced = isSilenced(alert);
  item.dataset.key = alert.key;
  item.dataset.rule = alert.rule;
  item.dataset.severity = String(alert.severity);
  item.dataset.state = String(alert.state);
  item.dataset.silenced = String(silenced);
  const colour = silenced ? 'secondary' : severityColour(alert.severity);
  setClass(entry.severity, `badge alert-severity text-bg-${colour}`);
  putText(entry.severity, String(alert.severity));
  entry.severity.title = `rule: ${alert.rule}`;
  putText(entry.rule, `rule: ${alert.rule}`);
  putText(entry.stateBadge, String(alert.state));
  putText(entry.message, alert.message);
  const href = cardHref(alert);
  if (href === null) entry.message.removeAttribute('href');
  else if (entry.message.getAttribute('href') !== href) entry.message.setAttribute('href', href);
  // No title: the link's own words name the GPU whose card it shows.
  entry.message.removeAttribute('title');
  putText(entry.where, whereText(alert));
  const firing = alert.state === 'firing';
  const sinceS = firing && isNumber(alert.fired_ts) ? alert.fired_ts : alert.since_ts;
  // Exact times in words (no tooltip): a keyboard or a touch reads them as well as a pointer.
  putText(entry.when, isNumber(sinceS) ? `${firing ? 'firing' : 'pending'} since ${timeText(sinceS)}` : '');
  entry.silenced.hidden = !silenced;
  putText(entry.silenced, silenced ? `silenced until ${timeText(alert.silenced_until_ts)}` : '');
  // Only a firing alert sends notifications to silence; a silenced one shows until when instead.
  entry.control.hidden = !firing || silenced;
}

export class AlertList {
  /** list: the <ul> to fill; detailed: with state, where and since when (the alerts section). */
  constructor(list, detailed) {
    this.list = list;
    this.detailed = detailed;
    this.entries = new Map(); // alert key -> its item's elements
  }

  /** Show these alerts, in this order. */
  show(alerts) {
    const keys = new Set(alerts.map((alert) => alert.key));
    for (const key of [...this.entries.keys()]) {
      if (!keys.has(key)) this.entries.delete(key);
    }
    const nodes = alerts.map((alert) => {
      let entry = this.entries.get(alert.key);
      if (!entry) {
        entry = buildItem(this.detailed);
        this.entries.set(alert.key, entry);
      }
      fill(entry, alert);
      return entry.item;
    });
    placeInOrder(this.list, nodes);
  }
}
