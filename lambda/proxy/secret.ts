import {
  GetSecretValueCommand,
  type GetSecretValueCommandOutput,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';

/** The upstream key could not be had (Secrets Manager failed or timed out, or the secret is empty). */
export class UpstreamKeyError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UpstreamKeyError';
  }
}

/**
 * The upstream API key, read from Secrets Manager once and kept in this container for `cacheMs`.
 * The secret holds the key itself, or JSON with an `apiKey` field. It never reaches a log line,
 * an error message or an environment variable.
 */
export class SecretValue {
  private value?: string;
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private pending?: Promise<string>;

  constructor(
    private readonly client: SecretsManagerClient,
    private readonly secretId: string,
    private readonly cacheMs = 300_000,
    private readonly clock: () => number = Date.now,
    /** Deadline of one read, retries included (the proxy uses 2000). */
    private readonly deadlineMs = 10_000,
  ) {}

  async get(): Promise<string> {
    if (this.value !== undefined && this.clock() - this.fetchedAt < this.cacheMs) return this.value;
    this.pending ??= this.fetch().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async fetch(): Promise<string> {
    let out: GetSecretValueCommandOutput;
    try {
      out = await this.client.send(new GetSecretValueCommand({ SecretId: this.secretId }), {
        abortSignal: AbortSignal.timeout(this.deadlineMs),
      });
    } catch (err) {
      // Keep serving a key we already have; without one, fail with the error's class only.
      if (this.value !== undefined) return this.value;
      throw new UpstreamKeyError(`upstream API key secret could not be read (${(err as Error).name})`);
    }
    const text = out.SecretString ?? '';
    let key = text.trim();
    let keyless = false;
    if (key.startsWith('{')) {
      try {
        const parsed = JSON.parse(key) as { apiKey?: unknown };
        // {"apiKey": ""} or {"apiKey": null} says so explicitly: an upstream without keys (vLLM, Ollama).
        keyless = 'apiKey' in parsed && (parsed.apiKey === '' || parsed.apiKey === null);
        key = typeof parsed.apiKey === 'string' ? parsed.apiKey : '';
      } catch {
        key = '';
      }
    }
    if (!key && !keyless)
      throw new UpstreamKeyError(
        'upstream API key secret is empty or has no apiKey field (for an upstream without keys, store {"apiKey": ""})',
      );
    this.value = key;
    this.fetchedAt = this.clock();
    return key;
  }
}
