/** The Lambda entry point of GET /v1/limits. */
import { createLimitsHandler, limitsDepsFromEnvironment } from './handler';

export const handler = createLimitsHandler(limitsDepsFromEnvironment());
