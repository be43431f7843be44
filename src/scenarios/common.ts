/** Small helpers the scenarios share. */
import type { SocketRow } from '../lab/ss.ts';
import type { Demo, LogEntry, RunContext } from './runner.ts';

export const key = (r: SocketRow): string => `${r.peer.address}:${r.peer.port}`;

/** The server's row for a client connection, by the client's address:port. */
export function rowFor(rows: SocketRow[], peer: string): SocketRow | undefined {
  return rows.find((r) => r.state !== 'LISTEN' && key(r) === peer);
}

/** Events in a server log that show it noticed a connection ending. */
export const NOTICE_EVENTS = ['close', 'error', 'timeout', 'bad-frame'];

export function noticed(server: Demo, peer: string, since = 0): LogEntry | undefined {
  return server.log.find((e) => e.time >= since && NOTICE_EVENTS.includes(e.event) && e.fields.peer === peer);
}

/** Seconds between two epoch-ms times, rounded to the millisecond. */
export const secondsBetween = (from: number, to: number): number => Math.round(to - from) / 1000;

/**
 * Starts a client that sends one frame and waits until the server has logged it.
 * Returns the client and its address:port as the server sees it.
 */
export async function connectAndSend(
  ctx: RunContext,
  server: Demo,
  clientArgs: string[] = [],
  options: { name?: string; port?: number } = {},
): Promise<{ client: Demo; peer: string }> {
  const client = await ctx.startClient(['--count', '1', ...clientArgs], options);
  const local = client.entries('connect')[0]!.fields.local!;
  const frame = await server.waitFor('frame', (e) => e.fields.peer === local, ctx, 10_000, 0);
  if (!frame) throw new Error(`the server did not receive the client's frame from ${local}`);
  return { client, peer: local };
}

/**
 * TCP's retransmission timeout after tcp_retries2 (RFC 6298 backoff from the 200 ms floor,
 * doubling up to TCP_RTO_MAX = 120 s), as Linux computes it in tcp_model_timeout().
 */
export function retransmissionTimeoutSeconds(retries2: number, rtoMin = 0.2, rtoMax = 120): number {
  let total = 0;
  let rto = rtoMin;
  for (let i = 0; i <= retries2; i++) {
    total += rto;
    rto = Math.min(rto * 2, rtoMax);
  }
  return total;
}
