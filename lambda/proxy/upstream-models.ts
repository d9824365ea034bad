import type { LimiterConfig } from '../engine/plans';

/**
 * The model id the upstream is called with, for each name clients use: the model's
 * `upstreamModel` (a Bedrock model id, inference profile or ARN; a provider's own name), else the
 * name itself. A name configured on several endpoints takes the first `upstreamModel` given.
 */
export function upstreamModels(config: LimiterConfig): (model: string) => string {
  const ids = new Map<string, string>();
  for (const endpoint of Object.values(config.endpoints))
    for (const [name, price] of Object.entries(endpoint.models)) {
      const id = price.upstreamModel;
      if (id && !ids.has(name)) ids.set(name, id);
    }
  return (model) => ids.get(model) ?? model;
}
