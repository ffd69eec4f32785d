/** A command line that cannot be acted on; the CLI prints it with the usage hint and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Parses a whole number in [min, max] from a flag or environment variable, naming it when it is not one. */
export function parseInteger(value: string, name: string, min: number, max: number): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${name}: "${value}" is not a whole number`);
  const number = Number(value);
  if (number < min || number > max) throw new UsageError(`${name}: ${number} is not between ${min} and ${max}`);
  return number;
}
