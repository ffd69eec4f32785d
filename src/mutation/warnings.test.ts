import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { rules } from '../../test/support/rules.ts';
import { admissionWarnings, isAcrHost } from './warnings.ts';

const RULES = rules(
  ['myregistry.azurecr.io', 'acr-myregistry'],
  ['*.azurecr.cn', 'acr-china'],
  ['team.azurecr.us/team', 'acr-team'],
);

const warned = (image: string, server: string): string =>
  `acr-pull-webhook: no registries[] entry matches image "${image}": it will be pulled without credentials from ` +
  `this webhook (add an entry for server ${server})`;

function pod(containers: string[], more: Record<string, unknown> = {}, labels?: Record<string, string>) {
  return {
    metadata: { name: 'p', ...(labels ? { labels } : {}) },
    spec: { containers: containers.map((image, index) => ({ name: `c${index}`, image })), ...more },
  };
}

const texts = (input: unknown, suffixes: readonly string[] = []): string[] =>
  admissionWarnings(input, RULES, suffixes).map((warning) => warning.text);

describe('the warnings a pod gets', () => {
  test.each([
    { when: 'its image is on a registry an entry names: none', images: ['myregistry.azurecr.io/app'], warnings: [] },
    { when: 'its image is matched by a wildcard entry: none', images: ['contoso.azurecr.cn/app:1'], warnings: [] },
    {
      when: 'its image is on an Azure registry no entry matches: one naming the image and the server to add',
      images: ['other.azurecr.io/team/app:v1'],
      warnings: [warned('other.azurecr.io/team/app:v1', 'other.azurecr.io')],
    },
    {
      when: 'its image is on an Azure US Government registry no entry matches: one',
      images: ['gov.azurecr.us/app'],
      warnings: [warned('gov.azurecr.us/app', 'gov.azurecr.us')],
    },
    {
      when: "an entry names the host but the image is outside the entry's path prefix: one",
      images: ['team.azurecr.us/ops/app'],
      warnings: [warned('team.azurecr.us/ops/app', 'team.azurecr.us')],
    },
    {
      when: 'its image names a port no entry has: one, whose server keeps the port (ports must be equal)',
      images: ['myregistry.azurecr.io:443/app'],
      warnings: [warned('myregistry.azurecr.io:443/app', 'myregistry.azurecr.io:443')],
    },
    {
      when: 'its image host has uppercase letters: one saying to write it in lowercase',
      images: ['Other.azurecr.io/app'],
      warnings: [
        'acr-pull-webhook: no registries[] entry matches image "Other.azurecr.io/app": it will be pulled without ' +
          'credentials from this webhook (no entry can match a host with uppercase letters: write it in lowercase)',
      ],
    },
    { when: 'its image is on Docker Hub: none', images: ['nginx:1.27', 'bitnami/redis'], warnings: [] },
    { when: 'its image is on a host equal to a suffix: none', images: ['azurecr.io/app'], warnings: [] },
    { when: 'its image is on a lookalike host: none', images: ['other.azurecr.io.evil.com/app'], warnings: [] },
    { when: 'its image is not a valid reference: none', images: ['other.azurecr.io/UPPER'], warnings: [] },
    {
      when: 'two containers run the same unmatched image: one',
      images: ['other.azurecr.io/app', 'other.azurecr.io/app'],
      warnings: [warned('other.azurecr.io/app', 'other.azurecr.io')],
    },
    {
      when: 'two unmatched images share a registry: one each, in container order',
      images: ['other.azurecr.io/b', 'other.azurecr.io/a', 'myregistry.azurecr.io/c'],
      warnings: [warned('other.azurecr.io/b', 'other.azurecr.io'), warned('other.azurecr.io/a', 'other.azurecr.io')],
    },
  ])('when $when', ({ images, warnings }) => {
    expect(texts(pod(images))).toEqual(warnings);
  });

  test('init and ephemeral containers are warned about too, in the order the kubelet starts them', () => {
    const input = pod(['other.azurecr.io/app'], {
      initContainers: [{ name: 'i', image: 'init.azurecr.io/migrate' }],
      ephemeralContainers: [{ name: 'd', image: 'debug.azurecr.io/shell' }],
    });
    expect(texts(input)).toEqual([
      warned('init.azurecr.io/migrate', 'init.azurecr.io'),
      warned('other.azurecr.io/app', 'other.azurecr.io'),
      warned('debug.azurecr.io/shell', 'debug.azurecr.io'),
    ]);
  });

  test('a host under a configured suffix is warned about only with that suffix configured', () => {
    const input = pod(['team.acr.example.com/app', 'acr.example.com/app']);
    expect(texts(input)).toEqual([]);
    expect(texts(input, ['acr.example.com'])).toEqual([warned('team.acr.example.com/app', 'team.acr.example.com')]);
  });

  test('every warning has the reason unmatched_acr_host', () => {
    const reasons = admissionWarnings(pod(['a.azurecr.io/x', 'b.azurecr.io/y']), RULES, []).map((w) => w.reason);
    expect(reasons).toEqual(['unmatched_acr_host', 'unmatched_acr_host']);
  });
});

describe('pods that get no warning', () => {
  test.each([
    {
      when: 'labelled acr-pull-webhook/inject=disabled',
      input: pod(['other.azurecr.io/app'], {}, { 'acr-pull-webhook/inject': 'disabled' }),
    },
    { when: 'the object is null', input: null },
    { when: 'the object is a list', input: [pod(['other.azurecr.io/app'])] },
    { when: 'the spec is a string', input: { spec: 'other.azurecr.io/app' } },
    { when: 'containers is an object', input: { spec: { containers: { image: 'other.azurecr.io/app' } } } },
  ])('$when', ({ input }) => {
    expect(texts(input)).toEqual([]);
  });

  test('labelled acr-pull-webhook/inject with another value, the pod is warned about', () => {
    expect(texts(pod(['other.azurecr.io/app'], {}, { 'acr-pull-webhook/inject': 'enabled' }))).toHaveLength(1);
  });
});

describe('which hosts are Azure container registries', () => {
  test.each([
    { host: 'myregistry.azurecr.io', extra: [], acr: true },
    { host: 'myregistry.azurecr.cn', extra: [], acr: true },
    { host: 'myregistry.azurecr.us', extra: [], acr: true },
    { host: 'myregistry.eastus.geo.azurecr.io', extra: [], acr: true },
    { host: 'myregistry.azurecr.io:5000', extra: [], acr: true },
    { host: 'MyRegistry.AzureCR.io', extra: [], acr: true },
    { host: 'azurecr.io', extra: [], acr: false },
    { host: 'myregistry.azurecr.io.evil.com', extra: [], acr: false },
    { host: 'myregistryazurecr.io', extra: [], acr: false },
    { host: 'docker.io', extra: [], acr: false },
    { host: '[::1]:5000', extra: [], acr: false },
    { host: 'team.registry.internal', extra: ['registry.internal'], acr: true },
    { host: 'registry.internal', extra: ['registry.internal'], acr: false },
    { host: 'team.registry.internal', extra: [], acr: false },
  ])('$host with extra suffixes $extra: $acr', ({ host, extra, acr }) => {
    expect(isAcrHost(host, extra)).toBe(acr);
  });
});

describe('the limits the apiserver puts on warnings', () => {
  const unmatched = (count: number): string[] => Array.from({ length: count }, (_, i) => `r${i}.azurecr.io/app`);

  test('eight unmatched images get eight warnings', () => {
    expect(texts(pod(unmatched(8)))).toEqual(unmatched(8).map((image) => warned(image, image.split('/')[0] ?? '')));
  });

  test('nine unmatched images get seven warnings and one saying how many more there are', () => {
    const warnings = texts(pod(unmatched(9)));
    expect(warnings).toHaveLength(8);
    expect(warnings.slice(0, 7)).toEqual(unmatched(7).map((image) => warned(image, image.split('/')[0] ?? '')));
    expect(warnings[7]).toBe(
      'acr-pull-webhook: and 2 more images on Azure container registries match no registries[] entry: they will be ' +
        'pulled without credentials from this webhook',
    );
  });

  test('the longest valid reference is shortened in its middle to 256 characters, keeping its host and tag', () => {
    const host = `${'h'.repeat(60)}.${'g'.repeat(60)}.${'f'.repeat(60)}.azurecr.us:5000`;
    const image = `${host}/${'c'.repeat(254 - host.length)}:${'t'.repeat(127)}z@sha512:${'a'.repeat(128)}`;
    const [text] = texts(pod([image]));
    expect(text).toHaveLength(256);
    expect(text).toMatch(
      /^acr-pull-webhook: no registries\[\] entry matches image "hhhhh+\.\.\.a+": it will be pulled/,
    );
    expect(text).toMatch(/\(add an entry for server h+\.\.\.f+\.azurecr\.us:5000\)$/);
  });

  // The apiserver drops a text with a control character or invalid UTF-8 (NewWarningHeader), and cuts texts over
  // 256 runes once a request's warnings pass 4096 runes (filters/warning.go).
  const label = fc.oneof(
    { weight: 3, arbitrary: fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/) },
    { weight: 1, arbitrary: fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/) },
  );
  const host = fc.oneof(
    { weight: 1, arbitrary: fc.constantFrom('myregistry.azurecr.io', 'x.azurecr.cn', 'Upper.azurecr.io', 'docker.io') },
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.array(label, { minLength: 1, maxLength: 4 }), fc.constantFrom('azurecr.io', 'acr.example.com'))
        .map(([labels, suffix]) => `${labels.join('.')}.${suffix}`),
    },
  );
  const port = fc.option(
    fc.integer({ min: 0, max: 65535 }).map((p) => `:${p}`),
    { nil: '' },
  );
  const path = fc.array(fc.stringMatching(/^[a-z0-9]{1,40}([._-][a-z0-9]{1,8}){0,2}$/), { minLength: 1, maxLength: 4 });
  const tag = fc.option(fc.stringMatching(/^:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/), { nil: '' });
  const image = fc.oneof(
    { weight: 6, arbitrary: fc.tuple(host, port, path, tag).map(([h, p, r, t]) => `${h}${p}/${r.join('/')}${t}`) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 600 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map((s) => `evil.azurecr.io/${s}`) },
  );
  // Few images or more than the count limit, the first one repeated.
  const images = fc
    .oneof(fc.array(image, { maxLength: 6 }), fc.array(image, { minLength: 12, maxLength: 30 }))
    .map((list) => [...list, ...list.slice(0, 1)]);
  const controlOrBroken = (text: string): boolean => /\p{Cc}/u.test(text) || !text.isWellFormed();

  test('whatever the pod: at most 8 warnings, each 1 to 256 characters, distinct, and no control characters', () => {
    fc.assert(
      fc.property(
        images,
        fc.array(fc.constantFrom('acr.example.com', 'registry.internal'), { maxLength: 2 }),
        (images, suffixes) => {
          const warnings = texts(pod(images), suffixes);
          expect(warnings.length).toBeLessThanOrEqual(8);
          expect(new Set(warnings).size).toBe(warnings.length);
          for (const text of warnings) {
            expect([...text].length).toBeGreaterThan(0);
            expect([...text].length).toBeLessThanOrEqual(256);
            expect(controlOrBroken(text)).toBe(false);
            expect(text.startsWith('acr-pull-webhook: ')).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
