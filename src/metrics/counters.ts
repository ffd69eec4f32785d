// Shared by the webhook's and sync-secrets' metrics.
import { Counter, type Registry } from 'prom-client';

/**
 * A counter with one label whose values are known up front, each started at zero: a series that
 * appears only on its first event breaks rate() and absent() until then, and alerts on it never fire.
 */
export function zeroedCounter<L extends string>(
  registry: Registry,
  options: { readonly name: string; readonly help: string; readonly label: L; readonly values: readonly string[] },
): Counter<L> {
  const counter = new Counter<L>({
    name: options.name,
    help: options.help,
    labelNames: [options.label],
    registers: [registry],
  });
  for (const value of options.values) counter.inc({ [options.label]: value } as Partial<Record<L, string>>, 0);
  return counter;
}
