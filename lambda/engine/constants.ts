/**
 * Table layout and key formats. The construct, the store and the test support all read the
 * table's shape from here, so the table that is deployed and the one the tests run on agree.
 */
export const TABLE = {
  partitionKey: 'pk',
  ttlAttribute: 'expiresAt',
} as const;

/** Item kinds share one table; the prefix of the partition key says which kind an item is. */
export const KEY_PREFIX = {
  bucket: 'b#',
  apiKey: 'k#',
  tenant: 't#',
  /** A settlement ledger entry: proves a request was settled, so a retry cannot settle it twice. */
  settlement: 's#',
  /** The limiter configuration the functions run with, published for the CLI (lambda/engine/published-config.ts). */
  config: 'c#',
  /** A budget alert claimed: its threshold fired once this period (lambda/engine/alerts.ts). */
  alert: 'a#',
  /** A model's cooldown at the upstream: until when its rate limit is spent (lambda/proxy/upstream-feedback.ts). */
  upstream: 'u#',
  /** A tenant's use of a shared global limit over the last seconds (lambda/engine/share.ts). */
  share: 'f#',
} as const;

/** Attribute names of bucket items. Short names keep every item within one write unit. */
export const ATTR = {
  /** GCRA theoretical arrival time in whole ticks (units of refill) since LIMITER_EPOCH_MS (token and leaky buckets). */
  tat: 'tatTicks',
  /** Burst credit in whole thousandths of a cost unit, valid as of `creditAt` (whole ticks). */
  credit: 'crMilli',
  creditAt: 'crAtTicks',
  /** Whole ticks ever refunded on the bucket (bounds how far refunds moved other admissions' units). */
  refunded: 'rfTicks',
  /** Sliding window: index of the newest sub-window and the sum of the window's slots. */
  head: 'hd',
  total: 'tot',
  /** Sliding window ring slot prefix: s0, s1, ... */
  slot: 's',
} as const;

/** Items outlive the moment their state stops mattering by a day before TTL may delete them: a margin
 * for debt, which can outlast a bucket's own period, and for writers that set a shorter expiry. */
export const TTL_MARGIN_SECONDS = 86_400;

export const DEFAULT_MAX_ATTEMPTS = 4;
export const DEFAULT_SUB_WINDOWS = 10;

/** Deadline of one DynamoDB operation when none is given (loose, for scripts and busy test machines; the functions use 1 s). */
export const DEFAULT_STORE_DEADLINE_MS = 10_000;

/**
 * Fastest refill (drain) one token or leaky bucket may have. Buckets keep time in whole units of
 * refill since 2025 (lambda/engine/gcra.ts): at this rate those stay below 2^53, exact in both
 * DynamoDB and JavaScript, until about 2050. A global limit is split over its shards, so the rate
 * per shard is what counts.
 */
export const MAX_RATE_PER_SECOND = 10_000_000;

/** Whole ticks per unit of cost for a bucket refilling `rate` units a second: a tick is at most a microsecond. */
export const ticksPerUnit = (rate: number): number => Math.max(1, Math.ceil(1_000_000 / rate));

/** Largest capacity in ticks a bucket may have, so its times stay exact whole numbers (with room for the clock). */
export const MAX_CAPACITY_TICKS = 1e15;

/**
 * The usage ledger's table (lambda/engine/ledger.ts): rows per tenant x user x model x day and
 * writer container, a tenant's rows spread over `shards` partitions by writer so that no
 * partition takes more than its share of a hot tenant's writes. `shards` may only grow: readers
 * query partitions 0 to shards - 1, and a row stays where it was written.
 */
export const LEDGER_TABLE = {
  partitionKey: 'pk',
  sortKey: 'sk',
  ttlAttribute: 'expiresAt',
  shards: 32,
} as const;
