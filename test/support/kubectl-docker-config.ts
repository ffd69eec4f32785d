// The reference for every `.dockerconfigjson` test: what the real kubectl writes for one registry.
import { execFileSync } from 'node:child_process';

/** `kubectl create secret docker-registry x ... --dry-run=client -o json`: its type and decoded `.dockerconfigjson`. */
export function kubectlDockerConfigJson(
  server: string,
  username: string,
  password: string,
): { type: string; dockerConfigJson: string } {
  const out = execFileSync(
    'kubectl',
    [
      'create',
      'secret',
      'docker-registry',
      'x',
      `--docker-server=${server}`,
      `--docker-username=${username}`,
      `--docker-password=${password}`,
      '--dry-run=client',
      '-o',
      'json',
    ],
    { encoding: 'utf8' },
  );
  const secret = JSON.parse(out) as { type: string; data?: Record<string, string> };
  const encoded = secret.data?.['.dockerconfigjson'] ?? '';
  return { type: secret.type, dockerConfigJson: Buffer.from(encoded, 'base64').toString('utf8') };
}
