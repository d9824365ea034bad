#!/usr/bin/env node
// The admin CLI's entry (package.json "bin"): runs lib/cli/main.ts through tsx.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../lib/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
