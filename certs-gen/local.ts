// The `local` verb: a throwaway CA and a serving certificate for running the webhook outside a
// cluster. Building is pure (so the CLI can report bad flags as usage errors); writing is the
// verb's only I/O. The CA key is discarded, so nothing else can ever be signed by this CA.
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateCa, generateServingCertificate } from './generate.ts';

export const LOCAL_DEFAULT_DNS_NAMES: readonly string[] = ['localhost'];
export const LOCAL_DEFAULT_IP_ADDRESSES: readonly string[] = ['127.0.0.1', '::1'];
export const LOCAL_DEFAULT_VALIDITY_DAYS = 365;
// The CA outlives many serving certificates, so a trusted ca.crt survives re-issuing tls.crt.
export const CA_VALIDITY_FACTOR = 10;

export interface LocalOptions {
  /** When both are empty, the defaults (localhost, 127.0.0.1, ::1) are used. */
  dnsNames: readonly string[];
  ipAddresses: readonly string[];
  validityDays: number;
  now: Date;
}

/** File name → contents and mode, as written to the output directory. */
export type LocalFiles = Record<'ca.crt' | 'tls.crt' | 'tls.key', { contents: string; mode: number }>;

export function buildLocalCertificates(opts: LocalOptions): LocalFiles {
  const noNames = opts.dnsNames.length === 0 && opts.ipAddresses.length === 0;
  const ca = generateCa({ validityDays: opts.validityDays * CA_VALIDITY_FACTOR, now: opts.now });
  const serving = generateServingCertificate(ca, {
    dnsNames: noNames ? LOCAL_DEFAULT_DNS_NAMES : opts.dnsNames,
    ipAddresses: noNames ? LOCAL_DEFAULT_IP_ADDRESSES : opts.ipAddresses,
    validityDays: opts.validityDays,
    now: opts.now,
  });
  return {
    'ca.crt': { contents: ca.certPem, mode: 0o644 },
    'tls.crt': { contents: serving.certPem, mode: 0o644 },
    'tls.key': { contents: serving.keyPem, mode: 0o600 },
  };
}

/** Writes each file to a temporary name and renames it into place; returns the paths written. */
export async function writeLocalFiles(outDir: string, files: LocalFiles): Promise<string[]> {
  // Not `recursive: true`: Node's recursive mkdir spins at 100% CPU forever under /proc or /sys,
  // where mkdir of a missing child reports ENOENT although the parent exists.
  await mkdir(outDir).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  });
  const written: string[] = [];
  for (const [name, { contents, mode }] of Object.entries(files)) {
    const path = join(outDir, name);
    const temporary = `${path}.${process.pid}.tmp`;
    // A fresh file gets `mode` at creation; writing over an existing tls.key would keep its old,
    // possibly world-readable, mode. Renaming also means readers never see half a file.
    try {
      await writeFile(temporary, contents, { mode, flag: 'wx' });
      await rename(temporary, path);
    } catch (error) {
      await rm(temporary, { force: true }).catch(() => {});
      throw error;
    }
    written.push(path);
  }
  return written;
}
