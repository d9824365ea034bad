/** The Lambda entry point: dependencies are built once, at init, from the environment. */
import { createHandler, depsFromEnvironment } from './handler';

export const handler = createHandler(depsFromEnvironment());
