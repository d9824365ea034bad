/** The admin CLI's entry (package.json "bin", built to dist/cli.js). */
import { main } from './main';

// Piped into `head` and the like: a closed stdout ends the command quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
