/**
 * The upstream the proxy calls, one of three kinds: an OpenAI-compatible API, an Anthropic-compatible
 * API (both with a key kept in Secrets Manager), or Amazon Bedrock, called with the proxy role's
 * own credentials (no key, no secret).
 */
import { Token } from 'aws-cdk-lib';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { UpstreamKind } from '../lambda/gateway/api';
import { AWS_REGION, parseBedrockModel } from './bedrock-models';

/** An upstream called with a key: {@link Upstream.openAiCompatible} and {@link Upstream.anthropic}. */
export interface KeyedUpstreamOptions {
  /** The API's base URL, e.g. https://api.openai.com/v1 or https://api.anthropic.com/v1. */
  readonly baseUrl: string;
  /**
   * The secret holding the key (the key itself, or JSON {"apiKey": "..."}). Read by the proxy only.
   * Import it by name (`Secret.fromSecretNameV2`), partial or complete ARN; a secret encrypted with a
   * customer managed key needs that key too (`Secret.fromSecretAttributes({ secretCompleteArn, encryptionKey })`).
   */
  readonly apiKeySecret: ISecret;
}

/** Amazon Bedrock as the upstream: {@link Upstream.bedrock}. */
export interface BedrockUpstreamOptions {
  /**
   * The region the proxy calls Bedrock in: the source region of the inference profiles it uses.
   * @default - the stack's region
   */
  readonly region?: string;
}

/**
 * Where the proxy sends requests. Each configured model is called by its `upstreamModel` (the
 * client-facing name when unset).
 *
 * @example
 * Upstream.openAiCompatible({ baseUrl: 'https://api.openai.com/v1', apiKeySecret })
 * Upstream.anthropic({ baseUrl: 'https://api.anthropic.com/v1', apiKeySecret })
 * Upstream.bedrock() // signed with the proxy's role, in the stack's region
 */
export class Upstream {
  /**
   * An OpenAI-compatible API (OpenAI, Azure OpenAI, vLLM, Ollama, LiteLLM), its key sent as a Bearer token.
   * @param options - its base URL and the secret with its key
   */
  static openAiCompatible(options: KeyedUpstreamOptions): Upstream {
    return new Upstream('openai', options);
  }

  /**
   * An Anthropic-compatible Messages API, its key sent as x-api-key.
   * @param options - its base URL and the secret with its key
   */
  static anthropic(options: KeyedUpstreamOptions): Upstream {
    return new Upstream('anthropic', options);
  }

  /**
   * Amazon Bedrock (Converse and ConverseStream), signed with the proxy role's credentials: no key is
   * stored anywhere. The role may invoke exactly the configured models (docs/bedrock.md).
   * @param options - the region
   */
  static bedrock(options: BedrockUpstreamOptions = {}): Upstream {
    return new Upstream('bedrock', options);
  }

  /** The base URL of a keyed upstream. */
  readonly baseUrl?: string;
  /** The secret with a keyed upstream's key. */
  readonly apiKeySecret?: ISecret;
  /** Bedrock's region, when one was given. */
  readonly region?: string;

  private constructor(
    /** Which kind of upstream this is. */
    readonly kind: UpstreamKind,
    options: Partial<KeyedUpstreamOptions> & BedrockUpstreamOptions,
  ) {
    if (options.baseUrl !== undefined) this.baseUrl = options.baseUrl;
    if (options.apiKeySecret !== undefined) this.apiKeySecret = options.apiKeySecret;
    if (options.region !== undefined) this.region = options.region;
  }
}

/** The props that name the upstream. */
export interface UpstreamProps {
  readonly upstream?: Upstream;
  readonly upstreamBaseUrl?: string;
  readonly upstreamApiKeySecret?: ISecret;
  readonly endpoints?: Readonly<Record<string, { readonly models?: Readonly<Record<string, unknown>> }>>;
}

/** The upstream the props give: `upstream`, or the OpenAI-compatible shorthand (upstreamProblems found none). */
export function upstreamOf(props: UpstreamProps): Upstream {
  if (props.upstream) return props.upstream;
  if (props.upstreamBaseUrl === undefined || props.upstreamApiKeySecret === undefined)
    throw new Error('no upstream: validate the props first');
  return Upstream.openAiCompatible({ baseUrl: props.upstreamBaseUrl, apiKeySecret: props.upstreamApiKeySecret });
}

const GIVE_ONE =
  'give upstream (Upstream.openAiCompatible({ baseUrl, apiKeySecret }), Upstream.anthropic({ baseUrl, apiKeySecret }) ' +
  'or Upstream.bedrock()), or upstreamBaseUrl with upstreamApiKeySecret (the OpenAI-compatible shorthand)';

/** Problems with the upstream props, each naming the prop, the value and the fix. */
export function upstreamProblems(props: UpstreamProps): string[] {
  const shorthand = props.upstreamBaseUrl !== undefined || props.upstreamApiKeySecret !== undefined;
  if (props.upstream && shorthand)
    return [`upstream and upstreamBaseUrl/upstreamApiKeySecret are both given; ${GIVE_ONE}, not both`];
  if (!props.upstream && !shorthand) return [`no upstream is given; ${GIVE_ONE}`];
  if (!props.upstream) {
    const missing =
      props.upstreamBaseUrl === undefined
        ? 'upstreamBaseUrl'
        : props.upstreamApiKeySecret === undefined
          ? 'upstreamApiKeySecret'
          : undefined;
    if (missing)
      return [
        `${missing} is missing; the OpenAI-compatible shorthand needs upstreamBaseUrl and upstreamApiKeySecret (or give upstream)`,
      ];
    return baseUrlProblems('upstreamBaseUrl', props.upstreamBaseUrl);
  }
  const upstream = props.upstream;
  if (upstream.kind !== 'bedrock') {
    const problems = baseUrlProblems('upstream.baseUrl', upstream.baseUrl);
    if (!upstream.apiKeySecret)
      problems.push(`upstream.apiKeySecret is missing; give the secret that holds the ${upstream.kind} key`);
    return problems;
  }
  const problems: string[] = [];
  if (upstream.region !== undefined && !Token.isUnresolved(upstream.region) && !AWS_REGION.test(upstream.region))
    problems.push(
      `upstream.region is ${JSON.stringify(upstream.region)}; give a region such as us-east-1, or leave it out for the stack's region`,
    );
  const sample = { partition: 'aws', region: 'us-east-1', account: '123456789012' };
  for (const [route, endpoint] of Object.entries(props.endpoints ?? {}))
    for (const [name, price] of Object.entries(endpoint?.models ?? {})) {
      const given = (price as { upstreamModel?: unknown } | undefined)?.upstreamModel;
      const id = given ?? name;
      if (typeof id !== 'string' || Token.isUnresolved(id)) continue;
      const parsed = parseBedrockModel(id, sample);
      if (typeof parsed === 'string')
        problems.push(
          `endpoints['${route}'].models['${name}']${given === undefined ? '' : '.upstreamModel'}: ${parsed}`,
        );
    }
  return problems;
}

function baseUrlProblems(prop: string, url: string | undefined): string[] {
  if (url === undefined || Token.isUnresolved(url) || /^https?:\/\/[^\s/]+/.test(url)) return [];
  return [`${prop} is ${JSON.stringify(url)}; give an absolute http(s) URL such as https://api.openai.com/v1`];
}
