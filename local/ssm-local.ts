import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A minimal endpoint speaking SSM's, Secrets Manager's and EventBridge's JSON 1.1 protocol
 * (X-Amz-Target AmazonSSM.GetParameter / PutParameter / DeleteParameter,
 * secretsmanager.GetSecretValue, AWSEvents.PutEvents), so the real SDK clients run against it
 * where no local engine exists. As on AWS, deleting a parameter
 * deletes its versions: one created again starts at version 1 (SSM User Guide, "Working with
 * parameter versions").
 */
export interface SsmLocal {
  readonly endpoint: string;
  readonly parameters: Map<string, { value: string; version: number; modified: number }>;
  /** Secrets by name or ARN. */
  readonly secrets: Map<string, string>;
  /** Events put on a bus (EventBridge's PutEvents), in order, with the detail parsed. */
  readonly events: { bus: string; source: string; detailType: string; detail: unknown }[];
  /** Requests seen, by operation. */
  readonly calls: Record<string, number>;
  /** Every request: service, operation, the parameter or secret it names, and the caller's user agent. */
  readonly log: { service: 'ssm' | 'secretsmanager' | 'events'; action: string; resource: string; userAgent: string }[];
  /**
   * Answers a request ThrottlingException (HTTP 400, as Parameter Store does past its shared 40
   * GetParameter calls a second) when it says so; called with the operation and the name it asks for.
   */
  throttle?: (operation: string, name: string) => boolean;
  /**
   * Refuses PutEvents entries inside a 200 answer (FailedEntryCount, an ErrorCode per entry), as
   * EventBridge does for a partial failure (User Guide, "Sending events with PutEvents").
   */
  failEvents?: boolean;
  stop(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/x-amz-json-1.1',
    'content-length': Buffer.byteLength(text),
    'x-amzn-requestid': crypto.randomUUID(),
  });
  res.end(text);
}

const fault = (res: ServerResponse, type: string, message: string) => send(res, 400, { __type: type, message });

async function body(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

/**
 * `onParameterChange` stands for EventBridge's "Parameter Store Change" event: called after a
 * PutParameter or DeleteParameter has been answered, as the event arrives after the change on AWS.
 */
export async function startSsmLocal(
  options: { port?: number; region?: string; account?: string; onParameterChange?: (name: string) => void } = {},
): Promise<SsmLocal> {
  const parameters: SsmLocal['parameters'] = new Map();
  const secrets: SsmLocal['secrets'] = new Map();
  const events: SsmLocal['events'] = [];
  const calls: Record<string, number> = {};
  const log: SsmLocal['log'] = [];
  const region = options.region ?? 'us-east-1';
  const account = options.account ?? '000000000000';
  // Each change is later than the one before (on AWS, changes a round trip apart are milliseconds apart).
  let lastModified = 0;
  const modifiedNow = () => {
    lastModified = Math.max(Date.now(), lastModified + 1);
    return lastModified;
  };
  const changed = (name: string) => {
    if (options.onParameterChange) setImmediate(() => options.onParameterChange!(name));
  };
  const server: Server = createServer(async (req, res) => {
    const target = String(req.headers['x-amz-target'] ?? '');
    const operation = target.replace(/^(AmazonSSM|secretsmanager|AWSEvents)\./, '');
    calls[operation] = (calls[operation] ?? 0) + 1;
    let input: Record<string, unknown>;
    try {
      input = await body(req);
    } catch {
      return fault(res, 'SerializationException', 'request body is not JSON');
    }
    const name = typeof input.Name === 'string' ? input.Name : '';
    log.push({
      service: target.startsWith('secretsmanager.')
        ? 'secretsmanager'
        : target.startsWith('AWSEvents.')
          ? 'events'
          : 'ssm',
      action: operation,
      resource: typeof input.SecretId === 'string' ? input.SecretId : name,
      userAgent: String(req.headers['user-agent'] ?? ''),
    });
    if (local.throttle?.(operation, name)) return fault(res, 'ThrottlingException', 'Rate exceeded');
    switch (operation) {
      case 'GetParameter': {
        const p = parameters.get(name);
        if (!p) return fault(res, 'ParameterNotFound', `Parameter ${name} not found.`);
        return send(res, 200, {
          Parameter: {
            Name: name,
            Type: 'String',
            Value: p.value,
            Version: p.version,
            LastModifiedDate: p.modified / 1000,
            ARN: `arn:aws:ssm:${region}:${account}:parameter${name.startsWith('/') ? '' : '/'}${name}`,
            DataType: 'text',
          },
        });
      }
      case 'PutParameter': {
        if (typeof input.Value !== 'string' || !name)
          return fault(res, 'ValidationException', 'Name and Value are required');
        const existing = parameters.get(name);
        if (existing && input.Overwrite !== true)
          return fault(res, 'ParameterAlreadyExists', `The parameter ${name} already exists.`);
        const version = (existing?.version ?? 0) + 1;
        parameters.set(name, { value: input.Value, version, modified: modifiedNow() });
        send(res, 200, { Version: version, Tier: 'Standard' });
        return changed(name);
      }
      case 'DeleteParameter': {
        if (!parameters.delete(name)) return fault(res, 'ParameterNotFound', `Parameter ${name} not found.`);
        send(res, 200, {});
        return changed(name);
      }
      case 'GetSecretValue': {
        const id = typeof input.SecretId === 'string' ? input.SecretId : '';
        const secret = secrets.get(id);
        if (secret === undefined)
          return fault(res, 'ResourceNotFoundException', 'Secrets Manager can’t find the specified secret.');
        return send(res, 200, {
          ARN: id.startsWith('arn:') ? id : `arn:aws:secretsmanager:${region}:${account}:secret:${id}`,
          Name: id,
          SecretString: secret,
          VersionId: 'local',
          VersionStages: ['AWSCURRENT'],
          CreatedDate: 0,
        });
      }
      case 'PutEvents': {
        // EventBridge API Reference, PutEvents: 1 to 10 entries; Source, DetailType and Detail (a JSON object) each required.
        const entries = Array.isArray(input.Entries) ? (input.Entries as Record<string, unknown>[]) : [];
        if (entries.length < 1 || entries.length > 10)
          return fault(res, 'ValidationException', 'Entries must hold 1 to 10 entries');
        const answers = entries.map((e) => {
          let detail: unknown;
          try {
            detail = JSON.parse(String(e.Detail));
          } catch {
            return { ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail is malformed.' };
          }
          if (typeof e.Source !== 'string' || typeof e.DetailType !== 'string' || typeof detail !== 'object' || !detail)
            return { ErrorCode: 'InvalidArgument', ErrorMessage: 'Source, DetailType and Detail are required.' };
          if (local.failEvents) return { ErrorCode: 'InternalFailure', ErrorMessage: 'Internal service error.' };
          const bus = typeof e.EventBusName === 'string' ? e.EventBusName : 'default';
          events.push({ bus, source: e.Source, detailType: e.DetailType, detail });
          return { EventId: crypto.randomUUID() };
        });
        return send(res, 200, { FailedEntryCount: answers.filter((a) => 'ErrorCode' in a).length, Entries: answers });
      }
      default:
        return fault(res, 'InvalidAction', `operation ${target} is not supported by this local endpoint`);
    }
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const local: SsmLocal = {
    endpoint: `http://127.0.0.1:${port}`,
    parameters,
    secrets,
    events,
    calls,
    log,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return local;
}
