// Builds compiled rules for tests the way the config loader does.
import { buildConfig } from '../../src/config/config.ts';
import type { RegistryRule } from '../../src/registry/registry-rule.ts';

export function rules(...entries: [server: string, secretName: string][]): readonly RegistryRule[] {
  return buildConfig({ registries: entries.map(([server, secretName]) => ({ server, secretName })) }, 'test').rules;
}
