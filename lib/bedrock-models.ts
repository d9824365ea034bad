/**
 * The Bedrock models the proxy may call, and exactly the IAM each needs (docs/bedrock.md, "IAM").
 *
 * - Actions (Service Authorization Reference, Amazon Bedrock,
 *   https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonbedrock.html, and
 *   https://docs.aws.amazon.com/bedrock/latest/userguide/inference-prereq.html): Converse is authorized
 *   by bedrock:InvokeModel, ConverseStream by bedrock:InvokeModelWithResponseStream; CountTokens has an
 *   action of its own, bedrock:CountTokens, on a foundation-model resource only.
 * - A cross-Region inference profile needs the profile in the source region AND the foundation model
 *   in every region it routes to (geographic:
 *   https://docs.aws.amazon.com/bedrock/latest/userguide/geographic-cross-region-inference.html#geographic-cris-iam-setup),
 *   and for a global profile also the region-less `arn:aws:bedrock:::foundation-model/<id>`
 *   (https://docs.aws.amazon.com/bedrock/latest/userguide/global-cross-region-inference.html#global-cris-iam-setup).
 *
 * A profile's foundation model is granted in every region (`*`; for a global profile also the
 * region-less ARN, as AWS writes it) but only through that profile: the statement's condition `bedrock:InferenceProfileArn` equals
 * the profile's ARN. A list of destination regions would break with AccessDenied whenever AWS adds
 * one to a profile (they differ per model and change over time); the condition keeps the grant to
 * calls routed by the one profile, so the role can never call the model directly in another region.
 */
import { type LimiterConfig, upstreamModelOf } from '../lambda/engine/plans';
/** Geography prefixes of system-defined (cross-Region) inference profile ids: us.anthropic.claude-…, global.… */
export const PROFILE_GEOGRAPHIES = ['us', 'us-gov', 'eu', 'apac', 'jp', 'au', 'global'] as const;

/** Where the proxy calls Bedrock from (values or CloudFormation tokens). */
export interface BedrockEnvironment {
  readonly partition: string;
  readonly region: string;
  readonly account: string;
}

export type BedrockModel =
  | { readonly kind: 'foundation-model'; readonly arn: string }
  | {
      readonly kind: 'inference-profile';
      readonly arn: string;
      readonly partition: string;
      /** The profile's source region: where CountTokens runs on its foundation model. */
      readonly region: string;
      /** The id of the foundation model the profile routes to. */
      readonly foundationModel: string;
    };

/** One statement of the proxy's Bedrock policy. */
export interface BedrockStatement {
  readonly actions: readonly string[];
  readonly resources: readonly string[];
  /** Only for calls routed by this inference profile (bedrock:InferenceProfileArn). */
  readonly throughProfile?: string;
}

export const AWS_REGION = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;
// One dot: provider.model (anthropic.claude-3-5-haiku-20241022-v1:0). No IAM wildcard (* ?) may
// pass into a resource, nor anything that is not part of an id.
const MODEL_PART = /^[A-Za-z0-9][A-Za-z0-9_:-]*$/;
const PROVIDER = /^[a-z0-9-]+$/;
const ARN = /^arn:(aws[a-z-]*):bedrock:([^:]*):([^:]*):([a-z-]+)\/(.+)$/;
const INVOKE = ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream'] as const;
const COUNT = 'bedrock:CountTokens';

const FIX =
  'give a foundation model id (anthropic.claude-3-5-haiku-20241022-v1:0), an inference profile id ' +
  `(${PROFILE_GEOGRAPHIES.filter((g) => g !== 'us-gov').join('., ')}. + a foundation model id) or the ARN of either, ` +
  "in upstreamModel when it differs from the client's model name";

const isFoundationModelId = (id: string): boolean => {
  const [provider, model, ...rest] = id.split('.');
  return rest.length === 0 && PROVIDER.test(provider ?? '') && MODEL_PART.test(model ?? '');
};

function foundationModelArn(partition: string, region: string, id: string): string {
  return `arn:${partition}:bedrock:${region}::foundation-model/${id}`;
}

function profile(arn: string, partition: string, region: string, profileId: string): BedrockModel | string {
  const foundationModel = profileId.slice(profileId.indexOf('.') + 1);
  if (!profileId.includes('.') || !isFoundationModelId(foundationModel))
    return `${JSON.stringify(profileId)} names no foundation model after its geography prefix: ${FIX}`;
  return { kind: 'inference-profile', arn, partition, region, foundationModel };
}

/** The model a Bedrock model id names, or the problem with it. */
export function parseBedrockModel(id: string, env: BedrockEnvironment): BedrockModel | string {
  const arn = ARN.exec(id);
  if (arn) {
    const [, partition, region, account, type, name] = arn as unknown as [
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    if (!AWS_REGION.test(region)) return `${JSON.stringify(id)} names no region: ${FIX}`;
    if (type === 'foundation-model' && account === '' && isFoundationModelId(name))
      return { kind: 'foundation-model', arn: id };
    if (type === 'inference-profile' && /^\d{12}$/.test(account)) return profile(id, partition, region, name);
    if (type === 'application-inference-profile')
      return (
        `${JSON.stringify(id)} is an application inference profile, whose model is not known at synth: ` +
        'give the foundation model or system inference profile it copies from'
      );
    return `${JSON.stringify(id)} is not a foundation model or inference profile ARN: ${FIX}`;
  }
  const geography = id.slice(0, id.indexOf('.'));
  if ((PROFILE_GEOGRAPHIES as readonly string[]).includes(geography))
    return profile(
      `arn:${env.partition}:bedrock:${env.region}:${env.account}:inference-profile/${id}`,
      env.partition,
      env.region,
      id,
    );
  if (isFoundationModelId(id))
    return { kind: 'foundation-model', arn: foundationModelArn(env.partition, env.region, id) };
  return `${JSON.stringify(id)} is not a Bedrock model id: ${FIX}`;
}

/** A profile's foundation model in every region. */
export function anyRegionModelArn(partition: string, foundationModel: string): string {
  return foundationModelArn(partition, '*', foundationModel);
}

/** Where a profile routes its foundation model: any region, and for a global profile the region-less ARN AWS documents. */
function routedModelArns(profile: Extract<BedrockModel, { kind: 'inference-profile' }>): string[] {
  const global = /:inference-profile\/global\./.test(profile.arn);
  return [
    anyRegionModelArn(profile.partition, profile.foundationModel),
    ...(global ? [foundationModelArn(profile.partition, '', profile.foundationModel)] : []),
  ];
}

/**
 * The proxy's Bedrock statements for `models`: Converse/ConverseStream and CountTokens on each
 * foundation model; Converse/ConverseStream on each profile, and on its foundation model anywhere
 * only through that profile; CountTokens on a profile's foundation model in its source region
 * (CountTokens takes a foundation model, not a profile).
 */
export function bedrockStatements(models: readonly BedrockModel[]): BedrockStatement[] {
  const unique = (arns: string[]) => [...new Set(arns)];
  const direct = unique(models.flatMap((m) => (m.kind === 'foundation-model' ? [m.arn] : [])));
  const profiles = [
    ...new Map(models.flatMap((m) => (m.kind === 'inference-profile' ? [[m.arn, m] as const] : []))).values(),
  ];
  const counted = unique(
    profiles
      .map((p) => foundationModelArn(p.partition, p.region, p.foundationModel))
      .filter((a) => !direct.includes(a)),
  );
  return [
    ...(direct.length ? [{ actions: [...INVOKE, COUNT], resources: direct }] : []),
    ...(profiles.length ? [{ actions: [...INVOKE], resources: profiles.map((p) => p.arn) }] : []),
    ...(counted.length ? [{ actions: [COUNT], resources: counted }] : []),
    ...profiles.map((p) => ({
      actions: [...INVOKE],
      resources: routedModelArns(p),
      throughProfile: p.arn,
    })),
  ];
}

/** Every model of every endpoint, by the id the upstream is called with (validateProps refused the ids that do not parse). */
export function configuredBedrockModels(config: LimiterConfig, env: BedrockEnvironment): BedrockModel[] {
  return Object.values(config.endpoints).flatMap((endpoint) =>
    Object.entries(endpoint.models).flatMap(([name, price]) => {
      const model = parseBedrockModel(upstreamModelOf(name, price), env);
      return typeof model === 'string' ? [] : [model];
    }),
  );
}
