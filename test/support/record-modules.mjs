// Preloaded with `node --import` by tests that check what a command loads: records the URL of
// every module resolved and writes them, one per line, to $RECORD_MODULES_FILE on exit.
import { writeFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

const file = process.env.RECORD_MODULES_FILE;
const urls = new Set();
registerHooks({
  resolve(specifier, context, nextResolve) {
    const resolved = nextResolve(specifier, context);
    urls.add(resolved.url);
    return resolved;
  },
});
process.on('exit', () => {
  if (file) writeFileSync(file, [...urls].join('\n'));
});
