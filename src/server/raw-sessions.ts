/**
 * Bare engine.io sessions that never join the namespace: what anyone who reaches the port can
 * open without a token (a websocket upgrade of /socket.io/?EIO=4&transport=websocket, written by
 * hand). `advsign bench --live --unauthenticated N` holds N of them open while it measures, and
 * reopens those the daemon closes, as a hostile client would; the tests use them too.
 */
import * as crypto from 'node:crypto';
import * as net from 'node:net';

export interface RawSessionsOptions {
  /** Reopen a session when the server closes it (default true). */
  reopen?: boolean;
}

/** One text frame from the client (client frames are masked, RFC 6455 §5.3). */
function clientTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = crypto.randomBytes(4);
  const head = Buffer.from([0x81, 0x80 | payload.length]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  return Buffer.concat([head, mask, masked]);
}

/** The text payloads of the complete server frames at the start of `buf`, and the bytes used. */
function serverFrames(buf: Buffer): { texts: string[]; used: number } {
  const texts: string[] = [];
  let i = 0;
  while (buf.length - i >= 2) {
    let len = buf[i + 1] & 0x7f;
    let head = 2;
    if (len === 126) {
      if (buf.length - i < 4) break;
      len = buf.readUInt16BE(i + 2);
      head = 4;
    } else if (len === 127) {
      if (buf.length - i < 10) break;
      len = Number(buf.readBigUInt64BE(i + 2));
      head = 10;
    }
    if (buf.length - i < head + len) break;
    if ((buf[i] & 0x0f) === 1) texts.push(buf.subarray(i + head, i + head + len).toString());
    i += head + len;
  }
  return { texts, used: i };
}

export class RawSessions {
  private readonly sockets = new Set<net.Socket>();
  private readonly upgraded = new WeakSet<net.Socket>();
  private closed = false;
  /** Sessions the server closed (or refused) so far. */
  dropped = 0;
  /** Sessions that got as far as the websocket upgrade. */
  opened = 0;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly target: number,
    private readonly opts: RawSessionsOptions = {},
  ) {}

  /** Sessions upgraded and still open. */
  get open(): number {
    let n = 0;
    for (const s of this.sockets) if (this.upgraded.has(s)) n++;
    return n;
  }

  /** Opens `target` sessions; resolves when each has been upgraded or refused. */
  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.target }, () => this.openOne()));
  }

  private openOne(): Promise<void> {
    return new Promise((resolve) => {
      const sock = net.connect(this.port, this.host);
      this.sockets.add(sock);
      let buf = Buffer.alloc(0);
      let settled = false;
      const settle = (): void => {
        if (!settled) resolve();
        settled = true;
      };
      sock.on('connect', () => {
        sock.write(
          `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\nUpgrade: websocket\r\n` +
            `Connection: Upgrade\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (!this.upgraded.has(sock)) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const ok = /^HTTP\/1\.1 101/.test(buf.subarray(0, end).toString('latin1'));
          buf = buf.subarray(end + 4);
          if (!ok) {
            sock.destroy();
            return;
          }
          this.upgraded.add(sock);
          this.opened++;
          settle();
        }
        // Answer engine.io pings ("2") with pongs ("3"): the session stays up as long as the server allows.
        const { texts, used } = serverFrames(buf);
        buf = buf.subarray(used);
        for (const t of texts) if (t === '2') sock.write(clientTextFrame('3'));
      });
      sock.on('error', () => undefined);
      sock.on('close', () => {
        this.sockets.delete(sock);
        this.dropped++;
        settle();
        if (!this.closed && this.opts.reopen !== false)
          setTimeout(() => {
            if (!this.closed) void this.openOne();
          }, 50);
      });
    });
  }

  close(): void {
    this.closed = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }
}
