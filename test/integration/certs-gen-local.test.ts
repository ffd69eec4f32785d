import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectCertificate } from '../../certs-gen/generate.ts';
import { buildLocalCertificates, writeLocalFiles } from '../../certs-gen/local.ts';

const run = promisify(execFile);
const at = new Date('2026-03-01T12:00:00.000Z');

describe('buildLocalCertificates', () => {
  it.each([
    ['no names at all', [], [], ['localhost'], ['127.0.0.1', '::1']],
    ['only DNS names', ['dev.example'], [], ['dev.example'], []],
    ['only IP addresses', [], ['10.0.0.5'], [], ['10.0.0.5']],
  ])('given %s, issues tls.crt for DNS %j and IPs %j', (_case, dnsNames, ipAddresses, wantDns, wantIps) => {
    const files = buildLocalCertificates({ dnsNames, ipAddresses, validityDays: 30, now: at });
    expect(inspectCertificate(files['tls.crt'].contents)).toMatchObject({ dnsNames: wantDns, ipAddresses: wantIps });
  });

  it('makes the CA last ten times as long as the serving certificate', () => {
    const files = buildLocalCertificates({ dnsNames: [], ipAddresses: [], validityDays: 30, now: at });
    expect(inspectCertificate(files['tls.crt'].contents).notAfter.toISOString()).toBe('2026-03-31T12:00:00.000Z');
    expect(inspectCertificate(files['ca.crt'].contents).notAfter.toISOString()).toBe('2026-12-26T12:00:00.000Z');
  });
});

describe('local output', () => {
  let dir: string;
  const file = (name: string) => join(dir, name);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certs-gen-local-'));
    // Stale files from an earlier run, with a world-readable key, must all be replaced.
    await writeFile(file('tls.key'), 'stale', { mode: 0o644 });
    await chmod(file('tls.key'), 0o644);
    const files = buildLocalCertificates({ dnsNames: [], ipAddresses: [], validityDays: 365, now: new Date() });
    await writeLocalFiles(dir, files);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is exactly ca.crt, tls.crt and tls.key, with the key readable by its owner only', async () => {
    expect((await readdir(dir)).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
    expect((await stat(file('tls.key'))).mode & 0o777).toBe(0o600);
    expect(await readFile(file('tls.key'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
  });

  it.each([
    ['any purpose', []],
    ['the TLS server purpose', ['-purpose', 'sslserver']],
  ])('passes openssl verify against ca.crt for %s', async (_case, purpose) => {
    const { stdout } = await run('openssl', ['verify', ...purpose, '-CAfile', file('ca.crt'), file('tls.crt')]);
    expect(stdout).toBe(`${file('tls.crt')}: OK\n`);
  });

  it.each([
    ['X509v3 Extended Key Usage: \n                TLS Web Server Authentication'],
    ['X509v3 Key Usage: critical\n                Digital Signature, Key Encipherment'],
    [
      'X509v3 Subject Alternative Name: \n' +
        '                DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1\n',
    ],
    ['Signature Algorithm: sha256WithRSAEncryption'],
    ['Public-Key: (2048 bit)'],
  ])('shows %j in openssl x509 -text', async (text) => {
    const { stdout } = await run('openssl', ['x509', '-in', file('tls.crt'), '-noout', '-text']);
    expect(stdout).toContain(text);
  });

  describe('served by a Node tls server', () => {
    let server: tls.Server;
    let port: number;

    beforeAll(async () => {
      server = tls.createServer(
        { cert: await readFile(file('tls.crt')), key: await readFile(file('tls.key')) },
        (socket) => socket.end('ok'),
      );
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      port = (server.address() as { port: number }).port;
    });
    afterAll(() => {
      server.close();
    });

    function connect(options: tls.ConnectionOptions): Promise<string> {
      return new Promise((resolve) => {
        const socket = tls.connect({ host: '127.0.0.1', port, ...options }, () => {
          socket.end();
          resolve('connected');
        });
        socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      });
    }

    it.each([
      ['trusting only ca.crt, with servername localhost', 'connected', 'ca.crt', { servername: 'localhost' }],
      ['trusting only ca.crt, by IP 127.0.0.1 without a servername', 'connected', 'ca.crt', {}],
      [
        'trusting only ca.crt, checking a name not in the SANs',
        'ERR_TLS_CERT_ALTNAME_INVALID',
        'ca.crt',
        { servername: 'elsewhere.example' },
      ],
      [
        'trusting only ca.crt, checking the subject CN',
        'ERR_TLS_CERT_ALTNAME_INVALID',
        'ca.crt',
        { servername: 'acr-pull-webhook' },
      ],
      ["trusting only Node's default CAs", 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'default', { servername: 'localhost' }],
    ])('a client %s gets %s', async (_case, outcome, trust, options: tls.ConnectionOptions) => {
      const ca = trust === 'ca.crt' ? { ca: await readFile(file('ca.crt')) } : {};
      expect(await connect({ ...ca, ...options })).toBe(outcome);
    });
  });
});
