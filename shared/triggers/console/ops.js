// Targets (job health, backlog, drain estimate) and poison messages (with requeue).
import { api } from './api.js';
import { announce, confirmAction, el, formatSeconds, replace, showError, statusBadge, timeElement } from './dom.js';

const BACKLOG = ['queued', 'scheduled', 'waiting', 'running'];
const BODY_SHOWN = 300; // characters of a message's text shown in the table

function jobDetail(status) {
  if (status.error) return String(status.error);
  return quarantineText(status.quarantine);
}

function quarantineText(quarantine) {
  if (!quarantine) return '';
  return quarantine.reason ? `quarantined: ${quarantine.reason}` : 'quarantined';
}

function targetRow(target) {
  const status = target.jobStatus || {};
  const backlog = target.backlog || {};
  return el('tr', { 'data-target': target.name },
    el('th', { scope: 'row', text: target.name }),
    el('td', {}, statusBadge(status.code || 'unknown')),
    el('td', { text: jobDetail(status) }),
    BACKLOG.map((name) => el('td', { class: 'num', text: backlog[name] ?? 0 })),
    el('td', { class: 'num', text: formatSeconds(target.estimatedDrainSeconds) }),
    el('td', { class: 'mono wrap', text: target.servicePrincipalId || '' }),
    el('td', { class: 'mono wrap', text: target.jobId || '' }));
}

export async function renderTargets(main) {
  const { data } = await api.targets();
  const targets = (data && data.value) || [];
  const refresh = el('button', { type: 'button', id: 'targets-refresh', text: 'Refresh' });
  refresh.addEventListener('click', () => renderTargets(main).catch((error) => showError(error.message)));
  replace(main,
    el('h2', { text: 'Targets' }),
    el('div', { class: 'toolbar' }, refresh),
    el('div', { class: 'scroll' }, el('table', { id: 'targets-table', class: 'data' },
      el('caption', { text: `${targets.length} configured targets: provisioning job health and backlog` }),
      el('thead', {}, el('tr', {}, ['Target', 'Job status', 'Quarantine or error', ...BACKLOG.map((b) => `Backlog ${b}`),
        'Drain estimate', 'Service principal', 'Job'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, targets.map(targetRow)))));
  announce(`${targets.length} targets shown.`);
}

// --- poison -----------------------------------------------------------------------------------------------------

// Both poison queues are always listed, so an empty one says so instead of vanishing.
const POISON_QUEUES = ['provisioning-requests-poison', 'provisioning-work-poison'];

function messagesByQueue(data) {
  const groups = new Map(POISON_QUEUES.map((name) => [name, []]));
  for (const message of (data && data.value) || []) {
    const queue = message.queue || 'unknown';
    if (!groups.has(queue)) groups.set(queue, []);
    groups.get(queue).push(message);
  }
  return groups;
}

function poisonTable(main, queue, messages) {
  const id = `poison-${queue.replace(/[^a-z0-9-]/gi, '')}`;
  const boxes = [];
  const rows = messages.map((message, index) => {
    const messageId = message.messageId;
    const box = el('input', { type: 'checkbox', id: `${id}-m${index}`, value: messageId });
    boxes.push(box);
    return el('tr', { 'data-message-id': messageId },
      el('td', {}, box, el('label', { for: box.id, class: 'visually-hidden', text: `Select message ${messageId}` })),
      el('th', { scope: 'row', class: 'mono wrap', text: messageId }),
      el('td', { class: 'mono wrap' }, message.requestId
        ? el('a', { href: `#/request/${encodeURIComponent(message.requestId)}`, text: message.requestId }) : ''),
      el('td', { text: message.reason || '' }),
      el('td', { class: 'mono wrap body' }, String(message.body || '').slice(0, BODY_SHOWN)),
      el('td', { class: 'num', text: message.dequeueCount ?? '' }),
      el('td', {}, timeElement(message.insertedAt)));
  });
  const selected = el('button', { type: 'button', text: 'Requeue selected', disabled: !messages.length || undefined });
  const all = el('button', { type: 'button', text: `Requeue all of ${queue}`, disabled: !messages.length || undefined });
  const requeue = async (ids) => {
    const what = ids ? `${ids.length} selected messages` : `every message in ${queue}`;
    if (!(await confirmAction('Requeue poison messages?', `Move ${what} back to be processed again.`, 'Requeue'))) return;
    try {
      const { data } = await api.requeue(queue, ids);
      showError('');
      await renderPoison(main, `${data.requeued} messages requeued from ${queue}.`);
    } catch (error) { showError(error.message); }
  };
  selected.addEventListener('click', () => {
    const ids = boxes.filter((b) => b.checked).map((b) => b.value);
    if (!ids.length) { showError('Select at least one message first.'); return; }
    requeue(ids);
  });
  all.addEventListener('click', () => requeue(undefined));
  return el('section', { 'aria-labelledby': `${id}-h` },
    el('h3', { id: `${id}-h`, text: `${queue} (${messages.length})` }),
    el('div', { class: 'toolbar', role: 'group', 'aria-label': `Requeue from ${queue}` }, selected, all),
    el('div', { class: 'scroll' }, el('table', { class: 'data', id }, el('caption', { class: 'visually-hidden', text: `Messages in ${queue}` }),
      el('thead', {}, el('tr', {}, ['Select', 'Message', 'Request', 'Reason', 'Message text', 'Dequeued', 'Inserted'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows.length ? rows : el('tr', {}, el('td', { colspan: '7', text: 'No messages.' }))))));
}

export async function renderPoison(main, done) {
  const { data } = await api.poison();
  const groups = messagesByQueue(data);
  const total = [...groups.values()].reduce((n, list) => n + list.length, 0);
  replace(main, el('h2', { text: 'Poison messages' }),
    done ? el('p', { class: 'notice', id: 'poison-result', text: done }) : null,
    [...groups.entries()].map(([queue, list]) => poisonTable(main, queue, list)),
    total ? null : el('p', { text: 'No poison messages.' }));
  announce(`${done ? `${done} ` : ''}${total} poison messages shown.`);
}
