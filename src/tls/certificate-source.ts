// The serving certificate, kept fresh. Kubernetes updates a mounted Secret by swapping a `..data`
// symlink, which fs.watch on the file itself can miss, so the directory is watched AND the files
// are polled; a change is decided by comparing bytes. A new pair is used only if it parses, the key
// matches the certificate and it is within its validity; otherwise the pair in use is kept. Health
// (a valid certificate is loaded) drives readiness.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { watchFiles } from '../files/watch-files.ts';

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
  private pair: ServingPair;
  private stopWatching: (() => void) | undefined;
  private readonly options: CertificateSourceOptions;

  /** Loads the initial pair; throws CertificateError when it cannot be used. */
  constructor(options: CertificateSourceOptions) {
    this.options = options;
    this.pair = readServingPair(options.certFile, options.keyFile);
  }

  current(): ServingPair {
    return this.pair;
  }

  /** A certificate is loaded and `now` is within its validity. */
  healthy(now: Date = new Date()): boolean {
    return now >= this.pair.notBefore && now < this.pair.notAfter;
  }

  /** Re-reads the files and switches to them if their bytes changed and they are usable. */
  reload(): ReloadResult {
    // The directory watch fires for any file in the directory and the poll runs every few seconds:
    // compare bytes before parsing keys and building a TLS context.
    if (this.sameBytesAsCurrent()) return 'unchanged';
    let next: ServingPair;
    try {
      next = readServingPair(this.options.certFile, this.options.keyFile);
    } catch (error) {
      // Between the two writes of a non-atomic update the files do not match; a later poll or
      // event sees the settled state, so a mismatch is reported but not fatal.
      const reason = (error as Error).message;
      if (this.sameBytesAsCurrent()) return 'unchanged';
      this.options.onReject(reason);
      return { rejected: reason };
    }
    if (next.cert.equals(this.pair.cert) && next.key.equals(this.pair.key)) return 'unchanged';
    const now = new Date();
    if (now < next.notBefore || now >= next.notAfter) {
      const reason = `tls-cert ${this.options.certFile}: new certificate is outside its validity (${next.notBefore.toISOString()} to ${next.notAfter.toISOString()})`;
      this.options.onReject(reason);
      return { rejected: reason };
    }
    this.options.onLoad(next);
    this.pair = next;
    return 'loaded';
  }

  private sameBytesAsCurrent(): boolean {
    try {
      return (
        readFileSync(this.options.certFile).equals(this.pair.cert) &&
        readFileSync(this.options.keyFile).equals(this.pair.key)
      );
    } catch {
      return false;
    }
  }

  /** Starts watching the certificate and key directories and polling. Idempotent. */
  start(): void {
    this.stopWatching ??= watchFiles(
      [this.options.certFile, this.options.keyFile],
      this.options.pollIntervalMs,
      () => void this.reload(),
    );
  }

  stop(): void {
    this.stopWatching?.();
    this.stopWatching = undefined;
  }
}
