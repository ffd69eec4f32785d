// The pure edges of the reconciler; its API behaviour is tested against a real apiserver in
// test/e2e/sync-secrets.test.ts.
import { describe, expect, test } from 'vitest';
import { addResult, credentialRedactor, emptySummary, formatSummary, isOptedIn } from './reconciler.ts';

describe('the --once summary line', () => {
  test('counts namespaces that are opted in and every outcome but aborted and ignored', () => {
    const summary = emptySummary();
    addResult(summary, { namespace: 'a', optedIn: true, outcomes: ['created', 'unchanged'] });
    addResult(summary, { namespace: 'b', optedIn: true, outcomes: ['updated', 'skipped'] });
    addResult(summary, { namespace: 'c', optedIn: true, outcomes: ['failed', 'aborted'] });
    addResult(summary, { namespace: 'd', optedIn: false, outcomes: ['pruned', 'ignored'] });
    expect(formatSummary(summary, false)).toBe('namespaces=3 created=1 updated=1 unchanged=1 skipped=1 failed=1');
    expect(formatSummary(summary, true)).toBe(
      'namespaces=3 created=1 updated=1 unchanged=1 skipped=1 failed=1 pruned=1',
    );
  });
});

describe('opting in', () => {
  const optIn = { label: 'acr-pull-webhook/inject', value: 'enabled' };
  test.each([
    { why: 'the label with the value opts in', labels: { 'acr-pull-webhook/inject': 'enabled' }, expected: true },
    { why: 'another value does not', labels: { 'acr-pull-webhook/inject': 'disabled' }, expected: false },
    { why: 'no label does not', labels: {}, expected: false },
  ])('$why', ({ labels, expected }) => {
    expect(isOptedIn({ name: 'n', labels, terminating: false }, optIn)).toBe(expected);
  });
});

describe('redaction', () => {
  test('replaces every current credential form, and leaves short strings alone', () => {
    const redact = credentialRedactor(() => ['hunter22', 'aHVudGVyMjI=', 'ab']);
    expect(redact('Invalid value: "hunter22" / aHVudGVyMjI= / ab')).toBe(
      'Invalid value: "[redacted]" / [redacted] / ab',
    );
  });
});
