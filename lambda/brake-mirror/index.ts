/** The brake mirror's Lambda entry: invoked by EventBridge on a change of the brake parameter, and once a minute. */
import { mirrorBrake, mirrorDepsFromEnvironment } from './handler';

const deps = mirrorDepsFromEnvironment();

export const handler = () => mirrorBrake(deps);
