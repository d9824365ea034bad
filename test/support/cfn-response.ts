import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';

export interface CfnAnswer {
  readonly method: string;
  readonly contentType: string | undefined;
  readonly body: Record<string, unknown>;
}

/**
 * Stands in for the presigned S3 URL CloudFormation gives a custom resource: records each PUT
 * (method, Content-Type, the JSON body) and answers 200, as S3 does to a valid upload.
 */
export async function startCfnResponseUrl(): Promise<{ url: string; answers: CfnAnswer[]; stop(): Promise<void> }> {
  const answers: CfnAnswer[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      answers.push({
        method: req.method ?? '',
        contentType: req.headers['content-type'],
        body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>,
      });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/cfn-response?X-Amz-Signature=test`,
    answers,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** A custom resource request as CloudFormation sends it to a Lambda function. */
export function cfnEvent(
  requestType: 'Create' | 'Update' | 'Delete',
  responseUrl: string,
  properties: Record<string, string> = {},
): CloudFormationCustomResourceEvent {
  const common = {
    ServiceToken: 'arn:aws:lambda:us-east-1:123456789012:function:publisher',
    ResponseURL: responseUrl,
    StackId: 'arn:aws:cloudformation:us-east-1:123456789012:stack/Llm/1',
    RequestId: `request-${requestType}`,
    LogicalResourceId: 'LimiterPublishedConfig',
    ResourceType: 'Custom::LlmRateLimiterConfig',
    ResourceProperties: { ServiceToken: 'arn:aws:lambda:us-east-1:123456789012:function:publisher', ...properties },
  };
  if (requestType === 'Create') return { ...common, RequestType: 'Create' };
  if (requestType === 'Update')
    return {
      ...common,
      RequestType: 'Update',
      PhysicalResourceId: 'llm-rate-limiter-config',
      OldResourceProperties: common.ResourceProperties,
    };
  return { ...common, RequestType: 'Delete', PhysicalResourceId: 'llm-rate-limiter-config' };
}
