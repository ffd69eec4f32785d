// What `openssl s_client` negotiates with the admission port of a real `serve` process: TLS 1.0 and
// 1.1 refused, only forward-secret AEAD suites on TLS 1.2, TLS 1.3 offered. Every offer is first made
// to a permissive server, so a refusal from ours cannot be the client declining to offer it.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { testPki } from '../support/certificates.ts';
import { type PermissiveTlsServer, startPermissiveTlsServer } from '../support/permissive-tls-server.ts';
import { tempDir } from '../support/temp-dir.ts';
import { startWebhookProcess, type WebhookProcess, writeServeFiles } from '../support/webhook-process.ts';

const pki = testPki();
const dir = tempDir('tls-probe');
let webhook: WebhookProcess;
let permissive: PermissiveTlsServer;

beforeAll(async () => {
  writeFileSync(join(dir, 'ca.crt'), pki.ca.certPem);
  permissive = await startPermissiveTlsServer(pki);
  webhook = await startWebhookProcess(writeServeFiles(pki, { dir }));
}, 30_000);
afterAll(async () => {
  await webhook?.kill();
  await permissive?.close();
});

interface Probe {
  /** `TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256`: the negotiated protocol and suite, or `refused`. */
  readonly session: string;
  readonly output: string;
}

/**
 * One handshake with `-brief`, which prints the negotiated `Protocol version:` (unlike the
 * `New, TLSv1.x, Cipher is` line, which names the suite's minimum version). Asynchronous, because
 * the permissive server answers from this process.
 */
function probe(port: number, args: readonly string[]): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', [
      's_client',
      '-brief',
      '-connect',
      `127.0.0.1:${port}`,
      '-servername',
      'localhost',
      '-CAfile',
      join(dir, 'ca.crt'),
      ...args,
    ]);
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      const protocol = /^Protocol version: (\S+)$/m.exec(output)?.[1];
      const suite = /^Ciphersuite: (\S+)$/m.exec(output)?.[1];
      const made = output.includes('CONNECTION ESTABLISHED') && protocol !== undefined && suite !== undefined;
      resolve({ session: made ? `${protocol} ${suite}` : 'refused', output: output.slice(0, 2_000) });
    });
    child.stdin.end('Q\n');
  });
}

// SECLEVEL=0 makes the client willing to offer what OpenSSL's default security level would hold back.
const WEAK = 'ALL:@SECLEVEL=0';

describe('TLS on the admission port', () => {
  test.each([
    { offer: 'TLS 1.3', args: ['-tls1_3'], session: /^TLSv1\.3 TLS_/, ours: 'accepted' },
    {
      offer: 'TLS 1.2 with ECDHE-RSA-AES128-GCM-SHA256',
      args: ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'],
      session: /^TLSv1\.2 ECDHE-RSA-AES128-GCM-SHA256$/,
      ours: 'accepted',
    },
    {
      offer: 'TLS 1.2 with ECDHE-RSA-CHACHA20-POLY1305',
      args: ['-tls1_2', '-cipher', 'ECDHE-RSA-CHACHA20-POLY1305'],
      session: /^TLSv1\.2 ECDHE-RSA-CHACHA20-POLY1305$/,
      ours: 'accepted',
    },
    {
      offer: 'TLS 1.2 with a CBC suite (ECDHE-RSA-AES128-SHA256)',
      args: ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-SHA256'],
      session: /^TLSv1\.2 ECDHE-RSA-AES128-SHA256$/,
      ours: 'refused',
    },
    {
      offer: 'TLS 1.2 with static RSA key exchange (AES128-GCM-SHA256)',
      args: ['-tls1_2', '-cipher', 'AES128-GCM-SHA256'],
      session: /^TLSv1\.2 AES128-GCM-SHA256$/,
      ours: 'refused',
    },
    {
      offer: 'TLS 1.2 with every suite but the ECDHE AEAD ones',
      args: ['-tls1_2', '-cipher', 'ALL:!ECDHE+AESGCM:!ECDHE+CHACHA20:@SECLEVEL=0'],
      session: /^TLSv1\.2 \S+$/,
      ours: 'refused',
    },
    { offer: 'TLS 1.1 with any suite', args: ['-tls1_1', '-cipher', WEAK], session: /^TLSv1\.1 \S+$/, ours: 'refused' },
    { offer: 'TLS 1.0 with any suite', args: ['-tls1', '-cipher', WEAK], session: /^TLSv1 \S+$/, ours: 'refused' },
  ])('$offer is $ours by ours and accepted by a permissive server', async ({ args, session, ours }) => {
    const control = await probe(permissive.port, args);
    expect(control.session, control.output).toMatch(session);
    const answer = await probe(webhook.port, args);
    if (ours === 'accepted') expect(answer.session, answer.output).toMatch(session);
    else expect(answer.session, answer.output).toBe('refused');
  });

  test('plain HTTP on the admission port gets no HTTP answer', async () => {
    const status = await fetch(`http://127.0.0.1:${webhook.port}/mutate`, { method: 'POST', body: '{}' }).then(
      (response) => response.status,
      () => 'refused',
    );
    expect(status).toBe('refused');
  });
});
