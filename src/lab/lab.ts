/**
 * The real network: a client host and a server host, each a Linux network namespace,
 * joined by a veth pair.
 *
 * How a lab holds its namespaces, and why nothing can be left behind:
 *
 *   - No named namespaces (`ip netns add`) and no links in the host's own namespace.
 *     Each host is anchored by a "holder" process (`sleep infinity`) started inside a
 *     fresh network namespace with `unshare`. Every command for that host runs through
 *     `nsenter --target <holder>`. The veth pair lives only inside the two namespaces.
 *   - Every process the lab starts (holders, demos, ss, tcpdump) is started through
 *     `setpriv --pdeathsig KILL`: if this Node process dies in any way, even SIGKILL,
 *     the kernel kills them. When the last process of a namespace is gone, the kernel
 *     destroys the namespace and its links. There is nothing on disk to clean.
 *   - Every process also carries KEEPALIVE_LAB=<owner pid>:<start time>:<lab id> in its
 *     environment, so `sweepOrphans()` can find and kill anything a dead owner left
 *     (belt and braces: pdeathsig can be lost if an intermediate process re-parents).
 *
 * As root the namespaces are plain network namespaces. As an ordinary user the server
 * host is also a new user namespace (`unshare --user --map-root-user`), which gives
 * CAP_NET_ADMIN over the lab and nothing else; the client namespace is created inside it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFileSync, readdirSync, existsSync, readlinkSync } from 'node:fs';
import { LineSplitter } from './lines.ts';
import { parseProcTcp, readProcTcpText, type ProcTcpRow } from './proc-tcp.ts';

export type HostName = 'server' | 'client';
export type LabMode = 'root' | 'userns';

export const LAB_SUBNET_PREFIX = '192.0.2'; // TEST-NET-1 (RFC 5737): never routed anywhere
export const SERVER_ADDRESS = `${LAB_SUBNET_PREFIX}.1`;
export const FIRST_CLIENT_ADDRESS = `${LAB_SUBNET_PREFIX}.10`;
/** The server's interface: a bridge, the switch or router between the server and the network. */
const SERVER_IF = 'srv0';
const CLIENT_IF = 'cli0';
/** The bridge's port toward the client: the path a cut breaks. */
const PATH_IF = 'path0';
/** A second port that never goes down, so the bridge keeps its carrier while the path is cut. */
const HOLD_IF = 'hold0';
/** Buckets of each host's own TCP hash table (see Lab.create). */
const CHILD_EHASH_ENTRIES = 256;

export interface Capability {
  ok: boolean;
  mode?: LabMode;
  /** Why no lab can be made here, and what the learner can do. */
  reason?: string;
  tcpdump: boolean;
  /**
   * The kernel has bridges and iproute2 its `bridge` command: a cut breaks the path between
   * the server's bridge and the client, and both hosts' links stay up. Without, the client's
   * link is set down.
   */
  bridge: boolean;
  /** strace present: the fd-exhaustion scenario can show accept() failing. */
  strace: boolean;
  kernel: string;
}

export interface LabProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A process running inside one of the lab's hosts. */
export class LabProcess extends EventEmitter<{
  line: [stream: 'stdout' | 'stderr', line: string];
  exit: [LabProcessExit];
}> {
  readonly name: string;
  readonly host: HostName;
  readonly child: ChildProcess;
  readonly exited: Promise<LabProcessExit>;
  exitStatus: LabProcessExit | null = null;
  frozen = false;

  constructor(name: string, host: HostName, child: ChildProcess) {
    super();
    this.name = name;
    this.host = host;
    this.child = child;
    child.stdin?.on('error', () => {}); // EPIPE once the process is gone: nothing to do
    for (const stream of ['stdout', 'stderr'] as const) {
      const splitter = new LineSplitter();
      const source = child[stream];
      if (!source) continue;
      source.setEncoding('utf8');
      source.on('data', (chunk: string) => {
        for (const line of splitter.push(chunk)) this.emit('line', stream, line);
      });
      source.on('end', () => {
        for (const line of splitter.flush()) this.emit('line', stream, line);
      });
    }
    this.exited = new Promise((resolve) => {
      child.on('error', (err) => {
        this.emit('line', 'stderr', `failed to start: ${err.message}`);
      });
      child.on('close', (code, signal) => {
        this.exitStatus = { code, signal };
        this.emit('exit', this.exitStatus);
        resolve(this.exitStatus);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitStatus === null;
  }

  signal(sig: NodeJS.Signals): boolean {
    if (!this.running) return false;
    try {
      return this.child.kill(sig);
    } catch {
      return false;
    }
  }

  write(data: string): void {
    if (this.running && this.child.stdin?.writable) this.child.stdin.write(data);
  }
}

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface LabOptions {
  /** Per-namespace sysctls applied to both hosts, e.g. { 'net.ipv4.tcp_retries2': 5 }. */
  sysctls?: Record<string, string | number>;
  /** Force a mode (tests); by default root when euid is 0, else userns. */
  mode?: LabMode;
  /** Extra environment for processes started in the lab. */
  env?: Record<string, string>;
}

let labCounter = 0;
const OWNER_TAG = `${process.pid}:${processStartTime(process.pid) ?? 0}`;

function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime); the command name in field 2 may contain spaces, so cut after ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

function which(cmd: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin'])) {
    if (dir && existsSync(`${dir}/${cmd}`)) return true;
  }
  return false;
}

function kernelRelease(): string {
  try {
    return readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** Runs a command to completion and collects its output (bounded). */
function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv, input?: string): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const cap = 1 << 20;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < cap) stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < cap) stderr += d;
    });
    child.on('error', (err) => resolve({ code: 127, stdout, stderr: stderr + err.message }));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.on('error', () => {}); // EPIPE when the command exits without reading its input
    child.stdin.end(input ?? '');
  });
}

let cachedCapability: Promise<Capability> | null = null;

/**
 * Can this machine make a lab, and how? Checks for the tools and tries a real (tiny)
 * namespace. The answer is cached for the life of the process.
 */
export function probeCapability(): Promise<Capability> {
  cachedCapability ??= (async () => {
    const kernel = kernelRelease();
    const tcpdump = which('tcpdump');
    const strace = which('strace');
    if (process.platform !== 'linux') {
      return {
        ok: false,
        tcpdump: false,
        bridge: false,
        strace: false,
        kernel: `${process.platform}`,
        reason: `The live lab needs Linux network namespaces; this is ${process.platform}. Recorded runs from Linux are shown instead. To run it live, use a Linux machine or VM.`,
      };
    }
    for (const tool of ['ip', 'ss', 'unshare', 'nsenter', 'setpriv']) {
      if (!which(tool)) {
        return {
          ok: false,
          tcpdump,
          bridge: false,
          strace,
          kernel,
          reason: `The live lab needs the '${tool}' command (packages iproute2 and util-linux). Install it, e.g. 'sudo apt-get install iproute2 util-linux'.`,
        };
      }
    }
    const isRoot = process.geteuid?.() === 0;
    // A new network namespace with its loopback up; and in it, can a bridge be made?
    const probe = `ip link set lo up && if ip link add klprobe0 type bridge 2>/dev/null; then echo bridge; fi`;
    const attempt = async (mode: LabMode) => run('unshare', [...(mode === 'root' ? [] : ['--user', '--map-root-user']), '--net', '--', 'sh', '-c', probe]);
    const bridge = (r: ExecResult) => r.stdout.trim() === 'bridge' && which('bridge');
    if (isRoot) {
      const r = await attempt('root');
      if (r.code === 0) return { ok: true, mode: 'root', tcpdump, bridge: bridge(r), strace, kernel };
    }
    const r = await attempt('userns');
    if (r.code === 0) return { ok: true, mode: 'userns', tcpdump, bridge: bridge(r), strace, kernel };
    return {
      ok: false,
      tcpdump,
      bridge: false,
      strace,
      kernel,
      reason:
        `This machine does not let an ordinary user create network namespaces (${r.stderr.trim().split('\n')[0] || 'unshare failed'}). ` +
        `Either run the course as root (sudo), or allow unprivileged user namespaces ` +
        `(on Ubuntu 24.04: sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0). ` +
        `Until then, recorded runs are shown.`,
    };
  })();
  return cachedCapability;
}

export interface LabEvents {
  /** The lab changed the network or a process (cut, restore, kill, …). */
  fault: [{ action: string; time: number; detail?: Record<string, unknown> }];
  process: [LabProcess];
}

/**
 * One lab: two hosts, one link. Create with `Lab.create()`, always `teardown()`.
 */
export class Lab extends EventEmitter<LabEvents> {
  readonly id: string;
  readonly mode: LabMode;
  readonly kernel: string;
  readonly serverAddress = SERVER_ADDRESS;
  /** Wall-clock time (ms since epoch) when the lab was ready: t = 0 of its timeline. */
  startedAt: number;
  clientAddress = FIRST_CLIENT_ADDRESS;
  linkUp = true;
  readonly serverInterface = SERVER_IF;
  readonly clientInterface = CLIENT_IF;

  /** The processes that hold each host's network namespace (made in create()). */
  #holders = {} as Record<HostName, LabProcess>;
  #processes = new Set<LabProcess>();
  #env: Record<string, string>;
  #torndown: Promise<void> | null = null;
  #nextClientHost = 11;
  #cutMethod: 'bridge' | 'link' = 'link';

  /**
   * How cut() cuts: 'bridge' breaks the path between the server's bridge and the client
   * (both hosts keep their links; what either sends is lost on the way, and the server's
   * packets still show on the wire); 'link' sets the client's link down.
   */
  get cutMethod(): 'bridge' | 'link' {
    return this.#cutMethod;
  }
  #clientMac = '';

  private constructor(id: string, mode: LabMode, kernel: string, env: Record<string, string>) {
    super();
    this.id = id;
    this.mode = mode;
    this.kernel = kernel;
    this.#env = env;
    this.startedAt = Date.now();
  }

  /** Seconds since the lab started. */
  t(at = Date.now()): number {
    return (at - this.startedAt) / 1000;
  }

  static async create(options: LabOptions = {}): Promise<Lab> {
    const cap = await probeCapability();
    if (!cap.ok) throw new LabUnavailableError(cap.reason ?? 'no lab can be made here');
    const mode = options.mode ?? cap.mode!;
    const id = `kl${process.pid}-${++labCounter}`;
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      ...options.env,
      KEEPALIVE_LAB: `${OWNER_TAG}:${id}`,
    };
    // The anchor: a network namespace of the lab's own (and, for ordinary users, its user
    // namespace), in which nothing runs. The two hosts are made from inside it, so that both
    // belong to the same user namespace (moving a veth end needs that), and so that each gets
    // a TCP hash table of its own (tcp_child_ehash_entries, Linux 6.1+). Without one, every
    // namespace shares the host's table (262144 buckets here) and each read of a host's
    // /proc/net/tcp walks all of it: 1.4 ms, against 0.05 ms with 256 buckets.
    const anchor = new LabProcess(
      'anchor-host',
      'server',
      spawn(
        'unshare',
        [
          ...(mode === 'userns' ? ['--user', '--map-root-user'] : []),
          '--net',
          '--',
          'setpriv',
          '--pdeathsig',
          'KILL',
          '--',
          'sh',
          '-c',
          `sysctl -q -w net.ipv4.tcp_child_ehash_entries=${CHILD_EHASH_ENTRIES} 2>/dev/null; exec sleep infinity`,
        ],
        { env, stdio: ['ignore', 'ignore', 'pipe'] },
      ),
    );
    const lab = new Lab(id, mode, cap.kernel, env);
    lab.#processes.add(anchor);
    try {
      await lab.#waitForNamespace(anchor);
      for (const host of ['server', 'client'] as const) {
        const holder = new LabProcess(
          `${host}-host`,
          host,
          spawn('nsenter', [...lab.#nsenterPid(anchor.pid!), '--', 'unshare', '--net', '--', 'setpriv', '--pdeathsig', 'KILL', '--', 'sleep', 'infinity'], {
            env,
            stdio: ['ignore', 'ignore', 'pipe'],
          }),
        );
        lab.#holders[host] = holder;
        lab.#processes.add(holder);
        await lab.#waitForNamespace(holder);
      }
      const clientHolder = lab.#holders.client;

      const sysctls = Object.entries({
        // Keep the lab quiet and predictable; scenario sysctls override.
        'net.ipv6.conf.all.disable_ipv6': 1,
        ...options.sysctls,
      })
        .map(([k, v]) => `sysctl -q -w ${shellWord(k)}=${shellWord(String(v))}`)
        .join('\n');
      // The server's interface is a bridge, as a server's switch or router: the client is
      // reached through one of its ports (the path a cut breaks), and a second port that
      // never goes down keeps the bridge's carrier (and the server's link) up during a cut.
      const bridged = cap.bridge;
      const link = bridged
        ? `ip link add ${SERVER_IF} type bridge
ip link add ${PATH_IF} type veth peer name ${CLIENT_IF} netns ${clientHolder.pid}
ip link add ${HOLD_IF} type veth peer name ${HOLD_IF}p
ip link set ${PATH_IF} master ${SERVER_IF}
ip link set ${HOLD_IF} master ${SERVER_IF}
ip link set ${PATH_IF} up
ip link set ${HOLD_IF} up
ip link set ${HOLD_IF}p up`
        : `ip link add ${SERVER_IF} type veth peer name ${CLIENT_IF} netns ${clientHolder.pid}`;
      await lab.#script(
        'server',
        `set -e
ip link set lo up
${link}
ip addr add ${SERVER_ADDRESS}/24 dev ${SERVER_IF}
ip link set ${SERVER_IF} up
${sysctls}`,
      );
      await lab.#script(
        'client',
        `set -e
ip link set lo up
ip addr add ${FIRST_CLIENT_ADDRESS}/24 dev ${CLIENT_IF}
ip link set ${CLIENT_IF} up
${sysctls}`,
      );
      lab.#clientMac = await lab.#mac('client', CLIENT_IF);
      await lab.#pinNeighbour(FIRST_CLIENT_ADDRESS);
      const serverMac = await lab.#mac('server', SERVER_IF);
      await lab.#run('client', 'ip', ['neigh', 'replace', SERVER_ADDRESS, 'lladdr', serverMac, 'dev', CLIENT_IF, 'nud', 'permanent'], 'neighbour setup');
      lab.#cutMethod = bridged ? 'bridge' : 'link';
      lab.startedAt = Date.now();
      return lab;
    } catch (err) {
      await lab.teardown();
      throw err;
    }
  }

  async #waitForNamespace(holder: LabProcess): Promise<void> {
    // The holder is ready when its network namespace differs from ours.
    const own = nsId(process.pid);
    const deadline = Date.now() + 5000;
    let stderr = '';
    holder.on('line', (_s, line) => (stderr += line + '\n'));
    while (Date.now() < deadline) {
      if (!holder.running) throw new LabUnavailableError(`could not create the ${holder.host} host: ${stderr.trim() || `exit ${holder.exitStatus?.code}`}`);
      const ns = holder.pid ? nsId(holder.pid) : null;
      // Once exec'd into `sleep`, the namespace is set up.
      if (ns && ns !== own && commName(holder.pid!) === 'sleep') return;
      await delay(5);
    }
    throw new LabUnavailableError(`timed out creating the ${holder.host} host`);
  }

  #nsenterArgs(host: HostName): string[] {
    return this.#nsenterPid(this.#holders[host].pid!);
  }

  /** nsenter arguments that enter the network namespace of process `target` (and its user namespace, for ordinary users). */
  #nsenterPid(target: number): string[] {
    return ['--target', String(target), ...(this.mode === 'userns' ? ['--user', '--preserve-credentials'] : []), '--net'];
  }

  /** nsenter arguments that run `cmd` inside `host`, dying with us. */
  #wrap(host: HostName, cmd: string, args: string[]): string[] {
    return [...this.#nsenterArgs(host), '--', 'setpriv', '--pdeathsig', 'KILL', '--', cmd, ...args];
  }

  async #script(host: HostName, script: string): Promise<void> {
    const r = await this.exec(host, 'sh', ['-c', script]);
    if (r.code !== 0) throw new Error(`lab setup on the ${host} host failed: ${r.stderr.trim()}`);
  }

  /**
   * A host's TCP table read from the kernel (/proc/net/tcp of the process that holds the
   * host's namespace): cheap enough to poll every few milliseconds, and there even when no
   * program runs in the host. null once the lab is torn down.
   */
  tcpTable(host: HostName): ProcTcpRow[] | null {
    if (this.#torndown) return null;
    const text = readProcTcpText(this.#holders[host].pid);
    return text === null ? null : parseProcTcp(text);
  }

  /** Runs a command to completion inside a host. */
  exec(host: HostName, cmd: string, args: string[] = [], input?: string): Promise<ExecResult> {
    if (this.#torndown) return Promise.resolve({ code: null, stdout: '', stderr: 'lab is torn down' });
    return run('nsenter', this.#wrap(host, cmd, args), this.#env, input);
  }

  /** Starts a long-running process inside a host. Its output arrives as 'line' events. */
  spawn(host: HostName, name: string, cmd: string, args: string[], options: { stdin?: boolean } = {}): LabProcess {
    if (this.#torndown) throw new Error('lab is torn down');
    const child = spawn('nsenter', this.#wrap(host, cmd, args), {
      env: this.#env,
      stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    const proc = new LabProcess(name, host, child);
    this.#processes.add(proc);
    proc.exited.then(() => this.#processes.delete(proc));
    this.emit('process', proc);
    return proc;
  }

  /**
   * Starts a Node program (a demo) inside a host with this same Node binary; optionally with
   * a descriptor limit (prlimit, like `ulimit -n`) and with its failing accept() calls traced
   * (strace prints them on stderr: Node itself never reports an accept() that fails).
   */
  spawnNode(host: HostName, name: string, script: string, args: string[], options: { fdLimit?: number; stdin?: boolean; traceAccept?: boolean } = {}): LabProcess {
    const argv = [process.execPath, script, ...args];
    // strace runs the program as its own child, which does not inherit the death signal
    // that setpriv gave strace, and strace before 6.6 has no --kill-on-exit: without a
    // setpriv of its own the program would outlive a killed lab (and keep its namespace).
    if (options.traceAccept) argv.unshift('strace', '-f', '-qq', '--seccomp-bpf', '-e', 'trace=accept,accept4', '-e', 'status=failed', '--', 'setpriv', '--pdeathsig', 'KILL', '--');
    if (options.fdLimit !== undefined) argv.unshift('prlimit', `--nofile=${options.fdLimit}:${options.fdLimit}`, '--');
    return this.spawn(host, name, argv[0]!, argv.slice(1), options);
  }

  #fault(action: string, detail?: Record<string, unknown>): void {
    this.emit('fault', { action, time: Date.now(), detail });
  }

  /**
   * Cuts the client off: no FIN, no RST, nothing leaves or arrives.
   *
   * With a bridge, its port toward the client stops forwarding (bridge port state
   * disabled), as if the radio path beyond the server's router had gone: both hosts keep
   * their links, their kernels send as usual, and every packet is lost on the way. The
   * server's retransmissions and keepalive probes leave the server and show on the wire,
   * unanswered; the client's kernel, too, retransmits what it owes (a FIN) on its real
   * timers. Without a bridge, the client's link is set down: the server sees the same, but
   * its packets then go nowhere (the wire shows nothing), and the client's kernel fails to
   * send locally instead of losing its packets on the way.
   */
  async cut(): Promise<void> {
    if (!this.linkUp) throw new Error('the network is already cut');
    if (this.#cutMethod === 'bridge') await this.#run('server', 'bridge', ['link', 'set', 'dev', PATH_IF, 'state', '0'], 'cut');
    else await this.#run('client', 'ip', ['link', 'set', CLIENT_IF, 'down'], 'cut');
    this.linkUp = false;
    this.#fault('cut', { method: this.#cutMethod });
  }

  async #uncut(): Promise<void> {
    // Bridge port state 3: forwarding.
    if (this.#cutMethod === 'bridge') await this.#run('server', 'bridge', ['link', 'set', 'dev', PATH_IF, 'state', '3'], 'restore');
    else await this.#run('client', 'ip', ['link', 'set', CLIENT_IF, 'up'], 'restore');
  }

  /** Brings the client back with the same address (a laptop back in range). */
  async restore(): Promise<void> {
    if (this.linkUp) throw new Error('the network is not cut');
    await this.#uncut();
    this.linkUp = true;
    this.#fault('restore', { address: this.clientAddress });
  }

  /**
   * Brings the client back with a new address (a phone re-joining a mobile network).
   * Its kernel can no longer send anything from the old address, so segments it still owes
   * the server (a FIN, say) never arrive.
   */
  async restoreWithNewAddress(): Promise<string> {
    const old = this.clientAddress;
    const next = `${LAB_SUBNET_PREFIX}.${this.#nextClientHost++}`;
    if (this.#nextClientHost > 250) this.#nextClientHost = 11;
    await this.#run('client', 'sh', ['-c', `ip addr del ${old}/24 dev ${CLIENT_IF} && ip addr add ${next}/24 dev ${CLIENT_IF}`], 'restore with new address');
    await this.#pinNeighbour(next);
    if (!this.linkUp) await this.#uncut();
    this.clientAddress = next;
    this.linkUp = true;
    this.#fault('restore-new-address', { from: old, to: next });
    return next;
  }

  /**
   * The server's kernel always knows the client's link-layer address: in the story it
   * talks to a router that never goes away, and the client vanishes beyond it. Without this,
   * neighbour discovery on the shared link would fail after a cut and the server would get
   * EHOSTUNREACH, a LAN artefact, instead of the ETIMEDOUT a real server sees.
   */
  async #pinNeighbour(clientAddress: string): Promise<void> {
    await this.#run('server', 'ip', ['neigh', 'replace', clientAddress, 'lladdr', this.#clientMac, 'dev', SERVER_IF, 'nud', 'permanent'], 'neighbour setup');
  }

  async #mac(host: HostName, dev: string): Promise<string> {
    const r = await this.exec(host, 'ip', ['-o', 'link', 'show', 'dev', dev]);
    const mac = /link\/ether ([0-9a-f:]{17})/.exec(r.stdout)?.[1];
    if (!mac) throw new Error(`could not read the link-layer address of ${dev}: ${r.stderr.trim() || r.stdout.trim()}`);
    return mac;
  }

  async #run(host: HostName, cmd: string, args: string[], action: string, input?: string): Promise<void> {
    const r = await this.exec(host, cmd, args, input);
    if (r.code !== 0) throw new Error(`${action} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
  }

  /** Sends a signal to a lab process and records it as a fault. */
  signal(proc: LabProcess, sig: 'SIGTERM' | 'SIGKILL' | 'SIGSTOP' | 'SIGCONT'): boolean {
    const ok = proc.signal(sig);
    if (ok) {
      if (sig === 'SIGSTOP') proc.frozen = true;
      if (sig === 'SIGCONT') proc.frozen = false;
      const action = { SIGTERM: 'close', SIGKILL: 'kill', SIGSTOP: 'freeze', SIGCONT: 'thaw' }[sig];
      this.#fault(action, { process: proc.name, pid: proc.pid });
    }
    return ok;
  }

  get processes(): LabProcess[] {
    return [...this.#processes].filter((p) => !p.name.endsWith('-host'));
  }

  get closed(): boolean {
    return this.#torndown !== null;
  }

  /**
   * Kills every process of the lab; the kernel then destroys both namespaces and the link.
   * Idempotent; resolves when every process has exited.
   */
  teardown(): Promise<void> {
    this.#torndown ??= (async () => {
      const all = [...this.#processes];
      for (const p of all) {
        if (p.frozen) p.signal('SIGCONT');
        p.signal('SIGKILL');
      }
      await Promise.race([Promise.all(all.map((p) => p.exited)), delay(3000)]);
      // Anything that escaped (it should not): find it by its tag.
      sweepProcesses((tag) => tag.endsWith(`:${this.id}`));
    })();
    return this.#torndown;
  }
}

export class LabUnavailableError extends Error {
  override name = 'LabUnavailableError';
}

function nsId(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return null;
  }
}


function commName(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
}

function shellWord(s: string): string {
  if (/^[A-Za-z0-9_.\/:=-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Every process on this machine that carries a KEEPALIVE_LAB tag (this one excepted), with
 * its tag: the one place that reads the tags from /proc (the sweeps, the load script and
 * the tests use it).
 */
export function taggedProcesses(): Array<{ pid: number; tag: string }> {
  const found: Array<{ pid: number; tag: string }> = [];
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return found;
  }
  for (const pid of pids) {
    if (Number(pid) === process.pid) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
    } catch {
      continue; // gone, or not ours to read
    }
    const entry = environ.split('\0').find((e) => e.startsWith('KEEPALIVE_LAB='));
    if (entry) found.push({ pid: Number(pid), tag: entry.slice('KEEPALIVE_LAB='.length) });
  }
  return found;
}

/** Kills every process whose KEEPALIVE_LAB tag matches. Returns how many were killed. */
function sweepProcesses(match: (tag: string) => boolean): number {
  let killed = 0;
  for (const { pid, tag } of taggedProcesses()) {
    if (!match(tag)) continue;
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
      killed++;
    } catch {
      /* already gone */
    }
  }
  return killed;
}

/**
 * Removes what labs of a dead owner left behind: processes tagged by an owner that no
 * longer exists (or whose pid was reused). Their namespaces and links die with them.
 */
export function sweepOrphans(): number {
  return sweepProcesses((tag) => {
    const [ownerPid, ownerStart] = tag.split(':');
    const pid = Number(ownerPid);
    if (pid === process.pid) return false;
    const start = processStartTime(pid);
    return start === null || start !== ownerStart;
  });
}
