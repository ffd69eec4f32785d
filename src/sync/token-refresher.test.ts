// When an entry's ACR token is requested again, what happens when that fails, and how start-up gives up: on a
// fake clock, with the token client replaced by a script of answers.
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import type { AcrRefreshToken } from '../azure/acr-token-client.ts';
import type { AzureCredentials } from '../azure/azure-credentials.ts';
import { ConfigError, type RegistryEntry } from '../config/config.ts';
import {
  type AzureEntry,
  azureEntries,
  failureResult,
  type RefreshFailure,
  requestStartupTokens,
  TokenRefresher,
} from './token-refresher.ts';

const AZURE: AzureCredentials = {
  tenantId: '72f988bf-86f1-41af-91ab-2d7cd011db47',
  clientId: '6731de76-14a6-49ae-97bc-6eba6914391e',
  secretSource: { kind: 'federated-token', file: '/var/run/secrets/azure/tokens/azure-identity-token' },
  cloud: 'AzurePublicCloud',
  authorityHost: 'https://login.microsoftonline.com/',
  scope: 'https://containerregistry.azure.net/.default',
};
const ENTRY: AzureEntry = { index: 1, server: 'myregistry.azurecr.io', secretName: 'acr-myregistry', azure: AZURE };

/** A token issued at `iat` seconds, lasting `lifetime` seconds, received at once. */
const token = (name: string, iat: number, lifetime: number): AcrRefreshToken => ({
  refreshToken: name,
  times: { iat, exp: iat + lifetime },
  receivedAt: iat * 1000,
});

/** An error shaped as the token client's AcrTokenError. */
const clientError = (message: string, retriable: boolean, stage = 'entra'): Error =>
  Object.assign(new Error(message), { stage, retriable });

const seconds = (): number => Date.now() / 1000;

describe('a refresher', () => {
  beforeEach(() => void vi.useFakeTimers({ now: 0 }));
  afterEach(() => void vi.useRealTimers());

  function start(acquire: () => Promise<AcrRefreshToken>, fraction = 0.5) {
    const refreshed: string[] = [];
    const failures: RefreshFailure[] = [];
    const calls: number[] = [];
    const refresher = new TokenRefresher({
      initial: token('first', 0, 100),
      fraction,
      acquire: () => {
        calls.push(seconds());
        return acquire();
      },
      onRefreshed: (t) => refreshed.push(t.refreshToken),
      onFailure: (f) => failures.push(f),
      random: () => 0,
    });
    refresher.start();
    return { refresher, refreshed, failures, calls };
  }

  test('asks for the next token once the fraction of the lifetime has passed, then from the new one', async () => {
    let n = 0;
    const { refresher, refreshed, calls } = start(async () => token(`t${++n}`, seconds(), 100), 0.6);
    await vi.advanceTimersByTimeAsync(59_999);
    expect(calls).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toEqual([60]);
    expect(refreshed).toEqual(['t1']);
    expect(refresher.current().refreshToken).toBe('t1');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls).toEqual([60, 120]);
    expect(refresher.current().refreshToken).toBe('t2');
    await refresher.stop();
  });

  test('keeps the current token through failures, retrying 1 s, 2 s, 4 s apart, and recovers', async () => {
    const answers = [false, false, false, true];
    const { refresher, refreshed, failures, calls } = start(async () => {
      if (answers.shift() === false) throw clientError('entra: HTTP 503', true);
      return token('after-outage', seconds(), 100);
    });
    await vi.advanceTimersByTimeAsync(58_000);
    expect(calls).toEqual([50, 51, 53, 57]);
    expect(failures.map((f) => [f.keptUntil, f.retryAt])).toEqual([
      [90_000, 51_000],
      [90_000, 53_000],
      [90_000, 57_000],
    ]);
    expect(refreshed).toEqual(['after-outage']);
    expect(refresher.current().refreshToken).toBe('after-outage');
    await refresher.stop();
  });

  test('after a success the backoff starts again from 1 s', async () => {
    const answers = [false, false, true, false];
    const { refresher, calls } = start(async () => {
      if (answers.shift() === false) throw clientError('exchange: HTTP 502', true);
      return token('t', seconds(), 100);
    });
    // Fails at 50 and 51, succeeds at 53 (a 100 s token: next at 103), fails there and retries 1 s later.
    await vi.advanceTimersByTimeAsync(104_000);
    expect(calls).toEqual([50, 51, 53, 103, 104]);
    await refresher.stop();
  });

  test('a refusal is retried the same way: the configuration may be fixed on the Azure side meanwhile', async () => {
    const { refresher, failures, calls } = start(async () => {
      throw clientError('entra: AADSTS700213 ... check the federated credential subject', false);
    });
    await vi.advanceTimersByTimeAsync(54_000);
    expect(calls).toEqual([50, 51, 53]);
    expect(failures.every((f) => f.keptUntil === 90_000)).toBe(true);
    await refresher.stop();
  });

  test('retries no later than the token stops being usable, then reports it expired', async () => {
    const { refresher, failures, calls } = start(async () => {
      throw clientError('entra: connect ECONNREFUSED', true);
    });
    // 50, 51, 53, 57, 65, 81, then 90 (the usable limit: exp 100 less a tenth of the lifetime) instead of 111.
    await vi.advanceTimersByTimeAsync(90_000);
    expect(calls).toEqual([50, 51, 53, 57, 65, 81, 90]);
    expect(failures.at(-1)?.keptUntil).toBeUndefined();
    // The backoff has reached its 30 s cap by then.
    await vi.advanceTimersByTimeAsync(30_000);
    expect(calls.slice(-2)).toEqual([90, 120]);
    await refresher.stop();
  });

  test('a token that arrives already past its refresh time is not asked for again within a second', async () => {
    const { refresher, calls } = start(async () => token('stale', seconds() - 100, 100));
    await vi.advanceTimersByTimeAsync(53_500);
    expect(calls).toEqual([50, 51, 52, 53]);
    await refresher.stop();
  });

  test('stop cancels the next refresh and drops an answer still on its way', async () => {
    let answer: (t: AcrRefreshToken) => void = () => {};
    const { refresher, refreshed, calls } = start(() => new Promise((resolve) => (answer = resolve)));
    await vi.advanceTimersByTimeAsync(50_000);
    expect(calls).toEqual([50]);
    const stopped = refresher.stop();
    answer(token('late', seconds(), 100));
    await stopped;
    await vi.advanceTimersByTimeAsync(500_000);
    expect(refreshed).toEqual([]);
    expect(calls).toEqual([50]);
    expect(refresher.current().refreshToken).toBe('first');
  });
});

describe('start-up tokens', () => {
  const noSleep = async (): Promise<boolean> => true;

  test('every azure entry gets its token; file entries are left to their files', async () => {
    const registries: RegistryEntry[] = [
      {
        server: 'files.azurecr.io',
        secretName: 'a',
        credentials: { kind: 'files', usernameFile: 'u', passwordFile: 'p' },
      },
      { server: 'myregistry.azurecr.io', secretName: 'acr-myregistry', credentials: { kind: 'azure', azure: AZURE } },
    ];
    expect(azureEntries(registries)).toEqual([ENTRY]);
    const results: string[] = [];
    const tokens = await requestStartupTokens([ENTRY], {
      source: 'c.yaml',
      attempts: 5,
      acquire: async () => token('t', 0, 100),
      onResult: (entry, result) => results.push(`${entry.server} ${result}`),
    });
    expect([...tokens.keys()]).toEqual([1]);
    expect(results).toEqual(['myregistry.azurecr.io issued']);
  });

  test('a refusal ends start-up at the first attempt with one line naming the entry', async () => {
    let attempts = 0;
    const results: string[] = [];
    const failure = requestStartupTokens([ENTRY], {
      source: 'c.yaml',
      attempts: 5,
      sleep: noSleep,
      acquire: async () => {
        attempts += 1;
        throw clientError(
          'entra: HTTP 401 invalid_client AADSTS700212: check the federated credential audience',
          false,
        );
      },
      onResult: (_, result) => results.push(result),
    });
    await expect(failure).rejects.toThrow(ConfigError);
    await expect(failure).rejects.toThrow(
      'config c.yaml: registries[1] (myregistry.azurecr.io -> acr-myregistry): ' +
        'entra: HTTP 401 invalid_client AADSTS700212: check the federated credential audience',
    );
    expect(attempts).toBe(1);
    expect(results).toEqual(['rejected']);
  });

  test('a retriable failure is tried the given number of times, waiting 1, 2, 4, 8 s, then ends start-up', async () => {
    const waits: number[] = [];
    const results: string[] = [];
    const failure = requestStartupTokens([ENTRY], {
      source: 'c.yaml',
      attempts: 5,
      random: () => 0,
      sleep: async (ms) => {
        waits.push(ms);
        return true;
      },
      acquire: async () => {
        throw clientError('entra: connect ECONNREFUSED', true);
      },
      onResult: (_, result) => results.push(result),
    });
    await expect(failure).rejects.toThrow(
      'config c.yaml: registries[1] (myregistry.azurecr.io -> acr-myregistry): entra: connect ECONNREFUSED',
    );
    expect(waits).toEqual([1000, 2000, 4000, 8000]);
    expect(results).toEqual(['failed', 'failed', 'failed', 'failed', 'failed']);
  });

  test('a retriable failure that clears within the attempts still starts', async () => {
    let attempts = 0;
    const tokens = await requestStartupTokens([ENTRY], {
      source: 'c.yaml',
      attempts: 5,
      sleep: noSleep,
      acquire: async () => {
        attempts += 1;
        if (attempts < 3) throw clientError('exchange: HTTP 503', true);
        return token('third', 0, 100);
      },
    });
    expect(tokens.get(1)?.refreshToken).toBe('third');
  });

  test.each([
    { what: 'a refusal', error: clientError('x', false), result: 'rejected' },
    { what: 'a retriable failure', error: clientError('x', true), result: 'failed' },
    { what: 'an error not from the token client', error: new TypeError('x'), result: 'failed' },
  ])('$what counts as $result', ({ error, result }) => {
    expect(failureResult(error)).toBe(result);
  });
});
