/** The admin CLI's entry (package.json "bin", built to dist/cli.js). */
import { main } from './main';

// The AWS SDK warns on every client, on Node below 22, that its releases after January 2027 will
// need Node 22. This command ships with its SDK inside (it never updates under the user), and
// Node 20 is supported (package.json engines): the warning is noise here. The SDK's own switch,
// read when a client is built; a value the user set stays.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

// Piped into `head` and the like: a closed stdout ends the command quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
