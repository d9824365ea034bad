#!/usr/bin/env node
/** Example CDK app. Until the full construct lands it deploys the limiter's table only. */
import { App, Stack } from 'aws-cdk-lib';
import { LimitsTable } from '../lib';

const app = new App();
const env = app.node.tryGetContext('env') ?? 'dev';
const stack = new Stack(app, `LlmRateLimiter-${env}`);
new LimitsTable(stack, 'Limits');
app.synth();
