// Calls per minute and throttles over the last hours, drawn as inline SVG from the request list (no library).
// Each finished request counts its calls at the minute it was last updated; throttles come from the summary's
// `throttledAttempts` when the API reports it.
import { api } from './api.js';
import { announce, el, replace, showError, svg } from './dom.js';

const MAX_PAGES = 25;
const WIDTH = 720;
const HEIGHT = 220;
const PAD = { left: 40, right: 24, top: 10, bottom: 30 };

async function summariesSince(since) {
  const found = [];
  let answer = await api.list({ since: since.toISOString(), top: '200' });
  for (let page = 0; ; page += 1) {
    found.push(...((answer.data && answer.data.value) || []));
    const next = answer.data && answer.data.nextLink;
    if (!next || page + 1 >= MAX_PAGES) return { found, truncated: Boolean(next) };
    answer = await api.page(next);
  }
}

export function bucket(summaries, start, minutes) {
  const calls = new Array(minutes).fill(0);
  const failed = new Array(minutes).fill(0);
  const throttles = new Array(minutes).fill(0);
  let throttleReported = false;
  for (const s of summaries) {
    if (!s.updatedAt || s.status === 'pending') continue;
    const index = Math.floor((new Date(s.updatedAt).getTime() - start.getTime()) / 60000);
    if (index < 0 || index >= minutes) continue;
    calls[index] += Number(s.callCount || 0);
    failed[index] += Number((s.counts && s.counts.failed) || 0);
    const throttled = s.throttledAttempts ?? s.throttles;
    if (throttled !== undefined) { throttleReported = true; throttles[index] += Number(throttled || 0); }
  }
  return { calls, failed, throttles, throttleReported };
}

function drawChart(series, start, minutes) {
  const max = Math.max(1, ...series.calls, ...series.throttles);
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const barW = plotW / minutes;
  const y = (v) => PAD.top + plotH - (v / max) * plotH;
  const bars = series.calls.map((v, i) => (v ? svg('rect', { class: 'bar-calls', x: PAD.left + i * barW, y: y(v),
    width: Math.max(1, barW - 0.5), height: PAD.top + plotH - y(v) }) : null));
  const failedBars = series.failed.map((v, i) => (v ? svg('rect', { class: 'bar-failed', x: PAD.left + i * barW, y: y(v),
    width: Math.max(1, barW - 0.5), height: PAD.top + plotH - y(v) }) : null));
  const points = series.throttles.map((v, i) => `${(PAD.left + (i + 0.5) * barW).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const ticks = [];
  for (let i = 0; i <= minutes; i += 60) {
    const at = new Date(start.getTime() + i * 60000);
    ticks.push(svg('text', { class: 'tick', x: PAD.left + i * barW, y: HEIGHT - 10, 'text-anchor': 'middle',
      text: `${String(at.getUTCHours()).padStart(2, '0')}:${String(at.getUTCMinutes()).padStart(2, '0')}` }));
  }
  return svg('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc', id: 'activity-chart' },
    svg('title', { id: 'chart-title', text: 'Calls per minute and throttles' }),
    svg('desc', { id: 'chart-desc', text: `Bars: calls finished per minute (failed in red); line: throttled attempts. Highest minute: ${max}.` }),
    svg('line', { class: 'axis', x1: PAD.left, y1: PAD.top + plotH, x2: WIDTH - PAD.right, y2: PAD.top + plotH }),
    svg('line', { class: 'axis', x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: PAD.top + plotH }),
    svg('text', { class: 'tick', x: PAD.left - 4, y: PAD.top + 10, 'text-anchor': 'end', text: String(max) }),
    svg('text', { class: 'tick', x: PAD.left - 4, y: PAD.top + plotH, 'text-anchor': 'end', text: '0' }),
    bars, failedBars, ticks,
    series.throttleReported ? svg('polyline', { class: 'line-throttles', points, fill: 'none' }) : null);
}

export async function renderActivity(main, hours) {
  const span = Math.min(Math.max(Number(hours) || 3, 1), 24);
  const minutes = span * 60;
  const now = new Date();
  const start = new Date(Math.floor(now.getTime() / 60000) * 60000 - (minutes - 1) * 60000);
  const { found, truncated } = await summariesSince(start);
  const series = bucket(found, start, minutes);
  const rows = series.calls.map((v, i) => [i, v]).filter(([i, v]) => v || series.throttles[i]);
  const hoursSelect = el('select', { id: 'activity-hours', name: 'hours' },
    [1, 3, 6, 12, 24].map((h) => el('option', { value: String(h), text: `${h} h`, selected: h === span })));
  hoursSelect.addEventListener('change', () => { window.location.hash = `#/activity?hours=${hoursSelect.value}`; });
  const total = series.calls.reduce((a, b) => a + b, 0);
  const throttled = series.throttles.reduce((a, b) => a + b, 0);
  replace(main,
    el('h2', { text: 'Activity' }),
    el('div', { class: 'field inline' }, el('label', { for: 'activity-hours', text: 'Period' }), hoursSelect),
    el('figure', { class: 'chart' }, drawChart(series, start, minutes),
      el('figcaption', {}, `${total} calls in ${found.length} requests over the last ${span} h, each request's calls `
        + 'counted in the minute it last changed',
        series.throttleReported ? `, ${throttled} throttled attempts.` : '. Throttles: not reported by this API.',
        truncated ? ` Only the newest ${found.length} requests are counted.` : '')),
    el('details', {}, el('summary', { text: 'The same data as a table' }),
      el('table', { class: 'data', id: 'activity-table' },
        el('thead', {}, el('tr', {}, ['Minute (UTC)', 'Calls', 'Failed', 'Throttled'].map((h) => el('th', { scope: 'col', text: h })))),
        el('tbody', {}, rows.map(([i, v]) => el('tr', {},
          el('th', { scope: 'row', text: new Date(start.getTime() + i * 60000).toISOString().slice(11, 16) }),
          el('td', { class: 'num', text: v }), el('td', { class: 'num', text: series.failed[i] }),
          el('td', { class: 'num', text: series.throttleReported ? series.throttles[i] : '—' })))))));
  showError('');
  announce(`Activity of the last ${span} hours: ${total} calls.`);
}
