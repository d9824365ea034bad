/**
 * What identifies a limiter configuration: the construct gives its hash to the config publisher
 * (the custom resource's ConfigSha256), which publishes that configuration. No SDK here: the
 * construct imports it at synth.
 */
import { createHash } from 'node:crypto';

export const configSha256 = (config: unknown): string =>
  createHash('sha256').update(JSON.stringify(config)).digest('hex');
