// Throw-away CAs and serving pairs for tests, from certs-gen's pure generator.
import { generateCa, generateServingCertificate, type PemPair } from '../../certs-gen/generate.ts';

export interface TestPki {
  readonly ca: PemPair;
  readonly serving: PemPair;
}

export function testPki(options: { validityDays?: number; now?: Date; dnsNames?: string[] } = {}): TestPki {
  const now = options.now ?? new Date();
  const ca = generateCa({ validityDays: 30, now });
  const serving = generateServingCertificate(ca, {
    dnsNames: options.dnsNames ?? ['localhost'],
    ipAddresses: ['127.0.0.1'],
    validityDays: options.validityDays ?? 7,
    now,
  });
  return { ca, serving };
}
