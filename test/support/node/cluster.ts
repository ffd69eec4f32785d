// A one-node Kubernetes cluster that really runs pods: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kube-proxy (nftables), kubelet, containerd + runc, a CNI bridge, and two private
// registries under ACR-style names (htpasswd auth, TLS from a test CA), and when asked a third that takes
// only ACR tokens (token-registry.ts). Everything is built by `bash tools/build.sh node`.
//
// Isolation: one "holder" process (unshare) owns a new network namespace and a private mount
// namespace in which /run is a fresh tmpfs and /etc/hosts is a bind mount of the harness's own file.
// Every component is started inside both (nsenter), so the node's addresses, bridge, routes and nft
// rules exist only in that namespace, and registry names resolve only there. Pods get cgroups under a
// cgroup root of their own. The test process (in the machine's namespace) reaches the apiserver and
// registries through Unix sockets (netns-forwarder.mjs) re-exposed on 127.0.0.1. stop() kills every
// process in the namespace and in the cgroup root, removes the cgroups, and the namespaces vanish.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  type Dirent,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  copyFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { generateCa, generateServingCertificate, type PemPair } from '../../../certs-gen/generate.ts';
import { terminate as terminateChild } from '../child-process.ts';
import { deadRunDirs } from '../tmp-guard.ts';
import {
  startTokenRegistry,
  TOKEN_REGISTRY_HOST,
  TOKEN_REGISTRY_IP,
  type TokenRegistry,
  type TokenRegistryOptions,
} from './token-registry.ts';

const repoRoot = resolve(import.meta.dirname, '..', '..', '..');
const binDir = join(repoRoot, '.tools', 'bin');
const forwarderScript = join(import.meta.dirname, 'netns-forwarder.mjs');

/** Addresses inside the cluster's network namespace (nothing outside it can route to them). */
export const NODE_IP = '10.250.0.2';
const REGISTRY_IPS = ['10.250.0.2', '10.250.0.3'] as const;
/** The apiserver's --service-account-issuer: the `iss` of every ServiceAccount token it signs. */
export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';
const POD_CIDR = '10.88.0.0/24';
const SERVICE_CIDR = '10.0.0.0/24';
export const NODE_NAME = 'acr-e2e-node';
/** The two private registries' names; /etc/hosts inside the namespace points them at REGISTRY_IPS. */
export const REGISTRY_HOSTS = ['e2etest.azurecr.io', 'e2etest2.azurecr.io'] as const;
const SANDBOX_IMAGE = `${REGISTRY_HOSTS[0]}/e2e/pause:1`;
/** The test image, in both registries: Debian's static busybox, entrypoint `sleep 3600`. */
export const TEST_IMAGE_PATH = 'e2e/busybox:1';

const dirPrefix = 'acr-node-';
const ownerFile = 'owner.pid';
const startTimeoutMs = 120_000;
const stopGraceMs = 5_000;

export interface NodeClusterOptions {
  /** Progress lines (with timings) of the harness itself; component logs go to files in dir. */
  log?: (line: string) => void;
  /** Keep dir after stop(), for debugging. */
  keepDir?: boolean;
  /** Also start the passwordless registry (token-registry.ts), trusting this ServiceAccount's tokens. */
  tokenRegistry?: TokenRegistryOptions;
}

export interface Registry {
  readonly host: string;
  readonly username: string;
  password: string;
  /** Changes the password the registry accepts (rewrites htpasswd, restarts the registry). */
  setPassword(password: string): Promise<void>;
}

export interface NodeCluster {
  readonly dir: string;
  /** Admin kubeconfig for the test process: https://127.0.0.1:PORT, forwarded into the namespace. */
  readonly kubeconfigPath: string;
  /** The same admin for programs run inside the namespaces (runInside): https://NODE_IP:6443. */
  readonly insideKubeconfigPath: string;
  readonly kubeConfig: KubeConfig;
  readonly caPem: string;
  readonly caPath: string;
  readonly registries: readonly [Registry, Registry];
  /** Present when started with options.tokenRegistry. */
  readonly tokenRegistry?: TokenRegistry;
  /** The cluster's network namespace as `readlink /proc/PID/ns/net` prints it (for the leftovers check). */
  readonly netns: string;
  /** The pods' cgroup root (under each cgroup v1 hierarchy). */
  readonly cgroupRoot: string;
  /** Seconds each start phase took, for the report. */
  readonly timings: Record<string, number>;
  /** Starts a long-running process inside the cluster's namespaces (a webhook the apiserver calls). */
  spawnInside(name: string, argv: string[], env?: Record<string, string>): { child: ChildProcess; logPath: string };
  /** Runs a command inside the namespaces to completion (killed after timeoutMs, default 120 s). */
  runInside(argv: string[], env?: Record<string, string>, timeoutMs?: number): Promise<string>;
  /** A 127.0.0.1 port in the test's namespace forwarded to HOST:PORT inside the cluster's. */
  forward(target: string): Promise<number>;
  /** A serving pair for `dnsNames`, signed by the cluster's CA. */
  servingPair(dnsNames: string[]): PemPair;
  stop(): Promise<void>;
}

interface Proc {
  name: string;
  child: ChildProcess;
  logPath: string;
  exited: Promise<void>;
  exitCode?: number | string;
}

export async function startNodeCluster(options: NodeClusterOptions = {}): Promise<NodeCluster> {
  const log = options.log ?? (() => {});
  for (const bin of ['etcd', 'kube-apiserver', 'kubelet', 'containerd', 'runc', 'registry', 'crane', 'pause']) {
    if (!existsSync(join(binDir, bin)))
      throw new Error(`${join(binDir, bin)} is missing: run 'bash tools/build.sh node' first`);
  }
  await sweepOrphans(log);
  const id = randomBytes(4).toString('hex');
  const dir = join(tmpdir(), `${dirPrefix}${id}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, ownerFile), `${process.pid}\n`);
  const timings: Record<string, number> = {};
  let phaseStart = Date.now();
  const phase = (name: string): void => {
    const now = Date.now();
    timings[name] = (now - phaseStart) / 1000;
    log(`${name}: ${timings[name].toFixed(1)} s`);
    phaseStart = now;
  };

  const procs = new Set<Proc>();
  const cgroupRoot = `/${dirPrefix}${id}`;
  let holder: ChildProcess | undefined;
  let holderNetns = '';
  const hostForwards: net.Server[] = [];
  const hostSockets = new Set<net.Socket>();
  let stopped: Promise<void> | undefined;
  let tokenRegistry: TokenRegistry | undefined;

  const nsPrefix = (): string[] => {
    if (holder?.pid === undefined) throw new Error('no namespace holder');
    return ['nsenter', `--net=/proc/${holder.pid}/ns/net`, `--mount=/proc/${holder.pid}/ns/mnt`, '--'];
  };
  const path = `${binDir}:${join(binDir, 'cni')}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;

  const launch = (name: string, argv: string[], env: Record<string, string> = {}): Proc => {
    const logPath = join(dir, `${name}.log`);
    const fd = openSync(logPath, 'a');
    let child: ChildProcess;
    try {
      // pdeathsig: if the test process dies, the kernel kills the component too (see control-plane.ts).
      child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', ...nsPrefix(), ...argv], {
        cwd: dir,
        stdio: ['ignore', fd, fd],
        env: { PATH: path, HOME: dir, ...env },
      });
    } finally {
      closeSync(fd);
    }
    const proc: Proc = {
      name,
      child,
      logPath,
      exited: new Promise<void>((done) => {
        child.once('exit', (code, signal) => {
          proc.exitCode = code ?? signal ?? 'unknown';
          procs.delete(proc);
          done();
        });
        child.once('error', (err) => {
          proc.exitCode = `spawn error: ${err.message}`;
          procs.delete(proc);
          done();
        });
      }),
    };
    procs.add(proc);
    return proc;
  };

  const runInside = (argv: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<string> =>
    new Promise((ok, fail) => {
      execFile(
        nsPrefix()[0] as string,
        [...nsPrefix().slice(1), ...argv],
        { env: { PATH: path, HOME: dir, ...env }, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) =>
          err ? fail(new Error(`${argv.join(' ')} failed: ${err.message}\n${stderr}`)) : ok(stdout),
      );
    });

  let forwarderCount = 0;
  const forward = async (target: string): Promise<number> => {
    const socketPath = join(dir, `fwd-${forwarderCount++}.sock`);
    const proc = launch(`forwarder-${forwarderCount}`, [process.execPath, forwarderScript, socketPath, target]);
    await waitFor(proc, `forwarder to ${target}`, async () => existsSync(socketPath));
    const server = net.createServer((client) => {
      const upstream = net.connect(socketPath);
      hostSockets.add(client).add(upstream);
      client.once('close', () => hostSockets.delete(client));
      upstream.once('close', () => hostSockets.delete(upstream));
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    hostForwards.push(server);
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    return (server.address() as net.AddressInfo).port;
  };

  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      // Every step runs even if an earlier one failed: a half-done teardown leaves shims and cgroups.
      const errors: string[] = [];
      const step = async (what: string, run: () => Promise<void> | void): Promise<void> => {
        try {
          await run();
        } catch (err) {
          errors.push(`${what}: ${(err as Error).message}`);
        }
      };
      await step('token service', () => tokenRegistry?.stop());
      await step('close forwards', () => {
        for (const server of hostForwards) server.close();
        for (const socket of hostSockets) socket.destroy();
      });
      // Controllers first so nothing recreates what is being torn down.
      for (const name of ['kubelet', 'kube-proxy', 'kube-scheduler', 'kube-controller-manager']) {
        for (const proc of procs) if (proc.name === name) await step(name, () => terminate(proc));
      }
      await step('pods', () => killCgroupTree(cgroupRoot));
      // Everything left in the network namespace: containerd, its shims, registries, etcd, apiserver.
      if (holderNetns !== '') await step('namespace members', () => killNetnsMembers(holderNetns, holder?.pid));
      for (const proc of [...procs]) await step(proc.name, () => terminate(proc));
      await step('shims', () => killMentioning(dir));
      await step('holder', async () => {
        if (!holder || holder.exitCode !== null || holder.signalCode !== null) return;
        const exited = new Promise<void>((done) => holder?.once('exit', () => done()));
        holder.kill('SIGKILL');
        await Promise.race([exited, sleep(stopGraceMs)]);
      });
      await step('cgroups', () => removeCgroupTree(cgroupRoot));
      // A kept dir loses its owner file, so that the next start's sweep leaves it alone.
      await step('dir', () => rmSync(options.keepDir ? join(dir, ownerFile) : dir, { recursive: true, force: true }));
      process.removeListener('exit', onExit);
      if (errors.length > 0) throw new Error(`node cluster teardown: ${errors.join('; ')}`);
    })());
  const onExit = (): void => {
    for (const proc of procs) proc.child.kill('SIGKILL');
    holder?.kill('SIGKILL');
  };
  process.once('exit', onExit);

  try {
    // ---- PKI, credentials and files -----------------------------------------------------------
    const now = new Date();
    const ca = generateCa({ validityDays: 30, now, commonName: 'acr-pull-webhook node e2e CA' });
    const caPath = join(dir, 'ca.crt');
    writeFileSync(caPath, ca.certPem);
    const servingPair = (dnsNames: string[], ipAddresses: string[] = []): PemPair =>
      generateServingCertificate(ca, { dnsNames, ipAddresses, validityDays: 7, now });
    const apiserverPair = servingPair(
      [
        'localhost',
        'kubernetes',
        'kubernetes.default',
        'kubernetes.default.svc',
        'kubernetes.default.svc.cluster.local',
      ],
      ['127.0.0.1', NODE_IP, '10.0.0.1'],
    );
    writePair(dir, 'apiserver', apiserverPair);
    writePair(dir, 'registry', servingPair([...REGISTRY_HOSTS]));
    // The apiserver's client certificate for the kubelet, which trusts clients signed by the CA: without one,
    // pod logs through the API (kubectl logs, helm test --logs) are refused with 401.
    await writeClientPair(dir, 'kubelet-client', ca, 'kube-apiserver-kubelet-client');
    const sa = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(join(dir, 'sa.key'), sa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(join(dir, 'sa.pub'), sa.publicKey.export({ type: 'spki', format: 'pem' }));
    // Every component authenticates with this token as a system:masters user: enough for a test node
    // (a real one uses per-component client certificates and the Node authorizer).
    const adminToken = randomBytes(24).toString('hex');
    writeFileSync(join(dir, 'tokens.csv'), `${adminToken},admin,admin,system:masters\n`, { mode: 0o600 });
    writeFileSync(
      join(dir, 'hosts'),
      [
        '127.0.0.1 localhost',
        `${NODE_IP} ${NODE_NAME}`,
        ...REGISTRY_IPS.map((ip, i) => `${ip} ${REGISTRY_HOSTS[i]}`),
        `${TOKEN_REGISTRY_IP} ${TOKEN_REGISTRY_HOST}`,
        '',
      ].join('\n'),
    );
    // Pods get no cluster DNS; an empty resolv.conf keeps the machine's resolvers out of them.
    writeFileSync(join(dir, 'resolv.conf'), '');
    const insideKubeconfig = join(dir, 'inside.kubeconfig');
    writeFileSync(insideKubeconfig, kubeconfigYaml(`https://${NODE_IP}:6443`, ca.certPem, adminToken));
    phase('pki');

    // ---- namespaces ----------------------------------------------------------------------------
    holder = spawn(
      'setpriv',
      [
        '--pdeathsig',
        'KILL',
        '--',
        'unshare',
        '--net',
        '--mount',
        '--propagation',
        'private',
        '--',
        'sh',
        '-c',
        'mount -t tmpfs -o mode=0755 tmpfs /run && mount --bind "$1" /etc/hosts && echo ready && exec sleep 1000000',
        'holder',
        join(dir, 'hosts'),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error('namespace holder did not start within 10 s')), 10_000);
      holder?.stdout?.once('data', () => {
        clearTimeout(timer);
        ok();
      });
      holder?.once('exit', (code) => fail(new Error(`namespace holder exited (${code})`)));
    });
    holderNetns = readlinkSync(`/proc/${holder.pid}/ns/net`);
    const ip = (...args: string[]): Promise<string> => runInside(['ip', ...args]);
    await ip('link', 'set', 'lo', 'up');
    await ip('link', 'add', 'node0', 'type', 'bridge');
    for (const addr of [...REGISTRY_IPS, TOKEN_REGISTRY_IP]) await ip('addr', 'add', `${addr}/24`, 'dev', 'node0');
    await ip('link', 'set', 'node0', 'up');
    // A default route inside the namespace only: components want one to pick addresses; it leads nowhere.
    await ip('route', 'add', 'default', 'dev', 'node0');
    await runInside(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    for (const controller of cgroupV1Controllers())
      mkdirSync(join('/sys/fs/cgroup', controller, cgroupRoot), { recursive: true });
    phase('namespaces');

    // ---- registries, etcd, containerd ------------------------------------------------------------
    const registries = REGISTRY_HOSTS.map((host, i) =>
      makeRegistry(i, host, REGISTRY_IPS[i] as string, dir, launch, runInside),
    ) as [RegistryHandle, RegistryHandle];
    for (const registry of registries) await registry.start();

    const etcd = launch('etcd', [
      join(binDir, 'etcd'),
      '--name=default',
      `--data-dir=${join(dir, 'etcd')}`,
      '--listen-client-urls=http://127.0.0.1:2379',
      '--advertise-client-urls=http://127.0.0.1:2379',
      '--listen-peer-urls=http://127.0.0.1:2380',
      '--initial-advertise-peer-urls=http://127.0.0.1:2380',
      '--initial-cluster=default=http://127.0.0.1:2380',
      '--unsafe-no-fsync=true',
    ]);

    const containerdSocket = join(dir, 'containerd', 'containerd.sock');
    writeContainerdConfig(dir, caPath);
    const containerd = launch('containerd', [join(binDir, 'containerd'), '--config', join(dir, 'containerd.toml')]);
    await waitFor(containerd, 'containerd socket', async () => existsSync(containerdSocket));

    // ---- apiserver -------------------------------------------------------------------------------
    const apiserver = launch('kube-apiserver', [
      join(binDir, 'kube-apiserver'),
      '--etcd-servers=http://127.0.0.1:2379',
      '--bind-address=0.0.0.0',
      '--secure-port=6443',
      `--advertise-address=${NODE_IP}`,
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${join(dir, 'apiserver.crt')}`,
      `--tls-private-key-file=${join(dir, 'apiserver.key')}`,
      `--client-ca-file=${caPath}`,
      `--kubelet-client-certificate=${join(dir, 'kubelet-client.crt')}`,
      `--kubelet-client-key=${join(dir, 'kubelet-client.key')}`,
      `--token-auth-file=${join(dir, 'tokens.csv')}`,
      `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
      `--service-account-key-file=${join(dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      '--authorization-mode=Node,RBAC',
      '--allow-privileged=true',
    ]);
    const apiPort = await forward('127.0.0.1:6443');
    const server = `https://127.0.0.1:${apiPort}`;
    const kubeconfigPath = join(dir, 'kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfigYaml(server, ca.certPem, adminToken), { mode: 0o600 });
    await waitFor(etcd, 'etcd', async () => true);
    await waitFor(apiserver, `kube-apiserver /readyz via ${server}`, async () => {
      const res = await fetchWithCa(`${server}/readyz`, ca.certPem);
      return res.status === 200;
    });
    phase('etcd, registries, containerd, apiserver');

    // ---- images: built while the controllers start ---------------------------------------------
    const images = pushImages(dir, registries, containerdSocket, runInside);

    // ---- controllers, kubelet, kube-proxy ------------------------------------------------------
    launch('kube-controller-manager', [
      join(binDir, 'kube-controller-manager'),
      `--kubeconfig=${insideKubeconfig}`,
      `--service-account-private-key-file=${join(dir, 'sa.key')}`,
      `--root-ca-file=${caPath}`,
      '--leader-elect=false',
      '--use-service-account-credentials=false',
      '--bind-address=127.0.0.1',
    ]);
    launch('kube-scheduler', [
      join(binDir, 'kube-scheduler'),
      `--kubeconfig=${insideKubeconfig}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
    ]);
    writeFileSync(
      join(dir, 'kube-proxy.yaml'),
      toYaml({
        apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
        kind: 'KubeProxyConfiguration',
        clientConnection: { kubeconfig: insideKubeconfig },
        mode: 'nftables',
        hostnameOverride: NODE_NAME,
        clusterCIDR: POD_CIDR,
        // Leave the machine-wide conntrack sysctls alone.
        conntrack: { maxPerCore: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
        metricsBindAddress: '127.0.0.1:10249',
        healthzBindAddress: '127.0.0.1:10256',
      }),
    );
    launch('kube-proxy', [join(binDir, 'kube-proxy'), `--config=${join(dir, 'kube-proxy.yaml')}`]);

    await images;
    phase('images pushed and sandbox image imported');
    // The token registry pushes its image from images/busybox.tar; it starts while the kubelet does.
    const tokenRegistryStarted = options.tokenRegistry
      ? startTokenRegistry(
          {
            dir,
            binDir,
            caPath,
            caPem: ca.certPem,
            serviceAccountIssuer: SERVICE_ACCOUNT_ISSUER,
            apiserver: { url: server, token: adminToken },
            servingPair,
            launch,
            runInside,
            forward,
          },
          options.tokenRegistry,
        ).then((started) => {
          tokenRegistry = started;
        })
      : Promise.resolve();
    tokenRegistryStarted.catch(() => {}); // awaited below; not unhandled if the node fails first

    writeFileSync(
      join(dir, 'kubelet.yaml'),
      toYaml({
        apiVersion: 'kubelet.config.k8s.io/v1beta1',
        kind: 'KubeletConfiguration',
        // This machine has cgroup v1; since 1.35 the kubelet refuses it unless told otherwise.
        failCgroupV1: false,
        cgroupDriver: 'cgroupfs',
        cgroupRoot,
        containerRuntimeEndpoint: `unix://${containerdSocket}`,
        authentication: { anonymous: { enabled: false }, webhook: { enabled: false }, x509: { clientCAFile: caPath } },
        authorization: { mode: 'AlwaysAllow' },
        address: NODE_IP,
        readOnlyPort: 0,
        failSwapOn: false,
        podLogsDir: join(dir, 'pod-logs'),
        resolvConf: join(dir, 'resolv.conf'),
        podCIDR: POD_CIDR,
        // Shared test disks are often fuller than the default eviction thresholds allow.
        evictionHard: { 'memory.available': '50Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
        imageGCHighThresholdPercent: 100,
        imageGCLowThresholdPercent: 99,
        serializeImagePulls: false,
        nodeStatusUpdateFrequency: '5s',
        syncFrequency: '10s',
      }),
    );
    launch('kubelet', [
      join(binDir, 'kubelet'),
      `--config=${join(dir, 'kubelet.yaml')}`,
      `--kubeconfig=${insideKubeconfig}`,
      `--hostname-override=${NODE_NAME}`,
      `--node-ip=${NODE_IP}`,
      `--root-dir=${join(dir, 'kubelet')}`,
      '--v=2',
    ]);

    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const kubelet = [...procs].find((p) => p.name === 'kubelet') as Proc;
    await waitFor(kubelet, `node ${NODE_NAME} Ready`, async () => {
      const node = await core.readNode({ name: NODE_NAME });
      return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    });
    const kcm = [...procs].find((p) => p.name === 'kube-controller-manager') as Proc;
    await waitFor(kcm, 'the default ServiceAccount (controller-manager)', async () => {
      await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
      return true;
    });
    phase('node Ready');
    await tokenRegistryStarted;
    if (options.tokenRegistry) phase('token registry');

    return {
      dir,
      kubeconfigPath,
      insideKubeconfigPath: insideKubeconfig,
      kubeConfig,
      caPem: ca.certPem,
      caPath,
      registries,
      ...(tokenRegistry ? { tokenRegistry } : {}),
      timings,
      spawnInside: (name, argv, env) => {
        const proc = launch(name, argv, env);
        return { child: proc.child, logPath: proc.logPath };
      },
      netns: holderNetns,
      cgroupRoot,
      runInside,
      forward,
      servingPair: (dnsNames) => servingPair(dnsNames),
      stop,
    };
  } catch (err) {
    const tails = [...procs].map((p) => logTail(p.logPath, 15)).join('\n');
    await stop();
    throw new Error(`${(err as Error).message}\n${tails}`);
  }

  async function waitFor(proc: Proc, what: string, ready: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + startTimeoutMs;
    let last = '';
    for (;;) {
      if (proc.exitCode !== undefined)
        throw new Error(`${proc.name} exited (${proc.exitCode}) before ${what}.\n${logTail(proc.logPath, 40)}`);
      try {
        if (await ready()) return;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what} (${last.slice(0, 300)}).\n${logTail(proc.logPath, 40)}`);
      await sleep(250);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Registries and images

interface RegistryHandle extends Registry {
  start(): Promise<void>;
}

function makeRegistry(
  index: number,
  host: string,
  address: string,
  dir: string,
  launch: (name: string, argv: string[], env?: Record<string, string>) => Proc,
  runInside: (argv: string[], env?: Record<string, string>) => Promise<string>,
): RegistryHandle {
  const name = `registry-${index + 1}`;
  const configPath = join(dir, `${name}.yaml`);
  const htpasswdPath = join(dir, `${name}.htpasswd`);
  const username = `pull-${randomBytes(3).toString('hex')}`;
  writeFileSync(
    configPath,
    toYaml({
      version: 0.1,
      log: { level: 'info', accesslog: { disabled: false } },
      storage: { filesystem: { rootdirectory: join(dir, name) }, delete: { enabled: true } },
      http: {
        addr: `${address}:443`,
        secret: randomBytes(16).toString('hex'),
        tls: { certificate: join(dir, 'registry.crt'), key: join(dir, 'registry.key') },
      },
      auth: { htpasswd: { realm: host, path: htpasswdPath } },
    }),
  );
  let proc: Proc | undefined;
  const handle: RegistryHandle = {
    host,
    username,
    password: randomBytes(18).toString('base64url'),
    async start() {
      writeFileSync(htpasswdPath, await htpasswdLine(handle.username, handle.password));
      proc = launch(name, [join(binDir, 'registry'), 'serve', configPath]);
      const deadline = Date.now() + 30_000;
      // Ready when it answers /v2/ (401 without credentials), probed from inside the namespace.
      for (;;) {
        try {
          await runInside([join(binDir, 'crane'), 'catalog', host], {
            SSL_CERT_FILE: join(dir, 'ca.crt'),
            DOCKER_CONFIG: join(dir, 'no-docker-config'),
          });
          return;
        } catch (err) {
          if (/UNAUTHORIZED|401/.test((err as Error).message)) return;
          if (proc.exitCode !== undefined || Date.now() > deadline)
            throw new Error(`${name} did not start: ${(err as Error).message}\n${logTail(proc.logPath, 20)}`);
        }
        await sleep(200);
      }
    },
    async setPassword(password: string) {
      handle.password = password;
      if (proc) await terminate(proc);
      await handle.start();
    },
  };
  return handle;
}

function htpasswdLine(username: string, password: string): Promise<string> {
  return new Promise((ok, fail) =>
    execFile('htpasswd', ['-nbB', username, password], (err, stdout) =>
      err ? fail(new Error(`htpasswd (Debian's apache2-utils) failed: ${err.message}`)) : ok(stdout),
    ),
  );
}

/** Builds the pause and busybox images with crane (no base image), pushes busybox to both registries
 *  and imports the pause image into containerd (the kubelet pulls the sandbox image without credentials). */
async function pushImages(
  dir: string,
  registries: readonly RegistryHandle[],
  containerdSocket: string,
  runInside: (argv: string[], env?: Record<string, string>) => Promise<string>,
): Promise<void> {
  const imageDir = join(dir, 'images');
  const busyboxRoot = join(imageDir, 'busybox', 'bin');
  mkdirSync(busyboxRoot, { recursive: true });
  copyFileSync('/bin/busybox', join(busyboxRoot, 'busybox'));
  for (const applet of ['sh', 'sleep', 'echo', 'cat', 'ls', 'nc']) symlinkSync('busybox', join(busyboxRoot, applet));
  mkdirSync(join(imageDir, 'pause'), { recursive: true });
  copyFileSync(join(binDir, 'pause'), join(imageDir, 'pause', 'pause'));
  await runInside(['tar', '-C', join(imageDir, 'busybox'), '-cf', join(imageDir, 'busybox.tar'), 'bin']);
  await runInside(['tar', '-C', join(imageDir, 'pause'), '-cf', join(imageDir, 'pause.tar'), 'pause']);

  mkdirSync(join(dir, 'docker-config'), { recursive: true });
  const craneEnv = { SSL_CERT_FILE: join(dir, 'ca.crt'), DOCKER_CONFIG: join(dir, 'docker-config') };
  const crane = (...args: string[]): Promise<string> => runInside([join(binDir, 'crane'), ...args], craneEnv);
  for (const registry of registries) {
    await crane('auth', 'login', registry.host, '-u', registry.username, '-p', registry.password);
    const ref = `${registry.host}/${TEST_IMAGE_PATH}`;
    // A second layer naming the registry, so the two images differ and a pod's imageID shows
    // which registry its image came from (identical images would share one digest).
    const nameDir = join(imageDir, registry.host);
    mkdirSync(join(nameDir, 'etc'), { recursive: true });
    writeFileSync(join(nameDir, 'etc', 'registry'), `${registry.host}\n`);
    await runInside(['tar', '-C', nameDir, '-cf', `${nameDir}.tar`, 'etc']);
    await crane(
      'append',
      '--new_layer',
      join(imageDir, 'busybox.tar'),
      '--new_layer',
      `${nameDir}.tar`,
      '--new_tag',
      ref,
    );
    // mutate pushes by digest unless told the tag; os/arch must be set for containerd's platform match.
    await crane(
      'mutate',
      ref,
      '--tag',
      ref,
      '--set-platform',
      'linux/amd64',
      '--entrypoint',
      '/bin/sleep',
      '--cmd',
      '3600',
    );
  }
  await crane('append', '--new_layer', join(imageDir, 'pause.tar'), '--new_tag', SANDBOX_IMAGE);
  await crane(
    'mutate',
    SANDBOX_IMAGE,
    '--tag',
    SANDBOX_IMAGE,
    '--set-platform',
    'linux/amd64',
    '--entrypoint',
    '/pause',
  );
  await crane('pull', SANDBOX_IMAGE, join(imageDir, 'pause-image.tar'));
  await runInside([
    join(binDir, 'ctr'),
    '--address',
    containerdSocket,
    '--namespace',
    'k8s.io',
    'images',
    'import',
    join(imageDir, 'pause-image.tar'),
  ]);
}

function writeContainerdConfig(dir: string, caPath: string): void {
  const root = join(dir, 'containerd');
  const hostsDir = join(root, 'certs.d');
  for (const host of [...REGISTRY_HOSTS, TOKEN_REGISTRY_HOST]) {
    mkdirSync(join(hostsDir, host), { recursive: true });
    writeFileSync(
      join(hostsDir, host, 'hosts.toml'),
      `server = "https://${host}"\n\n[host."https://${host}"]\n` +
        `  capabilities = ["pull", "resolve"]\n  ca = "${caPath}"\n`,
    );
  }
  const cniConf = join(dir, 'cni', 'net.d');
  mkdirSync(cniConf, { recursive: true });
  writeFileSync(
    join(cniConf, '10-bridge.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'acr-e2e',
      plugins: [
        {
          type: 'bridge',
          bridge: 'cni0',
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: POD_CIDR }]],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir: join(dir, 'cni', 'ipam'),
          },
        },
      ],
    }),
  );
  writeFileSync(
    join(dir, 'containerd.toml'),
    `version = 3
root = "${join(root, 'root')}"
state = "${join(root, 'state')}"

[grpc]
  address = "${join(root, 'containerd.sock')}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '${SANDBOX_IMAGE}'
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = '${hostsDir}'

[plugins.'io.containerd.cri.v1.runtime']
  # This machine refuses lowering oom_score_adj (the pause container asks for -998): keep pods'
  # scores at or above containerd's own instead of failing every sandbox.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = '${join(binDir, 'runc')}'
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['${join(binDir, 'cni')}']
    conf_dir = '${cniConf}'
`,
  );
}

// ---------------------------------------------------------------------------------------------
// Teardown helpers (exported for the test that checks nothing is left behind)

/** Every cgroup hierarchy mounted under /sys/fs/cgroup (runc creates its dirs in each, name=systemd too). */
export function cgroupV1Controllers(): string[] {
  return readdirSync('/sys/fs/cgroup').filter((entry) => {
    try {
      return existsSync(join('/sys/fs/cgroup', entry, 'cgroup.procs'));
    } catch {
      return false;
    }
  });
}

function cgroupDirs(root: string): string[] {
  const out: string[] = [];
  const walk = (path: string): void => {
    if (!existsSync(path)) return;
    let entries: Dirent[] = [];
    try {
      entries = readdirSync(path, { withFileTypes: true });
    } catch {
      return; // removed meanwhile
    }
    for (const entry of entries) if (entry.isDirectory()) walk(join(path, entry.name));
    out.push(path); // children first
  };
  for (const controller of cgroupV1Controllers()) walk(join('/sys/fs/cgroup', controller, root));
  return out;
}

async function killCgroupTree(root: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const pids = new Set<number>();
    for (const path of cgroupDirs(root)) {
      let procs = '';
      try {
        procs = readFileSync(join(path, 'cgroup.procs'), 'utf8');
      } catch {
        continue; // removed meanwhile by runc or the kubelet
      }
      for (const line of procs.split('\n')) if (line.trim() !== '') pids.add(Number(line));
    }
    if (pids.size === 0 || Date.now() > deadline) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await sleep(100);
  }
}

async function removeCgroupTree(root: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    let left = 0;
    for (const path of cgroupDirs(root)) {
      try {
        rmdirSync(path);
      } catch {
        left++;
      }
    }
    if (left === 0 || Date.now() > deadline) return;
    await sleep(100);
  }
}

/** Pids of every process whose network namespace is `netns` (as readlink /proc/PID/ns/net prints it). */
export function netnsMembers(netns: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/net`) === netns) pids.push(Number(entry));
    } catch {
      // exited meanwhile, or a kernel thread
    }
  }
  return pids;
}

async function killNetnsMembers(netns: string, spare: number | undefined): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const pids = netnsMembers(netns).filter((pid) => pid !== spare);
    if (pids.length === 0 || Date.now() > deadline) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
    }
    await sleep(500);
    for (const pid of netnsMembers(netns).filter((p) => p !== spare)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

/** SIGKILLs every process whose command line mentions `text` (the shims name the run's socket). */
async function killMentioning(text: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const pids = readdirSync('/proc').filter((entry) => {
      if (!/^\d+$/.test(entry) || Number(entry) === process.pid) return false;
      try {
        return readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text);
      } catch {
        return false;
      }
    });
    if (pids.length === 0) return;
    if (Date.now() > deadline) throw new Error(`processes still running: ${pids.join(' ')}`);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone
      }
    }
    await sleep(100);
  }
}

/** Cleans up after runs whose test process died without stop() (SIGKILL, a crash): the pdeathsig
 *  watchdog killed the components it started, but not containerd's shims, the pods, their cgroups. */
async function sweepOrphans(log: (line: string) => void): Promise<void> {
  // Under vitest each run has a TMPDIR of its own (tmp-guard.ts): a killed run's dirs are in its TMPDIR.
  const dirs: string[] = [];
  for (const root of [tmpdir(), ...deadRunDirs()]) {
    try {
      for (const entry of readdirSync(root)) if (entry.startsWith(dirPrefix)) dirs.push(join(root, entry));
    } catch {
      // gone meanwhile, or unreadable: nothing of ours to sweep there
    }
  }
  for (const dir of dirs) {
    const entry = basename(dir);
    let owner: number;
    try {
      owner = Number.parseInt(readFileSync(join(dir, ownerFile), 'utf8'), 10);
    } catch {
      continue; // kept on purpose, or not ours
    }
    try {
      process.kill(owner, 0);
      continue; // still running
    } catch {
      // owner gone
    }
    log(`removing an orphaned node cluster: ${dir}`);
    await killMentioning(dir);
    await killCgroupTree(`/${entry}`);
    await removeCgroupTree(`/${entry}`);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function terminate(proc: Proc): Promise<void> {
  await terminateChild(proc.child, stopGraceMs);
  await proc.exited;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function writePair(dir: string, name: string, pair: PemPair): void {
  writeFileSync(join(dir, `${name}.crt`), pair.certPem);
  writeFileSync(join(dir, `${name}.key`), pair.keyPem, { mode: 0o600 });
}

/** A clientAuth certificate signed by `ca` (certs-gen makes serving certificates only), with openssl. */
async function writeClientPair(dir: string, name: string, ca: PemPair, commonName: string): Promise<void> {
  const caKey = join(dir, `${name}-ca.key`);
  writeFileSync(caKey, ca.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, `${name}.ext`), 'extendedKeyUsage = clientAuth\nkeyUsage = critical, digitalSignature\n');
  const openssl = (...args: string[]): Promise<void> =>
    new Promise((ok, fail) =>
      execFile('openssl', args, { cwd: dir }, (err, _out, stderr) =>
        err ? fail(new Error(`openssl ${args[0]}: ${err.message}\n${stderr}`)) : ok(),
      ),
    );
  await openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`);
  await openssl('req', '-new', '-key', `${name}.key`, '-subj', `/CN=${commonName}`, '-out', `${name}.csr`);
  await openssl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.crt',
    '-CAkey',
    caKey,
    '-set_serial',
    '1',
    '-days',
    '7',
    '-extfile',
    `${name}.ext`,
    '-out',
    `${name}.crt`,
  );
  rmSync(caKey);
}

function kubeconfigYaml(server: string, caPem: string, token: string): string {
  return toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: 'node-e2e', cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } },
    ],
    users: [{ name: 'admin', user: { token } }],
    contexts: [{ name: 'admin@node-e2e', context: { cluster: 'node-e2e', user: 'admin' } }],
    'current-context': 'admin@node-e2e',
  });
}

async function fetchWithCa(url: string, caPem: string): Promise<{ status: number }> {
  const https = await import('node:https');
  return new Promise((ok, fail) => {
    const req = https.get(url, { ca: caPem }, (res) => {
      res.resume();
      ok({ status: res.statusCode ?? 0 });
    });
    req.setTimeout(2_000, () => req.destroy(new Error('timeout')));
    req.on('error', fail);
  });
}

function logTail(path: string, lines: number): string {
  try {
    return `--- ${path}:\n${readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')}`;
  } catch {
    return `(no log at ${path})`;
  }
}
