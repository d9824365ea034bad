/** The automatic brake's Lambda entry: invoked by the spend alarm's Lambda action. */
import { SSMClient } from '@aws-sdk/client-ssm';
import { log, required } from '../runtime/environment';
import { numberSetting } from '../runtime/settings';
import { type AlarmEvent, autoBrake } from './handler';

const deps = {
  ssm: new SSMClient({}),
  parameterName: required('BRAKE_PARAMETER_NAME'),
  brakeForSeconds: numberSetting('brakeForSeconds'),
  log,
};

export const handler = (event: AlarmEvent) => autoBrake(event, deps);
