/**
 * What IAM evaluates when the proxy calls Bedrock for a model id: written from AWS's documentation,
 * apart from the construct's lib/bedrock-models.ts, so that each checks the other. Feed the calls a
 * Bedrock stand-in records (Converse, ConverseStream, CountTokens on a modelId from a region)
 * through bedrockCallsFor and iam-check's `allowed` to judge them against the synthesized role.
 *
 * - Converse is authorized by bedrock:InvokeModel, ConverseStream by
 *   bedrock:InvokeModelWithResponseStream (https://docs.aws.amazon.com/bedrock/latest/userguide/inference-prereq.html);
 *   CountTokens by bedrock:CountTokens, on a foundation-model resource only
 *   (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonbedrock.html).
 * - A geographic profile is evaluated on the profile in the source region and on the foundation
 *   model in the region the request is routed to, with bedrock:InferenceProfileArn set
 *   (https://docs.aws.amazon.com/bedrock/latest/userguide/geographic-cross-region-inference.html#geographic-cris-iam-setup).
 * - A global profile: the profile, the foundation model in the source region, and the region-less
 *   arn:aws:bedrock:::foundation-model/<id> with aws:RequestedRegion "unspecified"
 *   (https://docs.aws.amazon.com/bedrock/latest/userguide/global-cross-region-inference.html#global-cris-iam-setup).
 */

export type BedrockApi = 'Converse' | 'ConverseStream' | 'CountTokens';

/** One evaluation IAM makes for a Bedrock call. */
export interface BedrockCall {
  readonly api: BedrockApi;
  readonly action: string;
  readonly resource: string;
  readonly context: Readonly<Record<string, string>>;
}

const ACTION: Record<BedrockApi, string> = {
  Converse: 'bedrock:InvokeModel',
  ConverseStream: 'bedrock:InvokeModelWithResponseStream',
  CountTokens: 'bedrock:CountTokens',
};

/**
 * Destination regions of a geographic profile, as the user guide's example gives them for the US
 * (source us-east-1); the real list is per model and source region, and AWS extends it.
 */
export const EXAMPLE_DESTINATIONS: Readonly<Record<string, readonly string[]>> = {
  us: ['us-east-1', 'us-east-2', 'us-west-2'],
  eu: ['eu-central-1', 'eu-west-1', 'eu-west-3', 'eu-north-1'],
  apac: ['ap-northeast-1', 'ap-southeast-1', 'ap-southeast-2', 'ap-south-1'],
};

const fm = (region: string, id: string) => `arn:aws:bedrock:${region}::foundation-model/${id}`;

/**
 * Every evaluation a Converse, ConverseStream or CountTokens call on `modelId` makes, from `region`
 * in `account`. A geographic profile's request may be routed to any of `destinations`, each a
 * separate evaluation; CountTokens is asked on a profile's foundation model in the source region.
 */
export function bedrockCallsFor(
  modelId: string,
  region: string,
  account: string,
  destinations?: readonly string[],
): BedrockCall[] {
  const arn = /^arn:aws:bedrock:([^:]+):(\d*):(foundation-model|inference-profile)\/(.+)$/.exec(modelId);
  const [source, owner, type, id] = arn
    ? [arn[1]!, arn[2]!, arn[3]!, arn[4]!]
    : [
        region,
        account,
        /^(us|us-gov|eu|apac|jp|au|global)\./.test(modelId) ? 'inference-profile' : 'foundation-model',
        modelId,
      ];
  const here = { 'aws:RequestedRegion': source };
  if (type === 'foundation-model')
    return (['Converse', 'ConverseStream', 'CountTokens'] as const).map((api) => ({
      api,
      action: ACTION[api],
      resource: fm(source, id),
      context: here,
    }));
  const profileArn = `arn:aws:bedrock:${source}:${owner}:inference-profile/${id}`;
  const geography = id.slice(0, id.indexOf('.'));
  const model = id.slice(id.indexOf('.') + 1);
  const through = { 'bedrock:InferenceProfileArn': profileArn };
  const routed: { resource: string; context: Record<string, string> }[] =
    geography === 'global'
      ? [
          { resource: fm(source, model), context: { ...here, ...through } },
          {
            resource: `arn:aws:bedrock:::foundation-model/${model}`,
            context: { 'aws:RequestedRegion': 'unspecified', ...through },
          },
        ]
      : [...new Set([source, ...(destinations ?? EXAMPLE_DESTINATIONS[geography] ?? [])])].map((r) => ({
          resource: fm(r, model),
          context: { 'aws:RequestedRegion': r, ...through },
        }));
  return [
    ...(['Converse', 'ConverseStream'] as const).flatMap((api) => [
      { api, action: ACTION[api], resource: profileArn, context: here },
      ...routed.map((r) => ({ api, action: ACTION[api], ...r })),
    ]),
    { api: 'CountTokens', action: ACTION.CountTokens, resource: fm(source, model), context: here },
  ];
}
