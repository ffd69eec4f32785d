// Reads the registry credentials sync-secrets writes into pull secrets, and notices when they change:
// files (usernameFile, passwordFile) and, for `credentials.azure` entries, the ACR refresh token the
// caller holds (src/sync/token-refresher.ts). Values stay in memory only: every error and log line
// names the entry and the file, never a byte of what is in it. Kubernetes updates a mounted Secret
// by swapping a `..data` symlink, which fs.watch on a file can miss, so the directories are watched
// AND the files polled, and a change is decided by comparing bytes (as the serving certificate
// source does).
import { readFileSync } from 'node:fs';
import { ConfigError, type RegistryEntry } from '../config/config.ts';
import { ACR_REFRESH_TOKEN_USERNAME } from '../constants.ts';
import { ReloadingFiles, type FileBytes } from '../files/reloading-files.ts';

/** One configured registry with the credential read from its files. */
export interface RegistryCredential {
  readonly server: string;
  readonly secretName: string;
  readonly username: string;
  readonly password: string;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** ACR refresh tokens of the azure entries, by index in the config's `registries`. */
export type TokensByEntry = ReadonlyMap<number, string>;

/** How every message about one registry entry starts. */
export function entryLabel(
  source: string,
  index: number,
  entry: { readonly server: string; readonly secretName: string },
): string {
  return `config ${source}: registries[${index}] (${entry.server} -> ${entry.secretName})`;
}

function readBytes(label: string, field: string, path: string): FileBytes {
  try {
    return { path, bytes: readFileSync(path) };
  } catch (error) {
    throw new ConfigError(
      `${label}: credentials.${field} ${path}: cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
}

/**
 * A file's text without trailing line breaks: files written with `echo` or by an editor end in one,
 * and `kubectl create secret docker-registry --docker-password="$(cat file)"` drops them too.
 */
function decode(label: string, field: string, file: FileBytes): string {
  let text: string;
  try {
    text = utf8.decode(file.bytes);
  } catch {
    throw new ConfigError(`${label}: credentials.${field} ${file.path}: is not valid UTF-8`);
  }
  text = text.replace(/[\r\n]+$/, '');
  if (text === '') throw new ConfigError(`${label}: credentials.${field} ${file.path}: is empty`);
  return text;
}

interface Snapshot {
  readonly credentials: readonly RegistryCredential[];
  readonly files: readonly FileBytes[];
}

function readSnapshot(registries: readonly RegistryEntry[], source: string, tokens: TokensByEntry): Snapshot {
  const credentials: RegistryCredential[] = [];
  const files: FileBytes[] = [];
  registries.forEach((entry, index) => {
    const label = entryLabel(source, index, entry);
    if (entry.credentials === undefined) {
      throw new ConfigError(
        `${label}: credentials: is required by sync-secrets (usernameFile and passwordFile, or azure)`,
      );
    }
    if (entry.credentials.kind === 'azure') {
      // The null-GUID user tells the registry the password is an ACR refresh token (Azure/acr AAD-OAuth.md).
      const token = tokens.get(index);
      if (token === undefined) throw new Error(`${label}: no ACR refresh token was requested for this entry`);
      credentials.push({
        server: entry.server,
        secretName: entry.secretName,
        username: ACR_REFRESH_TOKEN_USERNAME,
        password: token,
      });
      return;
    }
    const usernameFile = readBytes(label, 'usernameFile', entry.credentials.usernameFile);
    const passwordFile = readBytes(label, 'passwordFile', entry.credentials.passwordFile);
    const username = decode(label, 'usernameFile', usernameFile);
    const password = decode(label, 'passwordFile', passwordFile);
    // The kubelet splits the `auth` field at the first ':' into username and password.
    if (username.includes(':')) {
      throw new ConfigError(
        `${label}: credentials.usernameFile ${usernameFile.path}: must not contain ':' ` +
          '(the kubelet splits user:password at the first one)',
      );
    }
    files.push(usernameFile, passwordFile);
    credentials.push({ server: entry.server, secretName: entry.secretName, username, password });
  });
  return { credentials, files };
}

/**
 * Reads every entry's credentials (an azure entry's is its token from `tokens`); throws ConfigError naming the
 * entry and the file at the first problem.
 */
export function readCredentials(
  registries: readonly RegistryEntry[],
  source: string,
  tokens: TokensByEntry = new Map(),
): readonly RegistryCredential[] {
  return readSnapshot(registries, source, tokens).credentials;
}

export interface CredentialSourceOptions {
  readonly registries: readonly RegistryEntry[];
  /** The config file, for error messages. */
  readonly source: string;
  readonly pollIntervalMs: number;
  /** The azure entries' first tokens; later ones come through setToken(). */
  readonly tokens?: TokensByEntry;
  /** Called with the new credentials when any file's bytes changed and all of them are usable. */
  readonly onChange: (credentials: readonly RegistryCredential[]) => void;
  /**
   * Called (with a message naming the file, never its content) when changed files cannot be used; the
   * previous credentials stay.
   */
  readonly onReject: (reason: string) => void;
}

/** Replaced tokens still redacted from logs (a few refreshes' worth per entry). */
const RETIRED_KEPT = 8;

/** The credentials, kept fresh from their files by the shared reloading-file source, and the tokens set. */
export class CredentialSource {
  private readonly files: ReloadingFiles<readonly RegistryCredential[]>;
  private readonly tokens: Map<number, string>;
  private retired: readonly RegistryCredential[] = [];
  private readonly options: CredentialSourceOptions;

  /** Reads the initial credentials; throws ConfigError when one cannot be used. */
  constructor(options: CredentialSourceOptions) {
    this.options = options;
    this.tokens = new Map(options.tokens);
    this.files = new ReloadingFiles({
      // Tokens are read from this.tokens at each load, so a file change never brings an old token back.
      load: () => {
        const snapshot = readSnapshot(options.registries, options.source, this.tokens);
        return { value: snapshot.credentials, files: snapshot.files };
      },
      pollIntervalMs: options.pollIntervalMs,
      onChange: options.onChange,
      onReject: options.onReject,
      // A rotation that writes the username and password files one after the other is briefly half
      // done: each distinct problem is reported once, and the credentials in use stay.
      rejections: 'once-per-reason',
    });
  }

  current(): readonly RegistryCredential[] {
    const tokens = this.tokens;
    const azure = this.options.registries.map((entry) => entry.credentials?.kind === 'azure');
    return this.files.current().map((credential, i) => {
      const token = azure[i] ? tokens.get(i) : undefined;
      return token === undefined || token === credential.password ? credential : { ...credential, password: token };
    });
  }

  /** Replaces an azure entry's token; the credentials now current (onChange is for files, not called here). */
  setToken(index: number, token: string): readonly RegistryCredential[] {
    const previous = this.current();
    this.tokens.set(index, token);
    const next = this.current();
    const replaced = previous[index];
    if (replaced !== undefined && replaced.password !== token) {
      this.retired = [replaced, ...this.retired].slice(0, RETIRED_KEPT);
    }
    return next;
  }

  /**
   * What a log line must not show: the current credentials and the last tokens replaced, which a write still in
   * flight when its token was replaced may carry into an error.
   */
  redactionValues(): string[] {
    return secretValues([...this.current(), ...this.retired]);
  }

  /** Re-reads the files; reports a change only when some file's bytes differ and the new set is usable. */
  reload(): 'unchanged' | 'changed' | 'rejected' {
    const result = this.files.reload();
    return typeof result === 'string' ? result : 'rejected';
  }

  /** Watches the credential directories and polls the files. Idempotent. */
  start(): void {
    this.files.start();
  }

  stop(): void {
    this.files.stop();
  }
}

/** Every form a credential takes in a Secret or an error: raw, and inside the base64 `auth`. */
export function secretValues(credentials: readonly RegistryCredential[]): string[] {
  return credentials.flatMap((c) => [
    c.username,
    c.password,
    Buffer.from(`${c.username}:${c.password}`).toString('base64'),
  ]);
}

/** Removes every current credential form from a text before it is logged (shorter values are left: too common). */
export function credentialRedactor(values: () => readonly string[]): (text: string) => string {
  return (text) => {
    let out = text;
    for (const value of values()) {
      if (value.length >= 4) out = out.split(value).join('[redacted]');
    }
    return out;
  };
}
