/** The Lambda entry point (response streaming): dependencies are built once, at init. */
import { createProxyHandler, proxyDepsFromEnvironment } from './handler';

export const handler = createProxyHandler(proxyDepsFromEnvironment());
