// One copy of values that thousands of watched objects share (a Secret's data, our label and annotation, a
// namespace label's value): each is otherwise parsed into a copy of its own. Bounded, as the values come from the
// cluster: past the limit it starts afresh, and what is already held keeps its copy.

/** The most distinct values an Interner remembers before it starts afresh. */
const INTERNED_LIMIT = 256;

export class Interner {
  private readonly strings = new Map<string, string>();
  private readonly maps = new Map<string, Readonly<Record<string, string>>>();

  /** The one copy of `value`. */
  string(value: string): string {
    const known = this.strings.get(value);
    if (known !== undefined) return known;
    if (this.strings.size >= INTERNED_LIMIT) this.strings.clear();
    this.strings.set(value, value);
    return value;
  }

  /**
   * The one frozen copy of a string map equal to `values` (same keys in the same order, same values): labels,
   * annotations and data that most Secrets of a name share cost one object, not one each.
   */
  map(values: Readonly<Record<string, string>>): Readonly<Record<string, string>> {
    const signature = JSON.stringify(values);
    const known = this.maps.get(signature);
    if (known !== undefined) return known;
    const copy: Record<string, string> = {};
    for (const [key, value] of Object.entries(values)) copy[key] = this.string(value);
    if (this.maps.size >= INTERNED_LIMIT) this.maps.clear();
    const frozen = Object.freeze(copy);
    this.maps.set(signature, frozen);
    return frozen;
  }
}
