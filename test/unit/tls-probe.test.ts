// What `openssl s_client` sees on the admission port of a real `serve` process: TLS 1.0 and 1.1
// refused, only forward-secret AEAD suites on TLS 1.2, TLS 1.3 offered.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { testPki } from '../support/certificates.ts';
import { startWebhookProcess, writeServeFiles, type WebhookProcess } from '../support/webhook-process.ts';

const pki = testPki();
const dir = mkdtempSync(join(tmpdir(), 'tls-probe-'));
let webhook: WebhookProcess;

beforeAll(async () => {
  writeFileSync(join(dir, 'ca.crt'), pki.ca.certPem);
  webhook = await startWebhookProcess(writeServeFiles(pki, { dir }));
});
afterAll(async () => {
  await webhook.kill();
});

function sClient(args: string[]): { connected: boolean; output: string } {
  const result = spawnSync(
    'openssl',
    ['s_client', '-connect', `127.0.0.1:${webhook.port}`, '-CAfile', join(dir, 'ca.crt'), ...args],
    {
      input: 'Q\n',
      encoding: 'utf8',
      timeout: 10_000,
    },
  );
  const output = `${result.stdout}${result.stderr}`;
  // OpenSSL 3 prints the negotiated protocol and cipher only after a completed handshake.
  return { connected: /New, TLSv1\.[23], Cipher is (?!\(NONE\))/.test(output) && result.status === 0, output };
}

describe('TLS on the admission port', () => {
  test.each([
    { offer: 'TLS 1.3', args: ['-tls1_3'], accepted: true },
    {
      offer: 'TLS 1.2 with ECDHE-RSA-AES128-GCM-SHA256',
      args: ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'],
      accepted: true,
    },
    {
      offer: 'TLS 1.2 with ECDHE-RSA-CHACHA20-POLY1305',
      args: ['-tls1_2', '-cipher', 'ECDHE-RSA-CHACHA20-POLY1305'],
      accepted: true,
    },
    {
      offer: 'TLS 1.2 with a CBC suite (ECDHE-RSA-AES128-SHA256)',
      args: ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-SHA256'],
      accepted: false,
    },
    {
      offer: 'TLS 1.2 with static RSA key exchange (AES128-GCM-SHA256)',
      args: ['-tls1_2', '-cipher', 'AES128-GCM-SHA256'],
      accepted: false,
    },
    { offer: 'TLS 1.1', args: ['-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'], accepted: false },
    { offer: 'TLS 1.0', args: ['-tls1', '-cipher', 'DEFAULT@SECLEVEL=0'], accepted: false },
  ])('$offer: accepted $accepted', ({ args, accepted }) => {
    const probe = sClient(args);
    expect(probe.connected, probe.output.slice(0, 2_000)).toBe(accepted);
  });

  test('plain HTTP on the admission port gets no HTTP answer', async () => {
    const status = await fetch(`http://127.0.0.1:${webhook.port}/mutate`, { method: 'POST', body: '{}' }).then(
      (response) => response.status,
      () => 'refused',
    );
    expect(status).toBe('refused');
  });
});
