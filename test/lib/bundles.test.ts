import { describe, expect, it } from 'vitest';
import { loadBundle, synthBundles } from '../support/bundles';

describe('the bundles the construct deploys', () => {
  it('start as Lambda would start them, with the configuration in config.json beside the handler (no LIMITER_CONFIG in the environment) and no AWS SDK but their own', async () => {
    const bundles = synthBundles();
    for (const name of ['authorizer', 'proxy', 'limits'] as const) {
      expect((await loadBundle(bundles[name])).handlerType).toBe('function');
    }
  }, 60_000);
});
