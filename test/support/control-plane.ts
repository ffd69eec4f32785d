// A real Kubernetes control plane (etcd + kube-apiserver, built by tools/build.sh) on loopback, for
// the e2e tests and the local demo. No controller-manager, scheduler or kubelet: objects are stored
// and admitted (which is what a mutating webhook needs) but nothing reconciles them, so pods stay
// Pending, namespaces never finish deleting and ServiceAccounts are not created for you.
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants as fsConstants,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ApiException, CoreV1Api, KubeConfig, type V1Namespace } from '@kubernetes/client-node';
import forge from 'node-forge';
import { stringify as toYaml } from 'yaml';
import { terminate as terminateChild } from './child-process.ts';
import { deadRunDirs, isAlive } from './tmp-guard.ts';

export interface ControlPlaneOptions {
  /** Directory to hold everything (created if missing). Default: a fresh temp dir. Removed by stop(). */
  dir?: string;
  /** Passed as --enable-admission-plugins (in addition to the apiserver's default set). */
  admissionPlugins?: string[];
  /** Passed as --disable-admission-plugins. */
  disableAdmissionPlugins?: string[];
  /** Progress lines of the harness itself; the binaries' own logs go to files in dir. */
  log?: (line: string) => void;
  /** Keep dir (logs, certs, etcd data) after stop(), for debugging. */
  keepDir?: boolean;
  /** More kube-apiserver flags, after the harness's own (the benchmark's audit log). */
  apiserverArgs?: string[];
}

export interface ControlPlane {
  /** Directory holding certs, kubeconfig, etcd data and the logs etcd.log / kube-apiserver.log. */
  dir: string;
  /** https://127.0.0.1:PORT */
  server: string;
  /** Admin kubeconfig (client cert CN=admin, O=system:masters) written in dir. */
  kubeconfigPath: string;
  /** CA that signs the apiserver serving cert (and the admin client cert). */
  caPem: string;
  /** Admin client for the apiserver. */
  kubeConfig: KubeConfig;
  /** http://127.0.0.1:PORT */
  etcdUrl: string;
  /** Process ids of etcd and the kube-apiserver running now (a restart changes the latter). */
  pids(): { etcd: number; apiserver: number };
  /** Stops kube-apiserver and starts it again on the same port and etcd; resolves once ready. */
  restartApiserver(): Promise<void>;
  /** Stops both processes and removes dir. Idempotent. */
  stop(): Promise<void>;
}

export type ToolName = 'kube-apiserver' | 'etcd' | 'helm' | 'keychain-check' | 'prometheus' | 'promtool';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const tempPrefix = 'acr-pull-webhook-cp-';
const ownerFile = 'owner.pid';
const startTimeoutMs = 90_000;
const stopGraceMs = 5_000;

/** Absolute path of a binary built by tools/build.sh; throws if it has not been built. */
export function toolPath(name: ToolName): string {
  const path = join(repoRoot, '.tools', 'bin', name);
  try {
    accessSync(path, fsConstants.X_OK);
  } catch {
    throw new Error(
      `${name} not found at ${path}: build the control-plane tools first with 'bash tools/build.sh' ` +
        `(the first build takes about 10 minutes on 2 cores; later runs take seconds)`,
    );
  }
  return path;
}

/** Creates a namespace and its `default` ServiceAccount, which the ServiceAccount admission plugin
 *  requires before pods can be created (there is no controller-manager to create it). */
export async function createNamespace(
  kc: KubeConfig,
  name: string,
  labels?: Record<string, string>,
): Promise<V1Namespace> {
  const core = kc.makeApiClient(CoreV1Api);
  const ns = await core.createNamespace({ body: { metadata: labels ? { name, labels } : { name } } });
  try {
    await core.createNamespacedServiceAccount({ namespace: name, body: { metadata: { name: 'default' } } });
  } catch (err) {
    if (!(err instanceof ApiException && err.code === 409)) throw err;
  }
  return ns;
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? (() => {});
  // Resolve the binaries first: a missing build is the most likely failure and the clearest message.
  const etcdBin = toolPath('etcd');
  const apiserverBin = toolPath('kube-apiserver');

  sweepOrphans(log);
  let dir: string;
  if (opts.dir === undefined) {
    dir = await mkdtemp(join(tmpdir(), tempPrefix));
  } else {
    dir = resolve(opts.dir);
    prepareGivenDir(dir);
  }
  await writeFile(join(dir, ownerFile), `${process.pid}\n`);

  const state: State = { dir, keepDir: opts.keepDir ?? false, procs: new Set() };
  live.add(state);
  installExitHandlers();

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= stopState(state));

  try {
    const pki = await writePki(dir);
    const [etcdClientPort, etcdPeerPort, apiserverPort] = await freePorts(3);
    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const server = `https://127.0.0.1:${apiserverPort}`;

    const etcdArgs = [
      '--name=default',
      `--data-dir=${join(dir, 'etcd-data')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
      // Test data is disposable; fsync dominates etcd latency on shared disks.
      '--unsafe-no-fsync=true',
    ];
    const etcd = launch(state, 'etcd', etcdBin, etcdArgs);
    await waitUntil(etcd, `etcd at ${etcdUrl}/health`, async () => {
      const res = await httpGet(`${etcdUrl}/health`);
      return res.status === 200 && /"health":\s*"true"/.test(res.body);
    });
    log(`etcd ready at ${etcdUrl}`);

    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${apiserverPort}`,
      // There is no default route in the sandbox, so the apiserver cannot pick an address itself,
      // and nothing should try to maintain the `kubernetes` Service endpoints.
      '--advertise-address=127.0.0.1',
      '--endpoint-reconciler-type=none',
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${pki.servingCertPath}`,
      `--tls-private-key-file=${pki.servingKeyPath}`,
      `--client-ca-file=${pki.caPath}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${pki.saPublicKeyPath}`,
      `--service-account-signing-key-file=${pki.saPrivateKeyPath}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      // RBAC only: anonymous requests may read /readyz, /version (system:public-info-viewer) and
      // nothing else, which is what the tests assert and what a real cluster does.
      '--authorization-mode=RBAC',
    ];
    if (opts.admissionPlugins?.length)
      apiserverArgs.push(`--enable-admission-plugins=${opts.admissionPlugins.join(',')}`);
    if (opts.disableAdmissionPlugins?.length)
      apiserverArgs.push(`--disable-admission-plugins=${opts.disableAdmissionPlugins.join(',')}`);
    apiserverArgs.push(...(opts.apiserverArgs ?? []));

    const startApiserver = async (): Promise<void> => {
      const proc = launch(state, 'kube-apiserver', apiserverBin, apiserverArgs);
      state.apiserver = proc;
      await waitUntil(proc, `kube-apiserver at ${server}/readyz`, async () => {
        const res = await httpGet(`${server}/readyz`, pki.caPem);
        return res.status === 200;
      });
      log(`kube-apiserver ready at ${server}`);
    };
    await startApiserver();

    const kubeconfigPath = join(dir, 'kubeconfig');
    await writeFile(kubeconfigPath, kubeconfigYaml(server, pki), { mode: 0o600 });
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);

    let restarting: Promise<void> | undefined;
    return {
      dir,
      server,
      kubeconfigPath,
      caPem: pki.caPem,
      kubeConfig,
      etcdUrl,
      pids: () => ({ etcd: etcd.child.pid ?? 0, apiserver: state.apiserver?.child.pid ?? 0 }),
      restartApiserver: async () => {
        if (stopping !== undefined) throw new Error('restartApiserver() after stop()');
        // Concurrent callers share one restart rather than racing for the port.
        restarting ??= (async () => {
          try {
            if (state.apiserver) await terminate(state.apiserver);
            await startApiserver();
          } finally {
            restarting = undefined;
          }
        })();
        return restarting;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

interface Proc {
  name: string;
  child: ChildProcess;
  logPath: string;
  exitCode: number | string | undefined; // set once exited: the code, or the signal name
  exited: Promise<void>;
}

interface State {
  dir: string;
  keepDir: boolean;
  procs: Set<Proc>;
  apiserver?: Proc;
}

/** Control planes of this process not yet stopped, for the exit/signal handlers. */
const live = new Set<State>();

/**
 * Starts a binary with its output appended to <dir>/<name>.log.
 *
 * Parent-death watchdog: the binary is started through `setpriv --pdeathsig KILL`, which sets the
 * Linux parent-death signal and then execs the binary in place (same pid, no extra process). If this
 * Node process dies in any way, SIGKILL included, the kernel kills etcd and kube-apiserver at once,
 * so no orphan outlives a crashed or killed test run. The signal fires when the *thread* that spawned
 * the child exits; Node spawns from the event-loop thread of the calling process or worker, which
 * lives as long as the control plane is in use. The temp dir such a death leaves behind is swept by
 * the next startControlPlane() (see sweepOrphans).
 */
function launch(state: State, name: string, bin: string, args: string[]): Proc {
  const logPath = join(state.dir, `${name}.log`);
  const fd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', bin, ...args], {
      cwd: state.dir,
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd); // the child holds its own copy
  }
  const proc: Proc = {
    name,
    child,
    logPath,
    exitCode: undefined,
    exited: new Promise<void>((done) => {
      child.once('exit', (code, signal) => {
        proc.exitCode = code ?? signal ?? 'unknown';
        state.procs.delete(proc);
        done();
      });
      child.once('error', (err) => {
        // spawn failures (e.g. setpriv missing) are reported here and no 'exit' follows
        proc.exitCode = `spawn error: ${err.message}`;
        state.procs.delete(proc);
        done();
      });
    }),
  };
  state.procs.add(proc);
  return proc;
}

/** SIGTERM, then SIGKILL after a grace period; resolves once the process has exited. */
async function terminate(proc: Proc): Promise<void> {
  await terminateChild(proc.child, stopGraceMs);
  await proc.exited;
}

async function stopState(state: State): Promise<void> {
  // apiserver first: it would otherwise spend the grace period retrying a vanished etcd
  const procs = [...state.procs].reverse();
  for (const proc of procs) await terminate(proc);
  live.delete(state);
  // A kept dir loses its owner file so that the next start's sweep leaves it alone.
  await rm(state.keepDir ? join(state.dir, ownerFile) : state.dir, { recursive: true, force: true });
}

/** Synchronous last-resort cleanup for process exit and fatal signals. */
function killAllNow(): void {
  for (const state of live) {
    for (const proc of state.procs) proc.child.kill('SIGKILL');
    rmSync(state.keepDir ? join(state.dir, ownerFile) : state.dir, { recursive: true, force: true });
  }
  live.clear();
}

let handlersInstalled = false;
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', killAllNow);
  const onSignal = (signal: NodeJS.Signals): void => {
    killAllNow();
    // A listener replaces the default "terminate" action; if nobody else handles the signal,
    // restore that default and re-raise it so Ctrl-C still ends the process.
    if (process.listenerCount(signal) === 1) {
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** Removes temp dirs of earlier runs whose owner process is gone (it was SIGKILLed, so its exit
 *  handler never ran; the pdeathsig watchdog already killed its etcd and kube-apiserver). Under vitest
 *  each run has a TMPDIR of its own, so a killed run's dirs are in its TMPDIR, not in this one. */
function sweepOrphans(log: (line: string) => void): void {
  const dirs: string[] = [];
  for (const root of [tmpdir(), ...deadRunDirs()]) {
    try {
      for (const entry of readdirSync(root)) if (entry.startsWith(tempPrefix)) dirs.push(join(root, entry));
    } catch {
      // gone meanwhile, or unreadable: nothing of ours to sweep there
    }
  }
  for (const dir of dirs) {
    let pid: number;
    try {
      pid = Number.parseInt(readFileSync(join(dir, ownerFile), 'utf8'), 10);
    } catch {
      continue; // no owner: kept on purpose (keepDir) or not ours to judge
    }
    if (Number.isInteger(pid) && isAlive(pid)) continue;
    log(`removing orphaned control-plane dir ${dir}`);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A caller-chosen dir (e.g. the demo's .run/control-plane) must start empty: etcd would otherwise
 *  resume old data that the freshly generated CA and service-account key no longer match. The only
 *  contents wiped automatically are those of a control plane whose owner process is gone. */
function prepareGivenDir(dir: string): void {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    mkdirSync(dir, { recursive: true });
    return;
  }
  if (entries.length === 0) return;
  let owner: number | undefined;
  try {
    owner = Number.parseInt(readFileSync(join(dir, ownerFile), 'utf8'), 10);
  } catch {
    owner = undefined;
  }
  if (owner === undefined || !Number.isInteger(owner)) {
    throw new Error(
      `control-plane dir ${dir} is not empty and holds no running or dead control plane; remove it or pick another dir`,
    );
  }
  if (isAlive(owner)) throw new Error(`control-plane dir ${dir} is in use by process ${owner}`);
  for (const entry of entries) rmSync(join(dir, entry), { recursive: true, force: true });
}

async function waitUntil(proc: Proc, what: string, ready: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + startTimeoutMs;
  let lastError = '';
  for (;;) {
    if (proc.exitCode !== undefined) {
      throw new Error(`${proc.name} exited (${proc.exitCode}) before ${what} was ready.\n${await logTail(proc)}`);
    }
    try {
      if (await ready()) return;
      lastError = 'not ready yet';
    } catch (err) {
      lastError = (err as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${startTimeoutMs / 1000}s waiting for ${what} (${lastError}).\n${await logTail(proc)}`,
      );
    }
    await sleep(200);
  }
}

async function logTail(proc: Proc, lines = 50): Promise<string> {
  let text = '';
  try {
    text = await readFile(proc.logPath, 'utf8');
  } catch {
    return `(no log at ${proc.logPath})`;
  }
  const tail = text.trimEnd().split('\n').slice(-lines).join('\n');
  return `last ${lines} lines of ${proc.logPath}:\n${tail}`;
}

function httpGet(url: string, caPem?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolveGet, reject) => {
    const onResponse = (res: http.IncomingMessage): void => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    };
    const req = url.startsWith('https:')
      ? https.get(url, caPem === undefined ? {} : { ca: caPem }, onResponse)
      : http.get(url, onResponse);
    req.setTimeout(2_000, () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

/** Distinct free loopback ports. All are held open together so the kernel cannot hand out one twice;
 *  another process could still grab one before our binaries bind it, which is rare on a test box. */
async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const srv = net.createServer();
      servers.push(srv);
      await new Promise<void>((ok, fail) => {
        srv.once('error', fail);
        srv.listen(0, '127.0.0.1', ok);
      });
      ports.push((srv.address() as net.AddressInfo).port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((ok) => s.close(() => ok()))));
  }
}

// ---------------------------------------------------------------------------------------------
// PKI and kubeconfig

interface Pki {
  caPem: string;
  caPath: string;
  servingCertPath: string;
  servingKeyPath: string;
  adminCertPem: string;
  adminKeyPem: string;
  saPublicKeyPath: string;
  saPrivateKeyPath: string;
}

async function writePki(dir: string): Promise<Pki> {
  const pkiDir = join(dir, 'pki');
  mkdirSync(pkiDir, { recursive: true, mode: 0o700 });

  const ca = rsaKeyPair();
  const caCert = signCert({
    subject: [{ name: 'commonName', value: 'acr-pull-webhook test CA' }],
    publicKey: ca.publicKey,
    issuer: undefined,
    issuerKey: ca.privateKey,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ],
  });

  const serving = rsaKeyPair();
  const servingCert = signCert({
    subject: [{ name: 'commonName', value: 'kube-apiserver' }],
    publicKey: serving.publicKey,
    issuer: caCert,
    issuerKey: ca.privateKey,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 7, ip: '127.0.0.1' },
          { type: 2, value: 'localhost' },
          // the in-cluster names and Service IP of the apiserver, as a real serving cert has
          { type: 7, ip: '10.0.0.1' },
          { type: 2, value: 'kubernetes' },
          { type: 2, value: 'kubernetes.default' },
          { type: 2, value: 'kubernetes.default.svc' },
          { type: 2, value: 'kubernetes.default.svc.cluster.local' },
        ],
      },
    ],
  });

  const admin = rsaKeyPair();
  const adminCert = signCert({
    subject: [
      { name: 'commonName', value: 'admin' },
      { name: 'organizationName', value: 'system:masters' },
    ],
    publicKey: admin.publicKey,
    issuer: caCert,
    issuerKey: ca.privateKey,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', clientAuth: true },
    ],
  });

  // One ECDSA key signs service-account tokens and (its public half) verifies them.
  const sa = generateKeyPairSync('ec', { namedCurve: 'P-256' });

  const pem = (c: forge.pki.Certificate): string => forge.pki.certificateToPem(c);
  const pki: Pki = {
    caPem: pem(caCert),
    caPath: join(pkiDir, 'ca.crt'),
    servingCertPath: join(pkiDir, 'apiserver.crt'),
    servingKeyPath: join(pkiDir, 'apiserver.key'),
    adminCertPem: pem(adminCert),
    adminKeyPem: admin.privateKeyPem,
    saPublicKeyPath: join(pkiDir, 'sa.pub'),
    saPrivateKeyPath: join(pkiDir, 'sa.key'),
  };
  await Promise.all([
    writeFile(pki.caPath, pki.caPem),
    writeFile(pki.servingCertPath, pem(servingCert)),
    writeFile(pki.servingKeyPath, serving.privateKeyPem, { mode: 0o600 }),
    writeFile(pki.saPublicKeyPath, sa.publicKey.export({ type: 'spki', format: 'pem' })),
    writeFile(pki.saPrivateKeyPath, sa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 }),
  ]);
  return pki;
}

interface RsaKeyPair {
  publicKey: forge.pki.rsa.PublicKey;
  privateKey: forge.pki.rsa.PrivateKey;
  privateKeyPem: string;
}

/** Native key generation (node-forge's pure-JS RSA keygen takes seconds per key on these machines);
 *  node-forge only builds and signs the certificates, which node:crypto cannot do. */
function rsaKeyPair(): RsaKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privateKeyPem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  return {
    publicKey: forge.pki.publicKeyFromPem(
      publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    ) as forge.pki.rsa.PublicKey,
    privateKey: forge.pki.privateKeyFromPem(privateKeyPem) as forge.pki.rsa.PrivateKey,
    privateKeyPem,
  };
}

function signCert(spec: {
  subject: forge.pki.CertificateField[];
  publicKey: forge.pki.rsa.PublicKey;
  issuer: forge.pki.Certificate | undefined; // undefined: self-signed
  issuerKey: forge.pki.rsa.PrivateKey;
  extensions: object[];
}): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = spec.publicKey;
  // Go rejects negative serial numbers: clear the top bit of the first byte.
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  cert.serialNumber = serial.toString('hex');
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 60 * 60 * 1000); // tolerate clock skew
  cert.validity.notAfter = new Date(now + 365 * 24 * 60 * 60 * 1000);
  cert.setSubject(spec.subject);
  cert.setIssuer(spec.issuer ? spec.issuer.subject.attributes : spec.subject);
  cert.setExtensions(spec.extensions);
  cert.sign(spec.issuerKey, forge.md.sha256.create());
  return cert;
}

function kubeconfigYaml(server: string, pki: Pki): string {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster: { server, 'certificate-authority-data': b64(pki.caPem) } }],
    users: [
      {
        name: 'admin',
        user: { 'client-certificate-data': b64(pki.adminCertPem), 'client-key-data': b64(pki.adminKeyPem) },
      },
    ],
    contexts: [{ name: 'admin@test', context: { cluster: 'test', user: 'admin' } }],
    'current-context': 'admin@test',
  });
}
