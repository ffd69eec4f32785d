// The metrics of `sync-secrets --watch` as Prometheus scrapes them: names, types and label values
// pinned as literal text, since alerts and dashboards depend on them.
import { describe, expect, test } from 'vitest';
import { SYNC_SECRET_RESULTS } from '../constants.ts';
import { createSyncMetrics } from './metrics.ts';
import { emptySummary } from './reconciler.ts';

const samples = (text: string): string[] => text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));

describe('sync-secrets metrics', () => {
  test('a first scrape has every series, at zero, so rate() and absent() work at once', async () => {
    const metrics = createSyncMetrics({ processMetrics: false, isLeader: () => false, optedInNamespaces: () => 0 });
    const text = await metrics.registry.metrics();
    expect(samples(text).sort()).toEqual(
      [
        'acr_pull_webhook_sync_secret_reconciles_total{result="created"} 0',
        'acr_pull_webhook_sync_secret_reconciles_total{result="updated"} 0',
        'acr_pull_webhook_sync_secret_reconciles_total{result="unchanged"} 0',
        'acr_pull_webhook_sync_secret_reconciles_total{result="skipped"} 0',
        'acr_pull_webhook_sync_secret_reconciles_total{result="failed"} 0',
        'acr_pull_webhook_sync_secret_reconciles_total{result="pruned"} 0',
        'acr_pull_webhook_sync_passes_total{result="success"} 0',
        'acr_pull_webhook_sync_passes_total{result="failure"} 0',
        'acr_pull_webhook_sync_credential_reloads_total{result="loaded"} 0',
        'acr_pull_webhook_sync_credential_reloads_total{result="rejected"} 0',
        'acr_pull_webhook_sync_events_dropped_total{type="Normal"} 0',
        'acr_pull_webhook_sync_events_dropped_total{type="Warning"} 0',
        'acr_pull_webhook_sync_leader 0',
        'acr_pull_webhook_sync_opted_in_namespaces 0',
        'acr_pull_webhook_sync_last_success_timestamp_seconds 0',
      ].sort(),
    );
    for (const [name, type] of [
      ['acr_pull_webhook_sync_secret_reconciles_total', 'counter'],
      ['acr_pull_webhook_sync_passes_total', 'counter'],
      ['acr_pull_webhook_sync_credential_reloads_total', 'counter'],
      ['acr_pull_webhook_sync_events_dropped_total', 'counter'],
      ['acr_pull_webhook_sync_leader', 'gauge'],
      ['acr_pull_webhook_sync_opted_in_namespaces', 'gauge'],
      ['acr_pull_webhook_sync_last_success_timestamp_seconds', 'gauge'],
    ]) {
      expect(text).toContain(`# TYPE ${name} ${type}\n`);
    }
  });

  test('the secret results are exactly what the --once summary counts', () => {
    expect([...SYNC_SECRET_RESULTS].sort()).toEqual(
      Object.keys(emptySummary())
        .filter((key) => key !== 'namespaces')
        .sort(),
    );
  });

  test('the leader and namespace gauges are read at scrape time', async () => {
    let leader = false;
    let namespaces = 3;
    const metrics = createSyncMetrics({
      processMetrics: false,
      isLeader: () => leader,
      optedInNamespaces: () => namespaces,
    });
    expect(samples(await metrics.registry.metrics())).toEqual(
      expect.arrayContaining(['acr_pull_webhook_sync_leader 0', 'acr_pull_webhook_sync_opted_in_namespaces 3']),
    );
    leader = true;
    namespaces = 12;
    expect(samples(await metrics.registry.metrics())).toEqual(
      expect.arrayContaining(['acr_pull_webhook_sync_leader 1', 'acr_pull_webhook_sync_opted_in_namespaces 12']),
    );
    leader = false;
    expect(samples(await metrics.registry.metrics())).toContain('acr_pull_webhook_sync_leader 0');
  });

  test('counters and the timestamp show what was recorded', async () => {
    const metrics = createSyncMetrics({ processMetrics: false, isLeader: () => true, optedInNamespaces: () => 1 });
    metrics.secrets.inc({ result: 'created' }, 2);
    metrics.passes.inc({ result: 'success' });
    metrics.credentialReloads.inc({ result: 'rejected' });
    metrics.lastSuccess.set(1_767_225_600.5);
    expect(samples(await metrics.registry.metrics())).toEqual(
      expect.arrayContaining([
        'acr_pull_webhook_sync_secret_reconciles_total{result="created"} 2',
        'acr_pull_webhook_sync_passes_total{result="success"} 1',
        'acr_pull_webhook_sync_credential_reloads_total{result="rejected"} 1',
        'acr_pull_webhook_sync_last_success_timestamp_seconds 1767225600.5',
      ]),
    );
  });

  test('each azure server has its token request series at zero from the start, and no expiry until set', async () => {
    const metrics = createSyncMetrics({
      processMetrics: false,
      isLeader: () => true,
      optedInNamespaces: () => 0,
      tokenServers: ['myregistry.azurecr.io', 'other.azurecr.cn', 'myregistry.azurecr.io'],
    });
    const text = await metrics.registry.metrics();
    expect(samples(text).filter((line) => line.includes('_token_'))).toEqual([
      'acr_pull_webhook_sync_token_requests_total{server="myregistry.azurecr.io",result="issued"} 0',
      'acr_pull_webhook_sync_token_requests_total{server="myregistry.azurecr.io",result="rejected"} 0',
      'acr_pull_webhook_sync_token_requests_total{server="myregistry.azurecr.io",result="failed"} 0',
      'acr_pull_webhook_sync_token_requests_total{server="other.azurecr.cn",result="issued"} 0',
      'acr_pull_webhook_sync_token_requests_total{server="other.azurecr.cn",result="rejected"} 0',
      'acr_pull_webhook_sync_token_requests_total{server="other.azurecr.cn",result="failed"} 0',
    ]);
    expect(text).toContain('# TYPE acr_pull_webhook_sync_token_requests_total counter\n');
    expect(text).toContain('# TYPE acr_pull_webhook_sync_token_expiry_timestamp_seconds gauge\n');
  });

  test('a token expiry and request results show per server', async () => {
    const metrics = createSyncMetrics({
      processMetrics: false,
      isLeader: () => true,
      optedInNamespaces: () => 0,
      tokenServers: ['myregistry.azurecr.io'],
    });
    metrics.tokenExpiry.set({ server: 'myregistry.azurecr.io' }, 1_767_236_400);
    metrics.tokenRequests.inc({ server: 'myregistry.azurecr.io', result: 'issued' });
    metrics.tokenRequests.inc({ server: 'myregistry.azurecr.io', result: 'failed' }, 3);
    expect(samples(await metrics.registry.metrics())).toEqual(
      expect.arrayContaining([
        'acr_pull_webhook_sync_token_expiry_timestamp_seconds{server="myregistry.azurecr.io"} 1767236400',
        'acr_pull_webhook_sync_token_requests_total{server="myregistry.azurecr.io",result="issued"} 1',
        'acr_pull_webhook_sync_token_requests_total{server="myregistry.azurecr.io",result="rejected"} 0',
        'acr_pull_webhook_sync_token_requests_total{server="myregistry.azurecr.io",result="failed"} 3',
      ]),
    );
  });

  test('each instance has its own registry; process metrics only when asked for', async () => {
    const a = createSyncMetrics({ processMetrics: true, isLeader: () => true, optedInNamespaces: () => 0 });
    const b = createSyncMetrics({ processMetrics: false, isLeader: () => true, optedInNamespaces: () => 0 });
    a.secrets.inc({ result: 'failed' });
    const textA = await a.registry.metrics();
    const textB = await b.registry.metrics();
    expect(textA).toContain('acr_pull_webhook_sync_secret_reconciles_total{result="failed"} 1');
    expect(textB).toContain('acr_pull_webhook_sync_secret_reconciles_total{result="failed"} 0');
    expect(textA).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(textB).not.toContain('process_');
    expect(textB).not.toContain('nodejs_');
  });
});
