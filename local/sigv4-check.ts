/**
 * Checks an incoming request's Signature Version 4 the way an AWS service does: recomputes it with
 * the known credentials (@smithy/signature-v4, the signer the SDK itself uses) over the headers the
 * request says it signed, its raw path and its body, and compares. A missing, malformed or wrong
 * signature is refused with the error AWS answers it with.
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
 * https://docs.aws.amazon.com/bedrock/latest/userguide/troubleshooting-api-error-codes.html
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, SourceData } from '@smithy/types';

export interface SignatureRefusal {
  readonly status: number;
  /** The error type AWS names in x-amzn-errortype. */
  readonly type: string;
  readonly message: string;
}

const bytes = (data: SourceData): Buffer =>
  typeof data === 'string'
    ? Buffer.from(data, 'utf8')
    : ArrayBuffer.isView(data)
      ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      : Buffer.from(new Uint8Array(data));

/** SHA-256 and HMAC-SHA-256 in the shape the signer takes (node:crypto underneath). */
class Sha256 {
  private readonly hash: Hash | Hmac;
  constructor(secret?: SourceData) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: SourceData): void {
    this.hash.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
}

const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const MISMATCH =
  'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access ' +
  'Key and signing method. Consult the service documentation for details.';

/** undefined when the request is signed by `credentials` for `service` in `region`; else why not. */
export async function checkSignature(
  request: { method: string; url: string; headers: IncomingHttpHeaders; body: Buffer },
  credentials: AwsCredentialIdentity,
  region: string,
  service: string,
): Promise<SignatureRefusal | undefined> {
  const auth = request.headers.authorization;
  if (!auth)
    return { status: 403, type: 'MissingAuthenticationTokenException', message: 'Missing Authentication Token' };
  const parsed = AUTHORIZATION.exec(auth);
  const date = AMZ_DATE.exec(String(request.headers['x-amz-date'] ?? ''));
  if (!parsed || !date)
    return {
      status: 400,
      type: 'IncompleteSignatureException',
      message: 'Authorization header requires Credential, SignedHeaders and Signature, and x-amz-date.',
    };
  const [, accessKeyId, , , , signedHeaders = '', signature] = parsed;
  if (accessKeyId !== credentials.accessKeyId)
    return {
      status: 403,
      type: 'UnrecognizedClientException',
      message: 'The security token included in the request is invalid.',
    };
  const declared = request.headers['x-amz-content-sha256'];
  if (declared !== undefined && declared !== createHash('sha256').update(request.body).digest('hex'))
    return { status: 400, type: 'XAmzContentSHA256Mismatch', message: 'The provided content hash does not match.' };
  const headers: Record<string, string> = {};
  for (const name of signedHeaders.split(';')) {
    const value = request.headers[name];
    headers[name] = Array.isArray(value) ? value.join(',') : (value ?? '');
  }
  const [y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0] = date.slice(1).map(Number);
  const [path = '', query = ''] = request.url.split('?');
  const signer = new SignatureV4({ credentials, region, service, sha256: Sha256, applyChecksum: false });
  const signed = await signer.sign(
    {
      method: request.method,
      protocol: 'http:',
      hostname: headers.host ?? '',
      path,
      query: Object.fromEntries(new URLSearchParams(query)),
      headers,
      body: request.body,
    },
    { signingDate: new Date(Date.UTC(y, mo - 1, d, h, mi, s)) },
  );
  const expected = /Signature=([0-9a-f]{64})$/.exec(String(signed.headers.authorization))?.[1];
  return expected === signature ? undefined : { status: 403, type: 'InvalidSignatureException', message: MISMATCH };
}
