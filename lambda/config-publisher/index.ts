/** The configuration publisher's Lambda entry: a CloudFormation custom resource (see handler.ts). */
import type { CloudFormationCustomResourceEvent, Context } from 'aws-lambda';
import { handleConfigEvent, publisherDepsFromEnvironment } from './handler';

const deps = publisherDepsFromEnvironment();

export const handler = (event: CloudFormationCustomResourceEvent, context: Context) =>
  handleConfigEvent(event, deps, context);
