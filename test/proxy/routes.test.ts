import { describe, expect, it } from 'vitest';
import { SERVED_ROUTES } from '../../lambda/engine/plans';
import { ROUTE_KINDS } from '../../lambda/proxy/validate';

describe('the routes the proxy serves', () => {
  it('are the routes a configuration may name, and each has a request kind', () => {
    expect(Object.keys(ROUTE_KINDS).sort()).toEqual([...SERVED_ROUTES].sort());
  });
});
