// The serving certificate, kept fresh by the shared reloading-file source. A new pair is used only if
// it parses, the key matches the certificate and it is within its validity; otherwise the pair in use
// is kept. Health (a valid certificate is loaded) drives readiness.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { ReloadingFiles } from '../files/reloading-files.ts';

/**
 * TLS settings for the admission port: TLS 1.2 minimum (1.3 preferred by clients that have it),
 * and for 1.2 only forward-secret AEAD suites.
 */
export const TLS_SETTINGS: SecureContextOptions = {
  minVersion: 'TLSv1.2',
  ciphers: [
    'TLS_AES_128_GCM_SHA256',
    'TLS_AES_256_GCM_SHA384',
    'TLS_CHACHA20_POLY1305_SHA256',
    'ECDHE-ECDSA-AES128-GCM-SHA256',
    'ECDHE-RSA-AES128-GCM-SHA256',
    'ECDHE-ECDSA-AES256-GCM-SHA384',
    'ECDHE-RSA-AES256-GCM-SHA384',
    'ECDHE-ECDSA-CHACHA20-POLY1305',
    'ECDHE-RSA-CHACHA20-POLY1305',
  ].join(':'),
  honorCipherOrder: true,
};

export interface ServingPair {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly fingerprint256: string;
}

export class CertificateError extends Error {
  override name = 'CertificateError';
}

export type ReloadResult = 'unchanged' | 'loaded' | { rejected: string };

/** Reads and checks a pair; throws CertificateError with a one-line reason naming the file. */
export function readServingPair(certFile: string, keyFile: string): ServingPair {
  const read = (file: string, what: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new CertificateError(
        `${what} ${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  };
  const cert = read(certFile, 'tls-cert');
  const key = read(keyFile, 'tls-key');
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw new CertificateError(`tls-cert ${certFile}: is not a PEM certificate`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new CertificateError(`tls-key ${keyFile}: is not a PEM private key`);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new CertificateError(`tls-key ${keyFile}: does not belong to the certificate in ${certFile}`);
  }
  try {
    createSecureContext({ ...TLS_SETTINGS, cert, key });
  } catch (error) {
    throw new CertificateError(`tls-cert ${certFile}: unusable: ${(error as Error).message}`);
  }
  return {
    cert,
    key,
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
    fingerprint256: x509.fingerprint256,
  };
}

export interface CertificateSourceOptions {
  readonly certFile: string;
  readonly keyFile: string;
  readonly pollIntervalMs: number;
  /** Called with every new pair that passed the checks, before it is reported as current. */
  readonly onLoad: (pair: ServingPair) => void;
  /** Called when changed files hold a pair that cannot be used; the previous pair stays. */
  readonly onReject: (reason: string) => void;
}

export class CertificateSource {
  private readonly files: ReloadingFiles<ServingPair>;

  /** Loads the initial pair; throws CertificateError when it cannot be used. */
  constructor(options: CertificateSourceOptions) {
    const { certFile, keyFile } = options;
    this.files = new ReloadingFiles({
      load: () => {
        const pair = readServingPair(certFile, keyFile);
        return {
          value: pair,
          files: [
            { path: certFile, bytes: pair.cert },
            { path: keyFile, bytes: pair.key },
          ],
        };
      },
      refuse: (next) => {
        const now = new Date();
        if (now >= next.notBefore && now < next.notAfter) return undefined;
        const validity = `${next.notBefore.toISOString()} to ${next.notAfter.toISOString()}`;
        return `tls-cert ${certFile}: new certificate is outside its validity (${validity})`;
      },
      pollIntervalMs: options.pollIntervalMs,
      onChange: options.onLoad,
      onReject: options.onReject,
      // Every refused poll is logged and counted: a bad pair left in place should stay visible.
      rejections: 'every-time',
    });
  }

  current(): ServingPair {
    return this.files.current();
  }

  /** A certificate is loaded and `now` is within its validity. */
  healthy(now: Date = new Date()): boolean {
    const pair = this.files.current();
    return now >= pair.notBefore && now < pair.notAfter;
  }

  /** Re-reads the files and switches to them if their bytes changed and they are usable. */
  reload(): ReloadResult {
    const result = this.files.reload();
    return result === 'changed' ? 'loaded' : result;
  }

  /** Starts watching the certificate and key directories and polling. Idempotent. */
  start(): void {
    this.files.start();
  }

  stop(): void {
    this.files.stop();
  }
}
