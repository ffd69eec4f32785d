// Pure: doctor's findings as a short table for people (colour only when asked: the shell asks on a TTY) and as
// JSON for scripts.
import type { Finding, Status } from './checks.ts';

const COLOURS: Record<Status, string> = { ok: '\u001b[32m', warn: '\u001b[33m', fail: '\u001b[31m' };
const RESET = '\u001b[0m';
const LABELS: Record<Status, string> = { ok: 'ok', warn: 'WARN', fail: 'FAIL' };

/** One row per finding: status, subject padded to the widest, detail. */
export function formatTable(findings: readonly Finding[], colour: boolean): string[] {
  const width = Math.max(0, ...findings.map((finding) => finding.subject.length));
  return findings.map((finding) => {
    const label = LABELS[finding.status].padEnd(4);
    const status = colour ? `${COLOURS[finding.status]}${label}${RESET}` : label;
    return `${status}  ${finding.subject.padEnd(width)}  ${finding.detail}`;
  });
}
