import { existsSync, mkdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { putApiKey } from '../../lambda/runtime/directory';
import { DEFAULT_SUB_WINDOWS } from '../../lambda/engine/constants';
import { slidingWindow, tokenBucket } from '../../lambda/engine/limits';
import { parseConfig, requests, requestsPerDay, tokens, usdPerMonth } from '../../lambda/engine/plans';
import { localClient } from '../../local/dynamodb-local';
import { cliTargets, type LocalStack, startLocal } from '../../local/start';
import { main as cli } from '../../lib/cli/main';

/**
 * The usage page in a real browser: Debian's Chromium, driven by playwright-core (no browser
 * download). `.ci/run` installs Chromium when it is missing; CHROMIUM_PATH points elsewhere.
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Kept after the run: what the page looked like with a limit reached and the brake on. */
const SCREENSHOT = path.join(__dirname, '..', '..', 'test-results', 'usage-page.png');
const CHAT = '/v1/chat/completions';

const config = parseConfig(
  JSON.parse(
    JSON.stringify({
      plans: {
        team: {
          // Windows long and refills slow enough that every figure is exact while the test runs.
          tenant: [
            tokens(tokenBucket(100_000, 0.001), { name: 'budget' }),
            usdPerMonth(50, { timeZone: 'Europe/Paris' }),
          ],
          user: [
            requests(slidingWindow(3, '1 h', 6)),
            requests(slidingWindow(2, '1 h', 6), { name: 'trial', shadow: true }),
          ],
          outputReservation: 100,
        },
      },
      endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
      // Each test's key reads its usage a few times; the last one spends the budget on purpose.
      limitsRequestsPerMinute: 6,
      // Shared by every tenant: shown as its state, never as the others' spend.
      global: { limits: [requestsPerDay(1_000_000)], shards: 1 },
    }),
  ),
);

interface LimitJson {
  code: string;
  layer: string;
  limit: number;
  remaining: number;
  resetSeconds: number;
  shadow: boolean;
  shared?: true;
  state?: string;
}

let local: LocalStack;
let browser: Browser;
beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`Chromium is not at ${CHROMIUM}: apt-get install chromium (.ci/run does), or set CHROMIUM_PATH`);
  local = await startLocal({
    port: 0,
    config,
    brakeCacheTtlSeconds: 1,
    apiKey: 'sk-lrl-local-usage-page-0000001',
    summary: () => {},
  });
  // As root in a closed network: no sandbox, and none of Chromium's own background connections.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}, 90_000);
afterAll(async () => {
  await browser?.close();
  await local?.stop();
});

const cliArgs = () => cliTargets(local);
const quiet = { out: () => {}, err: () => {} };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function newKey(user: string): Promise<string> {
  const key = `sk-lrl-usage-page-${user}-${Math.random().toString(36).slice(2, 12)}`;
  await putApiKey(localClient(local.dynamoEndpoint), local.tableName, key, {
    tenant: local.tenant,
    user,
    status: 'active',
  });
  return key;
}

const chat = (key: string) =>
  fetch(`${local.baseUrl}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 20 }),
  });

async function limitsJson(key: string): Promise<{
  limits: LimitJson[];
  closest: string;
  brake?: { engaged: boolean; reason?: string };
  monthToDate?: {
    month: string;
    timeZone: string;
    user: { requests: number; usd: number };
    tenant: { requests: number };
  };
}> {
  const response = await fetch(`${local.baseUrl}/limits`, { headers: { authorization: `Bearer ${key}` } });
  expect(response.status).toBe(200);
  return response.json() as Promise<{ limits: LimitJson[]; closest: string }>;
}

/** A page that records what it asked for and any policy violation or script error. */
async function openPage(): Promise<{ page: Page; requests: string[]; problems: string[] }> {
  const page = await browser.newPage();
  const requests: string[] = [];
  const problems: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  return { page, requests, problems };
}

/** What each meter on the page says (limits of this tenant's own; shared ones have no meter): its data and its visible text. */
const meters = (page: Page) =>
  page.$$eval('article.limit:not([data-shared])', (cards) =>
    cards.map((c) => ({
      code: c.getAttribute('data-code'),
      state: c.getAttribute('data-state'),
      limit: Number(c.getAttribute('data-limit')),
      remaining: Number(c.getAttribute('data-remaining')),
      used: Number(c.getAttribute('data-used')),
      reset: Number(c.getAttribute('data-reset-seconds')),
      meterNow: Number(c.querySelector('[role="meter"]')?.getAttribute('aria-valuenow')),
      text: c.textContent ?? '',
    })),
  );

describe('the usage page, in Chromium', () => {
  it(
    'asks for a key, shows each limit as a meter that matches GET /v1/limits, marks shadow limits, ' +
      'and keeps the key out of every address',
    async () => {
      const key = await newKey('ann');
      expect((await chat(key)).status).toBe(200);
      const { page, requests, problems } = await openPage();
      const response = await page.goto(`${local.baseUrl}/usage`);
      expect(response?.status()).toBe(200);
      expect(response?.headers()['content-security-policy']).toContain("default-src 'none'");
      expect(await page.$$('article.limit')).toHaveLength(0);

      await page.fill('#key', key);
      const asked = Date.now();
      await page.click('button[type="submit"]');
      await page.waitForSelector('article.limit');
      const shown = await meters(page);
      const json = await limitsJson(key);
      // The page's read and this one are this far apart: a reset counts down by as much in between.
      const apart = Math.ceil((Date.now() - asked) / 1000);
      const own = json.limits.filter((l) => !l.shared);

      expect(shown.map((m) => m.code)).toEqual(own.map((l) => l.code));
      for (const [i, l] of own.entries()) {
        expect(shown[i]).toMatchObject({
          limit: l.limit,
          remaining: l.remaining,
          used: l.limit - l.remaining,
          meterNow: l.limit - l.remaining,
        });
        // Read a moment apart: a reset counts down between the page's read and this one.
        expect(Math.abs(shown[i]!.reset - l.resetSeconds), l.code).toBeLessThanOrEqual(apart);
      }
      // One request of three made: the text a person reads says so.
      const user = shown.find((m) => m.code === 'user_requests_per_hour')!;
      expect(user.state).toBe('ok');
      expect(user.text).toContain('1 requests used of 3 requests, 2 requests left; fully available again in ');
      // An hour in 6 slots: the request counts for 60 to 70 minutes, and the page says why.
      expect(Number(/again in (\d+) min/.exec(user.text)?.[1])).toBeGreaterThanOrEqual(60);
      expect(Number(/again in (\d+) min/.exec(user.text)?.[1])).toBeLessThanOrEqual(70);
      expect(user.text).toContain('Counted in slots of 10 min: a request counts for 60 min to 70 min');
      // The global limit every tenant shares: its state, and no figure of what the others spent.
      expect(json.limits.find((l) => l.layer === 'global')).toEqual(
        expect.objectContaining({ code: 'global_requests_per_day', shared: true, state: 'ok', resetSeconds: 0 }),
      );
      expect(json.limits.find((l) => l.layer === 'global')).not.toHaveProperty('remaining');
      expect(await page.textContent('article[data-shared="true"]')).toContain(
        '1,000,000 requests shared by every organisation using this service: room left.',
      );
      // A calendar budget names its period and zone.
      expect(await page.textContent('article[data-code="tenant_usd_per_calendar_month"] h2')).toContain(
        'usd per month (Europe/Paris)',
      );
      const trial = shown.find((m) => m.code === 'user_requests_trial')!;
      expect(trial.state).toBe('shadow');
      expect(trial.text).toContain('shadow: not enforced');
      expect(await page.textContent('#who')).toContain(`Tenant ${local.tenant}, user ann, plan team`);
      // The month so far from the usage ledger, in the zone of the plan's calendar budget: the one
      // request ann made, as GET /v1/limits gives it.
      const month = json.monthToDate!;
      expect(month).toMatchObject({ timeZone: 'Europe/Paris', user: { requests: 1 } });
      expect(month.user.usd).toBeGreaterThan(0);
      expect(await page.textContent('#month h2')).toBe(`This month (${month.month}, Europe/Paris)`);
      expect(await page.getAttribute('#month p[data-who="user"]', 'data-usd')).toBe(String(month.user.usd));
      expect(await page.textContent('#month p[data-who="user"]')).toMatch(
        /^You: 1 requests, \d+ tokens in, \d+ out, \$0\.\d{4}\.$/,
      );
      expect(await page.getAttribute('#month p[data-who="tenant"]', 'data-requests')).toBe(
        String(month.tenant.requests),
      );

      // The key went in a header only: not in the page's address, nor any address it asked for; the field is emptied.
      expect(page.url()).toBe(`${local.baseUrl}/usage`);
      expect(requests.some((u) => u.includes(key))).toBe(false);
      expect(await page.inputValue('#key')).toBe('');
      // Nothing from anywhere else, and the policy lets the page's own script and style run.
      expect(requests.every((u) => u.startsWith(local.url))).toBe(true);
      expect(problems).toEqual([]);
      await page.close();
    },
  );

  it('shows a reached limit as a 429 state with what to do, and the brake when the operators pull it; the screenshot is kept', async () => {
    const key = await newKey('bob');
    for (let i = 0; i < 3; i++) expect((await chat(key)).status).toBe(200);
    const refused = await chat(key);
    const refusedAt = Date.now();
    expect(refused.status).toBe(429);
    expect(await cli(['brake', 'on', '--reason', 'usage page drill', ...cliArgs()], quiet)).toBe(0);
    await sleep(1_500); // the mirror copies the change; the brake cache in this run is 1 s

    const { page, problems } = await openPage();
    await page.goto(`${local.baseUrl}/usage`);
    await page.fill('#key', key);
    await page.click('button[type="submit"]');
    await page.waitForSelector('article.limit[data-state="limited"]');
    const user = (await meters(page)).find((m) => m.code === 'user_requests_per_hour')!;
    expect(user).toMatchObject({ state: 'limited', remaining: 0, used: 3 });
    expect(user.text).toContain('limit reached (429)');
    expect(user.text).toContain('You have used your own share');
    // The reset the page shows is the wait the 429 gave, less the time it took to get here (whole seconds, rounded up).
    const elapsed = (Date.now() - refusedAt) / 1000;
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(user.reset).toBeLessThanOrEqual(retryAfter + 1);
    expect(user.reset).toBeGreaterThanOrEqual(retryAfter - Math.ceil(elapsed) - 1);
    expect(await page.getAttribute('#status', 'data-kind')).toBe('limited');
    expect(await page.textContent('#status')).toContain('refused with 429 (user_requests_per_hour)');
    expect(await page.isVisible('#brake')).toBe(true);
    expect(await page.textContent('#brake')).toContain('Paused by the operators: usage page drill');

    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(statSync(SCREENSHOT).size).toBeGreaterThan(10_000);

    // Released: the page says so on its next refresh.
    expect(await cli(['brake', 'off', ...cliArgs()], quiet)).toBe(0);
    await sleep(1_500);
    await page.click('#refresh');
    await page.waitForSelector('#brake', { state: 'hidden' });
    expect(problems).toEqual([]);
    await page.close();
  });

  it('renders GET /v1/limits as the page for a browser that sends the key in a header, and as JSON for everyone else', async () => {
    const key = await newKey('cy');
    const { page, problems } = await openPage();
    await page.setExtraHTTPHeaders({ authorization: `Bearer ${key}` });
    const response = await page.goto(`${local.baseUrl}/limits`);
    expect(response?.headers()['content-type']).toContain('text/html');
    // The data came with the page: the meters are there without a key being pasted.
    const shown = await meters(page);
    const json = (await limitsJson(key)).limits;
    expect(shown.map((m) => [m.code, m.remaining])).toEqual(
      json.filter((l) => !l.shared).map((l) => [l.code, l.remaining]),
    );
    expect(
      await page.$$eval('article[data-shared="true"]', (cards) => cards.map((c) => c.getAttribute('data-code'))),
    ).toEqual(json.filter((l) => l.shared).map((l) => l.code));
    expect(problems).toEqual([]);
    await page.close();
    // An SDK (Accept: application/json) or curl (*/*) still gets JSON.
    for (const accept of ['application/json', '*/*', 'application/json, text/html;q=0.5']) {
      const plain = await fetch(`${local.baseUrl}/limits`, { headers: { authorization: `Bearer ${key}`, accept } });
      expect(plain.headers.get('content-type'), accept).toBe('application/json');
    }
  });

  it('says when the usage reads themselves are limited, with the wait the 429 gave', async () => {
    const key = await newKey('dee');
    const firstRead = Date.now();
    for (let i = 0; i < 6; i++) await limitsJson(key);
    const lastRead = Date.now();
    const { page, problems } = await openPage();
    await page.goto(`${local.baseUrl}/usage`);
    await page.fill('#key', key);
    // The 429 as the browser received it, off the wire: the source the page's figure must come from.
    const refusal = page.waitForResponse((r) => r.url() === `${local.baseUrl}/limits` && r.status() === 429);
    const clickedAt = Date.now();
    await page.click('button[type="submit"]');
    const retryAfter = Number((await refusal).headers()['retry-after']);
    const refusedAt = Date.now();
    await page.waitForSelector('#status[data-kind="limited"]');
    const said = (await page.textContent('#status')) ?? '';
    const wait = new RegExp(
      [
        /^Too many usage checks: try again in (\d+) s\. /.source,
        /\(Too many requests for your limits \(user_requests_limits_per_minute\): retry after (\d+) s\.\)$/.source,
      ].join(''),
    ).exec(said);
    expect(wait, said).not.toBeNull();
    // The wait the page gives is the 429's own Retry-After header, and the API's message says the same.
    expect(Number(wait![1])).toBe(retryAfter);
    expect(wait![1]).toBe(wait![2]);
    // And that wait is what the limit means, from when the reads were made: six a minute, counted in slots of a
    // tenth of it. A seventh is not allowed within a minute of the first (refused at refusedAt at the latest), and
    // the last counts for at most a minute and a slot (refused after clickedAt).
    const slotSeconds = 60 / DEFAULT_SUB_WINDOWS;
    expect(retryAfter).toBeGreaterThanOrEqual(Math.floor(60 - (refusedAt - firstRead) / 1000));
    expect(retryAfter).toBeLessThanOrEqual(Math.ceil(60 + slotSeconds - (clickedAt - lastRead) / 1000));
    expect(retryAfter).toBeGreaterThanOrEqual(55);
    expect(retryAfter).toBeLessThanOrEqual(67);
    expect(problems.filter((p) => !p.includes('429'))).toEqual([]);
    await page.close();
  });

  it('tells a person whose key is refused, without a stack trace or the key', async () => {
    const { page, problems } = await openPage();
    await page.goto(`${local.baseUrl}/usage`);
    await page.fill('#key', 'sk-lrl-not-a-real-key-000000000000');
    await page.click('button[type="submit"]');
    await page.waitForSelector('#status[data-kind="limited"]');
    expect(await page.textContent('#status')).toBe('That key was not accepted: check it and paste it again.');
    expect(await page.$$('article.limit')).toHaveLength(0);
    // The 401 itself is the browser's to log; nothing else went wrong.
    expect(problems.filter((p) => !p.includes('401'))).toEqual([]);
    await page.close();
  });
});
