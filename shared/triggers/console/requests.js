// Requests: the filtered, paged list, and one request's detail (calls, advice, provisioning steps, attempts)
// with retry and cancel, polling the status URL while anything may still change.
import { api, ApiError } from './api.js';
import { announce, confirmAction, el, replace, showError, statusBadge, timeElement } from './dom.js';

const REQUEST_STATUSES = ['pending', 'succeeded', 'failed', 'rejected', 'cancelled'];
const SOURCES = ['http', 'queue', 'graph-compatible', 'schedule'];
const FILTERS = ['status', 'target', 'source', 'eventId', 'objectId', 'since', 'until', 'top'];
const POLL_MS = 2000;
// The status body with Graph's provisioning log (the steps' timeline) and each call's earlier rounds.
const DETAIL = 'provisioningLog,attempts';
const TIME_FIELDS = new Set(['notBefore', 'completedAt', 'retriedAt', 'lastAttemptAt']);

function field(id, label, control, hint) {
  return el('div', { class: 'field' }, el('label', { for: id, text: label }), control,
    hint ? el('small', { id: `${id}-hint`, text: hint }) : null);
}

function select(id, name, values, current) {
  return el('select', { id, name },
    el('option', { value: '', text: 'any' }),
    values.map((v) => el('option', { value: v, text: v, selected: v === current })));
}

function input(id, name, current, attrs = {}) {
  return el('input', { id, name, value: current || '', autocomplete: 'off', spellcheck: 'false', ...attrs });
}

function filterForm(filters, onSubmit) {
  const form = el('form', { id: 'filters', class: 'filters', 'aria-label': 'Filter requests' },
    field('f-status', 'Status', select('f-status', 'status', REQUEST_STATUSES, filters.status)),
    field('f-target', 'Target', input('f-target', 'target', filters.target)),
    field('f-source', 'Source', select('f-source', 'source', SOURCES, filters.source)),
    field('f-eventId', 'Event id', input('f-eventId', 'eventId', filters.eventId)),
    field('f-objectId', 'Subject objectId', input('f-objectId', 'objectId', filters.objectId)),
    field('f-since', 'Since (UTC)', input('f-since', 'since', filters.since,
      { placeholder: '2026-12-01T00:00:00Z', 'aria-describedby': 'f-since-hint' }), 'ISO 8601, e.g. 2026-12-01T08:00:00Z'),
    field('f-until', 'Until (UTC)', input('f-until', 'until', filters.until, { placeholder: '2026-12-02T00:00:00Z' })),
    field('f-top', 'Per page', input('f-top', 'top', filters.top, { type: 'number', min: '1', max: '200', placeholder: '50' })),
    el('div', { class: 'field actions' },
      el('button', { type: 'submit', text: 'Show requests' }),
      el('button', { type: 'reset', text: 'Clear filters' })));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    onSubmit(Object.fromEntries(FILTERS.map((name) => [name, String(data.get(name) || '').trim()]).filter(([, v]) => v)));
  });
  form.addEventListener('reset', (event) => {
    event.preventDefault();
    onSubmit({});
  });
  return form;
}

function subjectsOf(summary) {
  return (summary.objectIds || []).filter(Boolean);
}

function countsText(counts) {
  if (!counts) return '';
  return Object.entries(counts).filter(([, n]) => n).map(([name, n]) => `${n} ${name}`).join(', ');
}

function summaryRow(summary) {
  const id = summary.requestId;
  const subjects = subjectsOf(summary);
  return el('tr', { 'data-request-id': id },
    el('th', { scope: 'row' }, el('a', { href: `#/request/${encodeURIComponent(id)}`, class: 'mono', text: id })),
    el('td', {}, statusBadge(summary.status)),
    el('td', { text: summary.target || '' }),
    el('td', { text: summary.source || '' }),
    el('td', { class: 'mono wrap', text: summary.eventId || '' }),
    el('td', { class: 'mono wrap', text: subjects.slice(0, 3).join(' ') + (subjects.length > 3 ? ` +${subjects.length - 3}` : '') }),
    el('td', { class: 'num', text: summary.callCount ?? '' }),
    el('td', { text: countsText(summary.counts) }),
    el('td', {}, timeElement(summary.createdAt)),
    el('td', {}, timeElement(summary.updatedAt)));
}

export async function renderList(main, filters, navigate) {
  const tbody = el('tbody');
  const more = el('button', { type: 'button', id: 'load-more', hidden: true, text: 'Load more' });
  const caption = el('caption', { text: 'Requests, newest first' });
  const table = el('table', { id: 'requests-table', class: 'data' }, caption,
    el('thead', {}, el('tr', {}, ['Request', 'Status', 'Target', 'Source', 'Event id', 'Subjects', 'Calls',
      'Counts', 'Created', 'Updated'].map((h) => el('th', { scope: 'col', text: h })))), tbody);
  replace(main,
    el('h2', { text: 'Requests' }),
    filterForm(filters, (next) => navigate('requests', next)),
    el('div', { class: 'scroll' }, table), more);
  let shown = 0;
  let nextLink = null;
  const show = (data) => {
    const rows = (data && data.value) || [];
    tbody.append(...rows.map(summaryRow));
    shown += rows.length;
    nextLink = data && data.nextLink;
    more.hidden = !nextLink;
    caption.textContent = `Requests, newest first: ${shown} shown${nextLink ? ', more available' : ''}`;
    announce(`${shown} requests shown${nextLink ? '; more available' : ''}.`);
  };
  more.addEventListener('click', async () => {
    if (!nextLink) return;
    more.disabled = true;
    try { show((await api.page(nextLink)).data); showError(''); } catch (error) { showError(error.message); }
    more.disabled = false;
  });
  show((await api.list(filters)).data);
  if (!shown) tbody.append(el('tr', {}, el('td', { colspan: '10', text: 'No request matches these filters.' })));
}

// --- one request ------------------------------------------------------------------------------------------------

function parseLog(text) {
  if (!text) return [];
  let value = text;
  try { value = typeof text === 'string' ? JSON.parse(text) : text; } catch { return []; }
  const entries = Array.isArray(value) ? value : [value];
  return entries.flatMap((entry) => (entry && Array.isArray(entry.provisioningSteps) ? entry.provisioningSteps : []));
}

function timeline(steps) {
  if (!steps.length) return el('p', { class: 'muted', text: 'No provisioning steps recorded for this call.' });
  return el('ol', { class: 'timeline' }, steps.map((step) => el('li', { class: `step step-${String(step.status || '').toLowerCase()}` },
    el('span', { class: 'step-status', text: step.status || '' }),
    el('strong', { text: ` ${step.name || step.provisioningStepType || 'step'} ` }),
    step.timestamp ? timeElement(step.timestamp) : null,
    step.description ? el('p', { text: step.description }) : null)));
}

function attemptHistory(call) {
  const history = call.attemptHistory;
  if (!history || !history.length) return null;
  const columns = [['attemptNumber', 'Round'], ['status', 'Status'], ['result', 'Graph result'], ['errorCode', 'Error code'],
    ['errorMessage', 'Error'], ['httpStatus', 'HTTP'], ['attempts', 'Attempts'], ['completedAt', 'Completed'],
    ['retriedAt', 'Retried'], ['retriedBy', 'Retried by']]
    .filter(([name]) => name === 'attemptNumber' || history.some((attempt) => attempt[name] !== undefined && attempt[name] !== null));
  return el('table', { class: 'data attempts' },
    el('caption', { text: `Earlier rounds of this call (${history.length}), oldest first` }),
    el('thead', {}, el('tr', {}, columns.map(([, label]) => el('th', { scope: 'col', text: label })))),
    el('tbody', {}, history.map((attempt, index) => el('tr', {}, columns.map(([name]) => el('td', {},
      name === 'attemptNumber' ? String(attempt.attemptNumber ?? index + 1)
        : TIME_FIELDS.has(name) ? timeElement(attempt[name]) : String(attempt[name] ?? '')))))));
}

const CALL_FIELDS = [
  ['result', 'Graph result'], ['action', 'Action'], ['errorCode', 'Error code'], ['errorMessage', 'Error'],
  ['failedStep', 'Failed step'], ['httpStatus', 'HTTP status'], ['attempts', 'Attempts'],
  ['reportableIdentifier', 'Identifier'], ['targetObjectId', 'Target object'], ['graphRequestId', 'Graph request id'],
  ['notBefore', 'Not before'], ['completedAt', 'Completed'],
];

function callSection(call) {
  const subject = call.subject || {};
  const facts = el('dl', { class: 'facts' }, CALL_FIELDS.filter(([name]) => call[name] !== undefined && !Array.isArray(call[name]))
    .map(([name, label]) => [el('dt', { text: label }),
      el('dd', {}, TIME_FIELDS.has(name) ? timeElement(call[name]) : String(call[name]))]));
  return el('section', { class: 'call', 'data-call-id': call.callId, 'aria-labelledby': `h-${call.callId}` },
    el('h4', { id: `h-${call.callId}` }, `${call.callId} · ${subject.objectTypeName || ''} `,
      el('span', { class: 'mono', text: subject.objectId || subject.userPrincipalName || '' }), ' ', statusBadge(call.status)),
    call.recommendedAction ? el('p', { class: 'advice' }, el('strong', { text: 'Advice: ' }), call.recommendedAction) : null,
    facts,
    el('h5', { text: 'Provisioning steps' }),
    timeline(parseLog(call.provisioningLog)),
    attemptHistory(call));
}

const PENDING = new Set(['pending', 'queued', 'scheduled', 'waiting', 'running']);

export class RequestDetail {
  constructor(main, requestId, isCurrent) {
    this.main = main;
    this.id = requestId;
    this.isCurrent = isCurrent;
    this.lastStatus = null;
  }

  async open() {
    const { data } = await api.request(this.id, DETAIL);
    this.render(data);
    if (PENDING.has(data.status)) this.poll(null);
  }

  render(request) {
    const counts = request.counts || {};
    const canRetry = request.status === 'failed' || (counts.failed || 0) > 0
      || Boolean(request.links && request.links.retry);
    const canCancel = PENDING.has(request.status);
    const retry = el('button', { type: 'button', id: 'retry', disabled: !canRetry || undefined, text: 'Retry failed calls' });
    const cancel = el('button', { type: 'button', id: 'cancel', class: 'danger', disabled: !canCancel || undefined, text: 'Cancel request' });
    const refresh = el('button', { type: 'button', id: 'refresh', text: 'Refresh' });
    retry.addEventListener('click', () => this.retry());
    cancel.addEventListener('click', () => this.cancel());
    refresh.addEventListener('click', () => this.reload());
    const facts = [['Status', statusBadge(request.status)], ['Target', request.target], ['Source', request.source],
      ['Event id', request.eventId], ['Requested by', request.requestedBy], ['Retried by', request.retriedBy],
      ['Cancelled by', request.cancelledBy], ['Created', timeElement(request.createdAt)], ['Updated', timeElement(request.updatedAt)],
      ['Counts', countsText(counts)], ['Reason', request.reason]].filter(([, v]) => v !== undefined && v !== null && v !== '');
    const focused = document.activeElement && document.activeElement.id;
    replace(this.main,
      el('p', {}, el('a', { href: '#/requests', text: '← All requests' })),
      el('h2', {}, 'Request ', el('span', { class: 'mono', id: 'request-id', text: request.requestId })),
      el('dl', { class: 'facts', id: 'request-facts' }, facts.map(([k, v]) => [el('dt', { text: k }), el('dd', { 'data-fact': k }, v)])),
      el('div', { class: 'toolbar', role: 'group', 'aria-label': 'Actions on this request' }, retry, cancel, refresh),
      el('h3', { text: `Calls (${(request.calls || []).length})` }),
      (request.calls || []).map(callSection));
    // a re-render must not throw keyboard users back to the top: focus returns to the control it was on
    const again = focused && document.getElementById(focused);
    if (again && !again.disabled) again.focus();
    else if (focused) this.main.focus();
    if (this.lastStatus && this.lastStatus !== request.status) announce(`Request ${request.requestId} is now ${request.status}.`);
    this.lastStatus = request.status;
  }

  async reload() {
    try {
      const { data } = await api.request(this.id, DETAIL);
      if (this.isCurrent()) this.render(data);
      showError('');
    } catch (error) { showError(error.message); }
  }

  async poll(location) {
    const url = location || `/api/provision/${encodeURIComponent(this.id)}`;
    while (this.isCurrent()) {
      await new Promise((resolve) => { window.setTimeout(resolve, POLL_MS); });
      if (!this.isCurrent()) return;
      let answer;
      try { answer = await api.poll(url); } catch (error) { showError(error.message); return; }
      if (answer.status !== 202) break;
      if (answer.data) this.render(answer.data);
    }
    await this.reload();
  }

  async retry() {
    const ok = await confirmAction('Retry this request?',
      `The failed calls of request ${this.id} get new attempts, paced like any other call. Earlier attempts stay readable.`,
      'Retry');
    if (!ok) return;
    try {
      const answer = await api.retry(this.id);
      announce(`Retry of request ${this.id} accepted.`);
      showError('');
      await this.reload();
      this.poll(answer.location);
    } catch (error) { showError(actionError('retry', error)); }
  }

  async cancel() {
    const ok = await confirmAction('Cancel this request?',
      `Calls of request ${this.id} that have not started are cancelled and never sent; a running call finishes.`,
      'Cancel request');
    if (!ok) return;
    try {
      const { data } = await api.cancel(this.id);
      announce(`Request ${this.id} cancelled.`);
      showError('');
      if (data && data.requestId) this.render(data);
      await this.reload();
    } catch (error) { showError(actionError('cancel', error)); }
  }
}

function actionError(action, error) {
  if (error instanceof ApiError && error.status === 409) return `Nothing to ${action}: ${error.message}`;
  return error.message;
}
