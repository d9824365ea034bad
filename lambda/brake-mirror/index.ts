/** The brake mirror's Lambda entry: invoked by EventBridge on a change of the brake parameter, and once a minute. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { CLIENT_TIMEOUTS, clientConfig } from '../runtime/aws-clients';
import { log, required } from '../runtime/environment';
import { mirrorBrake } from './handler';

const deps = {
  ssm: new SSMClient(clientConfig(CLIENT_TIMEOUTS.ssm)),
  doc: DynamoDBDocumentClient.from(new DynamoDBClient(clientConfig(CLIENT_TIMEOUTS.dynamodb))),
  tableName: required('TABLE_NAME'),
  parameterName: required('BRAKE_PARAMETER_NAME'),
  log,
};

export const handler = () => mirrorBrake(deps);
