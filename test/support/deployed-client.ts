import { type ClientTimeouts, clientConfig } from '../../lambda/runtime/aws-clients';

/** A client configured as the deployed functions configure theirs (aws-clients.ts), pointed at a local endpoint. */
export const deployedClientConfig = (timeouts: ClientTimeouts, endpoint: string) => ({
  ...clientConfig(timeouts),
  endpoint,
  region: 'us-east-1',
  credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
});
