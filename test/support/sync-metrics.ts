// Scrapes `sync-secrets --watch` the way Prometheus does: GET /metrics on its health port.

export interface Scrape {
  readonly status: number;
  readonly contentType: string | null;
  readonly text: string;
  /**
   * The value of one series exactly as printed (`name` or `name{label="value"}`); throws when it is
   * missing, so an absent series never reads as 0.
   */
  value(series: string): number;
}

export async function scrapeMetrics(healthUrl: string): Promise<Scrape> {
  const response = await fetch(`${healthUrl}/metrics`);
  const text = await response.text();
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    text,
    value(series: string): number {
      const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
      if (line === undefined) throw new Error(`no sample ${series} in:\n${text}`);
      return Number(line.slice(series.length + 1));
    },
  };
}
