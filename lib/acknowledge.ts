import * as cdk from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

export interface Acknowledgement {
  readonly id: string;
  readonly reason: string;
}

/**
 * Acknowledges policy findings (cdk-nag's AwsSolutions pack, run as a CDK validation plugin) that
 * the construct keeps on purpose, each with its reason. `Validations` arrived in aws-cdk-lib after
 * 2.230.0, the lowest version this package supports (REST response streaming): on versions
 * without it there is no plugin to acknowledge to, and this does nothing.
 */
export function acknowledge(scope: IConstruct, ...acknowledgements: Acknowledgement[]): void {
  const validations = (
    cdk as { Validations?: { of(scope: IConstruct): { acknowledge(...a: Acknowledgement[]): void } } }
  ).Validations;
  validations?.of(scope).acknowledge(...acknowledgements);
}
