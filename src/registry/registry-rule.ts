// One configured registry as the webhook matches it: the compiled server pattern and the pull
// secret an image from that registry gets. Built by config, used by the decision core.
import type { ServerPattern } from './server-pattern.ts';

export interface RegistryRule {
  readonly pattern: ServerPattern;
  readonly secretName: string;
}
