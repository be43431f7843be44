/** Text formatting for the lab's panes: terminal lines (with ANSI colours), packets, lab events. */
import type { TimelineEvent } from './types.ts';

const ESC = '\x1b[';
export const ansi = {
  reset: `${ESC}0m`,
  bold: `${ESC}1m`,
  dim: `${ESC}90m`,
  red: `${ESC}31m`,
  green: `${ESC}32m`,
  yellow: `${ESC}33m`,
  blue: `${ESC}34m`,
  magenta: `${ESC}35m`,
  cyan: `${ESC}36m`,
};

/** The colour of a demo's log event word: trouble red, life green, data cyan, heartbeats magenta. */
const EVENT_COLOURS: Record<string, string> = {
  error: ansi.red,
  timeout: ansi.red,
  close: ansi.red,
  'bad-frame': ansi.red,
  drop: ansi.red,
  'accept-error': ansi.red,
  'server-error': ansi.red,
  refused: ansi.red,
  'setsockopt-error': ansi.red,
  listen: ansi.blue,
  accept: ansi.green,
  connect: ansi.green,
  frame: ansi.cyan,
  echo: ansi.cyan,
  send: ansi.cyan,
  recv: ansi.cyan,
  ping: ansi.magenta,
  pong: ansi.magenta,
  end: ansi.yellow,
  closing: ansi.yellow,
  shutdown: ansi.yellow,
  done: ansi.yellow,
  pause: ansi.yellow,
  resume: ansi.yellow,
  'echo-skipped': ansi.yellow,
  exit: ansi.yellow,
  stderr: ansi.yellow,
};

export const eventColour = (event: string): string => EVENT_COLOURS[event] ?? '';

/** "  3.214" — seconds since the lab started, right-aligned. */
export function seconds(t: number, width = 7): string {
  return (Number.isFinite(t) ? t.toFixed(3) : '?').padStart(width);
}

/** Terminal control characters a log line could carry must not drive the terminal. */
function clean(text: string): string {
  return text.replace(/[\x00-\x08\x0b-\x1f\x7f\x9b]/g, (c) => `^${String.fromCharCode((c.charCodeAt(0) + 64) & 0x7f)}`);
}

const LOG_LINE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ([A-Za-z0-9_-]+)((?: .*)?)$/;

/**
 * One terminal line for a server or client event: `t` instead of the demo's wall-clock
 * stamp, the event word in its colour, keys dimmed; the process name first when a
 * scenario runs several (server-keepalive, client-3).
 */
export function terminalLine(e: TimelineEvent, plainName: string): string {
  const name = typeof e.name === 'string' && e.name !== plainName ? `${ansi.bold}[${clean(e.name)}]${ansi.reset} ` : '';
  const prefix = `${ansi.dim}${seconds(e.t)}${ansi.reset} ${name}`;
  const line = typeof e.line === 'string' ? clean(e.line) : null;
  if (e.event === 'exit') {
    const how = e.signal ? `killed by ${String(e.signal)}` : `exit code ${String(e.code ?? '?')}`;
    return `${prefix}${ansi.yellow}${ansi.bold}exit${ansi.reset} ${ansi.dim}process ended:${ansi.reset} ${how}`;
  }
  if (line === null) return `${prefix}${eventColour(e.event)}${clean(e.event)}${ansi.reset}`;
  const m = LOG_LINE.exec(line);
  if (!m) {
    const colour = e.event === 'stderr' ? ansi.yellow : '';
    return `${prefix}${colour}${line}${colour ? ansi.reset : ''}`;
  }
  const colour = eventColour(m[2]!);
  const rest = m[3]!.replace(/ ([A-Za-z0-9_-]+)=/g, ` ${ansi.dim}$1=${ansi.reset}`);
  return `${prefix}${colour}${ansi.bold}${m[2]}${ansi.reset}${rest}`;
}

/** "92ms", "1.3s", "59s", "2m5s" (as src/lab/ss.ts formats ss's timers). */
export function formatMs(ms: number): string {
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 60_000) return `${Math.round(ms / 1000)}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`;
}

/** A packet from the wire: `192.0.2.1:7000 > 192.0.2.10:40000 [P.] seq 1:8 ack 1 len 7`. */
export function packetText(e: TimelineEvent): string {
  const parts = [`${String(e.src)} > ${String(e.dst)}`, `[${String(e.flags ?? '')}]`];
  if (e.seq !== null && e.seq !== undefined) parts.push(`seq ${String(e.seq)}`);
  if (e.ack !== null && e.ack !== undefined) parts.push(`ack ${String(e.ack)}`);
  parts.push(`len ${String(e.length ?? 0)}`);
  return parts.join(' ');
}

export const str = (v: unknown): string => (v === null || v === undefined ? '' : String(v));

/** One line of narration for a lab event (a step, a fault, the lab being ready). */
export function labText(e: TimelineEvent): string {
  switch (e.event) {
    case 'step':
    case 'hands-on':
      return str(e.text);
    case 'ready':
      return `Lab ready: Linux ${str(e.kernel)} (${str(e.mode)}); server ${str(e.server)}, client ${str(e.client)}.`;
    case 'cut':
      return `Network cut${e.method ? ` (${e.method === 'bridge' ? 'the path beyond the server\'s bridge drops every packet' : 'client link down'})` : ''}: no FIN, no RST.`;
    case 'restore':
      return `Network restored; the client keeps ${str(e.address)}.`;
    case 'restore-new-address':
      return `Network restored with a new address: ${str(e.from)} → ${str(e.to)}.`;
    case 'close':
      return `Closed ${str(e.process)} (SIGTERM): it hands a FIN to its kernel and exits.`;
    case 'kill':
      return `Killed ${str(e.process)} (SIGKILL).`;
    case 'freeze':
      return `Froze ${str(e.process)} (SIGSTOP): its kernel keeps running.`;
    case 'thaw':
      return `Thawed ${str(e.process)} (SIGCONT).`;
    case 'send-frame':
      return `Sent a frame from the client: "${str(e.text)}".`;
    case 'dropped':
      return `${str(e.line)} (more output than a page can show; the lab server keeps a bounded rate)`;
    default: {
      const fields = Object.entries(e)
        .filter(([k]) => !['t', 'source', 'event'].includes(k))
        .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : str(v)}`);
      return [e.event, ...fields].join(' ');
    }
  }
}

/** "25 Nov 2026" in the reader's locale; the input if it is not a date. */
export function formatDate(iso: string | undefined): string {
  if (!iso) return 'date unknown';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
}

/** Fills `{param}` placeholders of a claim with values (or leaves the placeholder). */
export function fillClaim(claim: string, values: Record<string, number | string | undefined>): string {
  return claim.replace(/\{(\w+)\}/g, (m, k: string) => (values[k] !== undefined && values[k] !== '' ? String(values[k]) : m));
}
