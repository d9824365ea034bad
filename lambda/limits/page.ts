import { createHash } from 'node:crypto';

/**
 * The usage page: one self-contained HTML document (no external assets, no framework) that shows
 * a key's limits as meters. It is served two ways:
 *  - GET /v1/usage, with no key and no data: a person pastes a key, and the page asks
 *    GET /v1/limits with it in the Authorization header. The key lives in the page's memory only:
 *    never in an address, a cookie or storage.
 *  - GET /v1/limits with `Accept: text/html` and a key in a header: the same page with the
 *    caller's usage already in it (in a JSON script element, which never runs).
 * The Content-Security-Policy allows only this page's own script and style (by hash) and requests
 * to its own origin, so nothing else can run in it or read from it.
 */

const STYLE = `
:root { color-scheme: light dark; --ok: #2e7d32; --low: #b26a00; --limited: #c62828; --shadow: #6a6a6a; --line: #8884; }
body { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; }
main { max-width: 46rem; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1rem; margin: 0; }
h2 code { font-size: .8rem; font-weight: 400; margin-left: .3rem; }
.muted { opacity: .75; }
form { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; margin: 1rem 0; }
input { flex: 1 1 16rem; font: inherit; padding: .4rem .5rem; }
button { font: inherit; padding: .4rem .9rem; cursor: pointer; }
.banner { border: 2px solid var(--limited); border-radius: .5rem; padding: .6rem .8rem; margin: 1rem 0; }
.banner.info { border-color: var(--line); }
.limit { border: 1px solid var(--line); border-radius: .5rem; padding: .75rem .9rem; margin: .75rem 0; }
.limit[data-closest="true"] { border-width: 2px; }
.limit header { display: flex; justify-content: space-between; gap: 1rem; flex-wrap: wrap; }
.tag { font-size: .8rem; border: 1px solid currentColor; border-radius: 1rem; padding: 0 .5rem; white-space: nowrap; }
.bar { height: .8rem; border-radius: .4rem; background: var(--line); overflow: hidden; margin: .5rem 0 .3rem; }
.bar > span { display: block; height: 100%; background: var(--ok); }
.limit[data-state="low"] .bar > span { background: var(--low); }
.limit[data-state="limited"] .bar > span { background: var(--limited); }
.limit[data-state="shadow"] .bar > span { background: var(--shadow); }
.limit[data-state="limited"] .tag.state { color: var(--limited); }
.advice { margin: .4rem 0 0; }
dl { margin: 0; } dt { font-weight: 600; margin-top: .6rem; } dd { margin: 0; }
`;

// Plain ES2020, written without template literals so that it can live in this one.
const SCRIPT = `
'use strict';
var key = null;
var $ = function (id) { return document.getElementById(id); };
var LAYERS = { tenant: 'Your organisation', user: 'You', endpoint: 'This endpoint', global: 'The whole service' };
var ADVICE = {
  tenant: 'Your organisation has used this limit of its plan. Requests resume when it resets; ' +
    'to raise it, ask the people who run this API for a larger plan.',
  user: 'You have used your own share. Wait for the reset; your colleagues are not affected.',
  endpoint: 'This endpoint has used its share. Other endpoints may still answer.',
  global: 'The service as a whole has reached its cap. Wait for the reset.'
};

function amount(n, unit) {
  if (unit === 'usd') return '$' + n.toFixed(n >= 100 ? 0 : n >= 1 ? 2 : 4);
  return Math.round(n).toLocaleString('en-US') + ' ' + unit;
}
function span(s) {
  if (s < 120) return Math.round(s * 10) / 10 + ' s';
  if (s < 7200) return Math.round(s / 60) + ' min';
  if (s >= 172800) return Math.round(s / 86400) + ' days';
  var h = Math.floor(s / 3600);
  var m = Math.round((s - h * 3600) / 60);
  return h + ' h' + (m ? ' ' + m + ' min' : '');
}
function duration(s) { return s <= 0 ? 'now' : 'in ' + span(s); }
function periodText(l) {
  if (!l.calendar) return windowText(l.windowSeconds);
  var per = { day: 'per day', week: 'per week (from Monday)', month: 'per month' }[l.calendar.period];
  return per + ' (' + l.calendar.timeZone + ')';
}
function windowText(s) {
  if (s % 86400 === 0) return s === 86400 ? 'per day' : 'per ' + s / 86400 + ' days';
  if (s % 3600 === 0) return s === 3600 ? 'per hour' : 'per ' + s / 3600 + ' hours';
  if (s % 60 === 0) return s === 60 ? 'per minute' : 'per ' + s / 60 + ' minutes';
  return 'per ' + span(s);
}
function el(tag, attrs, text) {
  var node = document.createElement(tag);
  Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
  if (text !== undefined) node.textContent = text;
  return node;
}
function status(text, kind) {
  var box = $('status');
  box.textContent = text || '';
  box.className = text ? 'banner ' + (kind || 'info') : '';
  box.dataset.kind = text ? (kind || 'info') : '';
}

// A limit every tenant shares: its state only, never what the others spent.
function sharedCard(l, limited) {
  var state = l.state === 'reached' ? 'limited' : l.state === 'near' ? 'low' : 'ok';
  if (state === 'limited' && !l.shadow) limited.push(l);
  var card = el('article', {
    class: 'limit', 'data-code': l.code, 'data-layer': l.layer, 'data-state': state, 'data-shared': 'true',
    'data-reset-seconds': String(l.resetSeconds)
  });
  var head = el('header');
  var title = el('h2', {}, LAYERS[l.layer] + (l.route ? ' ' + l.route : '') + ': ' + l.unit + ' ' + periodText(l) + ' ');
  title.appendChild(el('code', { class: 'muted' }, l.code));
  head.appendChild(title);
  head.appendChild(el('span', { class: 'tag state' }, state === 'limited' ? 'limit reached (429)' : state === 'low' ? 'almost used' : 'ok'));
  card.appendChild(head);
  card.appendChild(el('p', { class: 'figures' }, amount(l.limit, l.unit) + ' shared by every organisation using this service: ' +
    (state === 'limited' ? 'used up; available again ' + duration(l.resetSeconds) + '.' :
      state === 'low' ? 'less than a tenth left.' : 'room left.')));
  if (state === 'limited' && !l.shadow) card.appendChild(el('p', { class: 'advice' }, ADVICE[l.layer]));
  return card;
}

function monthLine(who, f) {
  var denied = Object.keys(f.denied).reduce(function (a, code) { return a + f.denied[code]; }, 0);
  return who + ': ' + f.requests.toLocaleString() + ' requests, ' + f.inputTokens.toLocaleString() + ' tokens in, ' +
    f.outputTokens.toLocaleString() + ' out, $' + f.usd.toFixed(f.usd < 1 ? 4 : 2) +
    (denied ? '; ' + denied.toLocaleString() + ' refused (429)' : '') + '.';
}

function renderMonth(m) {
  var box = $('month');
  box.hidden = !m;
  if (!m) return;
  box.textContent = '';
  box.appendChild(el('h2', {}, 'This month (' + m.month + ', ' + m.timeZone + ')'));
  box.appendChild(el('p', { class: 'figures', 'data-who': 'tenant', 'data-usd': String(m.tenant.usd),
    'data-requests': String(m.tenant.requests) }, monthLine('Your organisation', m.tenant)));
  box.appendChild(el('p', { class: 'figures', 'data-who': 'user', 'data-usd': String(m.user.usd),
    'data-requests': String(m.user.requests) }, monthLine('You', m.user)));
  box.appendChild(el('p', { class: 'muted' },
    'Counted at this service’s prices as each answer is settled (a request still answering is not in it yet).'));
}

function render(usage) {
  var list = $('limits');
  list.textContent = '';
  $('who').textContent = 'Tenant ' + usage.tenant + (usage.user ? ', user ' + usage.user : '') + ', plan ' + usage.plan + '.';
  var brake = usage.brake;
  $('brake').hidden = !(brake && brake.engaged);
  if (brake && brake.engaged) {
    $('brake').textContent = 'Paused by the operators' + (brake.reason ? ': ' + brake.reason : '') +
      '. Every AI request is refused (429, code brake) until they release it' +
      (brake.until ? ' (at the latest ' + new Date(brake.until).toLocaleString() + ')' : '') + '.';
  }
  var limited = [];
  usage.limits.forEach(function (l) {
    if (l.shared) return list.appendChild(sharedCard(l, limited));
    var used = Math.max(0, l.limit - l.remaining);
    var state = l.shadow ? 'shadow' : l.remaining <= 0 ? 'limited' : l.remaining < l.limit * 0.1 ? 'low' : 'ok';
    if (state === 'limited') limited.push(l);
    var card = el('article', {
      class: 'limit', 'data-code': l.code, 'data-layer': l.layer, 'data-state': state, 'data-closest': String(usage.closest === l.code),
      'data-limit': String(l.limit), 'data-remaining': String(l.remaining), 'data-used': String(used), 'data-reset-seconds': String(l.resetSeconds)
    });
    var head = el('header');
    var title = el('h2', {}, LAYERS[l.layer] + (l.route ? ' ' + l.route : '') + ': ' + l.unit + ' ' + periodText(l) + ' ');
    title.appendChild(el('code', { class: 'muted' }, l.code));
    head.appendChild(title);
    head.appendChild(el('span', { class: 'tag state' }, state === 'limited' ? 'limit reached (429)' :
      state === 'shadow' ? 'shadow: not enforced' : state === 'low' ? 'almost used' :
      usage.closest === l.code ? 'closest' : 'ok'));
    card.appendChild(head);
    var bar = el('div', {
      class: 'bar', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': String(l.limit), 'aria-valuenow': String(used),
      'aria-label': l.code
    });
    var fill = el('span');
    fill.style.width = (l.limit > 0 ? Math.min(100, (used / l.limit) * 100) : 100).toFixed(1) + '%';
    bar.appendChild(fill);
    card.appendChild(bar);
    card.appendChild(el('p', { class: 'figures' }, amount(used, l.unit) + ' used of ' + amount(l.limit, l.unit) + ', ' +
      amount(Math.max(0, l.remaining), l.unit) + ' left; ' +
      (l.resetSeconds > 0 ? 'fully available again ' : 'fully available ') + duration(l.resetSeconds) + '.'));
    if (l.slotSeconds) card.appendChild(el('p', { class: 'muted' }, 'Counted in slots of ' + span(l.slotSeconds) +
      ': a request counts for ' + span(l.windowSeconds) + ' to ' + span(l.windowSeconds + l.slotSeconds) +
      ', so the reset can be up to a slot past the window.'));
    if (l.shadow) card.appendChild(el('p', { class: 'advice muted' },
      'A shadow limit: measured and shown, not enforced yet. The operators are trying it before they turn it on.'));
    else if (state === 'limited') card.appendChild(el('p', { class: 'advice' }, ADVICE[l.layer]));
    list.appendChild(card);
  });
  if (limited.length) {
    var latest = Math.max.apply(null, limited.map(function (l) { return l.resetSeconds; }));
    status('Requests are being refused with 429 (' + limited.map(function (l) { return l.code; }).join(', ') +
      '). Fully available again ' + duration(latest) + '; each 429 says in Retry-After when the next request may go.',
      'limited');
  } else {
    status('');
  }
  renderMonth(usage.monthToDate);
  $('updated').textContent = 'Updated ' + new Date().toLocaleTimeString() + '.';
  $('refresh').hidden = false;
}

function show(response, body) {
  if (response.ok) return render(body);
  var message = body && body.error && body.error.message ? body.error.message : 'HTTP ' + response.status;
  if (response.status === 401) return status('That key was not accepted: check it and paste it again.', 'limited');
  if (response.status === 429) return status('Too many usage checks: try again in ' +
    (response.headers.get('retry-after') || 'a few') + ' s. (' + message + ')', 'limited');
  status('The usage could not be read: ' + message, 'limited');
}

function load() {
  if (!key) { location.reload(); return; }
  status('Loading...');
  fetch('limits', {
    headers: { authorization: 'Bearer ' + key, accept: 'application/json' },
    cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer'
  })
    .then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) { show(response, body); });
    })
    .catch(function () { status('The API could not be reached.', 'limited'); });
}

$('key-form').addEventListener('submit', function (event) {
  event.preventDefault();
  key = $('key').value.trim();
  $('key').value = '';
  if (key) load();
});
$('refresh').addEventListener('click', load);
var embedded = $('usage-data');
if (embedded && embedded.textContent.trim()) render(JSON.parse(embedded.textContent));
`;

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** Only this page's own style and script, and requests to its own origin. */
const CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "img-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': CSP,
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
};

/** JSON that cannot end the script element it sits in. */
const embeddable = (data: unknown): string =>
  JSON.stringify(data)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');

/** The page, with the caller's usage in it (GET /v1/limits from a browser) or without (GET /v1/usage). */
export function usagePage(usage?: unknown): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Usage and limits</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>Usage and limits</h1>
<p id="who" class="muted">Paste an API key to see its limits.
The key stays in this page: it goes only to this API, in a header, and is forgotten when the page closes.</p>
<form id="key-form" autocomplete="off">
<label for="key">API key</label>
<input id="key" name="key" type="password" spellcheck="false" autocomplete="off" placeholder="sk-...">
<button type="submit">Show usage</button>
</form>
<div id="brake" class="banner" hidden></div>
<div id="status" role="status" aria-live="polite"></div>
<section id="limits" aria-label="Limits"></section>
<section id="month" aria-label="This month" hidden></section>
<p><button id="refresh" type="button" hidden>Refresh</button> <span id="updated" class="muted"></span></p>
<section aria-labelledby="help-title">
<h2 id="help-title">When a limit is reached</h2>
<dl>
<dt>429 Too Many Requests</dt>
<dd>Wait the seconds the Retry-After header gives, then retry.
Retrying sooner makes the wait longer: requests that keep coming while limited are penalised.</dd>
<dt>Token limits</dt>
<dd>A request reserves its input plus max_tokens until the answer is counted.
A smaller max_tokens lets more requests through; the unused part is given back.</dd>
<dt>429 with code brake</dt>
<dd>The operators have paused the service for everyone. Retry after the time given; this page shows when the pause is on.</dd>
<dt>503 Service Unavailable</dt>
<dd>The limiter cannot decide for a moment. Retry after the time given.</dd>
</dl>
</section>
</main>
<script type="application/json" id="usage-data">${usage === undefined ? '' : embeddable(usage)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}

/**
 * Whether a client asked for the page: `Accept` names text/html with a quality at least that of
 * JSON (browsers), not JSON alone (SDKs, curl's default of any type).
 */
export function prefersHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  const quality = (type: string): number => {
    for (const part of accept.toLowerCase().split(',')) {
      const [media, ...params] = part.trim().split(';');
      if (media?.trim() !== type) continue;
      const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
      return q ? Number(q.slice(2)) || 0 : 1;
    }
    return 0;
  };
  const html = quality('text/html');
  return html > 0 && html >= quality('application/json');
}
