/**
 * The daemon against a hostile network peer: bare engine.io sessions cannot lock the operator
 * out, idle and slow connections are closed, connections are capped, floods of messages and
 * unauthorized requests do not flood the log, and listen errors are one-line user errors.
 */
import * as assert from 'node:assert/strict';
import { spawn, ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import { io as ioClient, Socket } from 'socket.io-client';
import { initBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier } from '../src/inference/model';
import { startServer, RunningServer, ServerOptions } from '../src/server/app';
import { DEFAULT_CONFIG, ServeConfig } from '../src/server/config';
import { createLogger, memoryLogger } from '../src/server/log';
import { listenErrorMessage, serverUrls } from '../src/server/listen';
import { RawSessions } from '../src/server/raw-sessions';
import { redact } from '../src/server/redact';
import { which } from '../src/capture/factory';
import { BIN, ROOT } from './helpers';

const TOKEN = 'operator-token-1234';
const CONFIG: ServeConfig = {
  ...DEFAULT_CONFIG,
  sources: [],
  ffmpegInputArgs: [],
  port: 0,
  source: 'synthetic',
  width: 160,
  height: 120,
  fps: 20,
  logLevel: 'silent',
  requireToken: true,
  token: TOKEN,
};

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A page client with the token; resolves with its socket once 'hello' arrived, or rejects with the refusal. */
function join(url: string, frames?: number[]): Promise<Socket> {
  const socket = ioClient(url, { transports: ['websocket'], reconnection: false, forceNew: true, auth: { token: TOKEN } });
  socket.on('frame', (f: { seq: number }, ack?: () => void) => {
    frames?.push(f.seq);
    ack?.();
  });
  return new Promise((resolve, reject) => {
    socket.once('hello', () => resolve(socket));
    socket.once('connect_error', (e) => {
      socket.disconnect();
      reject(e);
    });
  });
}

/** Resolves with the milliseconds until the server closes this TCP connection (null: still open after `ms`). */
function closedWithin(sock: net.Socket, ms: number): Promise<number | null> {
  const t0 = Date.now();
  sock.on('data', () => undefined); // read, so that the server's close is seen
  sock.on('error', () => undefined);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    sock.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
  });
}

function tcp(port: number, send?: string): net.Socket {
  const s = net.connect(port, '127.0.0.1');
  if (send) s.once('connect', () => s.write(send));
  return s;
}

describe('serve hardening: admission, timeouts, connection cap, log floods', function () {
  this.timeout(60000);
  let clf: LayersClassifier;
  const servers: RunningServer[] = [];
  const sockets: Socket[] = [];
  const start = async (o: Omit<Partial<ServerOptions>, 'config'> & { config?: Partial<ServeConfig> } = {}): Promise<RunningServer> => {
    const s = await startServer({ classifier: clf, ...o, config: { ...CONFIG, ...o.config } });
    servers.push(s);
    return s;
  };

  before(async () => {
    await initBackend();
    clf = new LayersClassifier(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43 }));
  });
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.disconnect();
    for (const s of servers.splice(0)) await s.close();
  });
  after(() => clf?.model.dispose());

  it('25 bare sessions (no token) do not lock out the operator, and are closed within the auth timeout', async () => {
    const server = await start({ authTimeoutMs: 1000 });
    const raw = new RawSessions('127.0.0.1', server.port, 25, { reopen: false });
    try {
      await raw.start();
      assert.equal(raw.open, 25, 'the sessions were upgraded');
      sockets.push(await join(server.url)); // was: connect_error "too many clients"
      assert.equal(server.clients(), 1, 'only the operator counts');
      await waitFor(() => raw.open === 0, 4000, 'the unauthenticated sessions to be closed');
      assert.equal(sockets[0].connected, true);
    } finally {
      raw.close();
    }
  });

  it('--max-clients still caps clients with the token', async () => {
    const server = await start({ config: { maxClients: 2 } });
    sockets.push(await join(server.url), await join(server.url));
    await assert.rejects(join(server.url), /too many clients/);
    sockets.shift()!.disconnect();
    await waitFor(() => server.clients() === 1, 3000, 'the departure to count');
    sockets.push(await join(server.url));
  });

  it('frames keep flowing to the operator while 200 unauthenticated sockets are held open', async () => {
    const server = await start({ authTimeoutMs: 1000 });
    const raw = new RawSessions('127.0.0.1', server.port, 200); // reopened as the server closes them
    const frames: number[] = [];
    try {
      await raw.start();
      sockets.push(await join(server.url, frames));
      await waitFor(() => frames.length > 0, 10000, 'the first frame');
      const n0 = frames.length;
      const t0 = Date.now();
      await new Promise((r) => setTimeout(r, 3000));
      const fps = ((frames.length - n0) * 1000) / (Date.now() - t0);
      assert.ok(raw.dropped >= 200, `the daemon closed the first 200 sessions (${raw.dropped})`);
      assert.ok(raw.open >= 150, `the flood was held open (${raw.open} open)`);
      // Locked out, it would be 0. The source runs at 20 fps; a fifth of it holds on a loaded 2-core
      // machine. The real figure is `advsign bench --live --unauthenticated 200`.
      assert.ok(fps >= 4, `${fps.toFixed(1)} frames/s reached the operator`);
    } finally {
      raw.close();
    }
  });

  it('closes idle, slow and kept-alive connections, never the live socket; caps connections', async () => {
    const server = await start({
      httpLimits: { headersTimeoutMs: 500, requestTimeoutMs: 1500, keepAliveTimeoutMs: 500, checkIntervalMs: 100, maxConnections: 6 },
    });
    const frames: number[] = [];
    sockets.push(await join(server.url, frames)); // connection 1
    const idle = closedWithin(tcp(server.port), 3000);
    const slow = closedWithin(tcp(server.port, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n`), 3000);
    const kept = tcp(server.port, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    const keptAlive = closedWithin(kept, 3000);
    const filler = [tcp(server.port), tcp(server.port)]; // connections 5 and 6
    await new Promise((r) => setTimeout(r, 200));
    const refused = await closedWithin(tcp(server.port), 1000);
    assert.ok(refused !== null && refused < 500, `a 7th connection is dropped at once (${refused} ms)`);
    for (const [name, p] of [
      ['idle', idle],
      ['partial headers', slow],
      ['idle keep-alive', keptAlive],
    ] as const) {
      const ms = await p;
      assert.ok(ms !== null && ms < 2500, `${name} connection closed after ${ms} ms`);
    }
    for (const f of filler) f.destroy();
    const n = frames.length;
    await waitFor(() => frames.length > n + 3, 5000, 'frames on the live socket past the request timeout');
    assert.equal(sockets[0].connected, true);
    assert.equal((await fetch(`${server.url}healthz`)).status, 200, 'new connections are accepted again');
  });

  it('a flood of settings messages and unauthorized requests logs a bounded number of lines and a "suppressed N" summary', async () => {
    const log = memoryLogger('info', { burst: 20, windowMs: 1500 });
    const server = await start({ logger: log });
    const socket = await join(server.url);
    sockets.push(socket);
    for (let i = 0; i < 300; i++) socket.emit('settings', { eps: ((i % 8) + 1) / 255 });
    await socket.timeout(10000).emitWithAck('settings', { eps: 8 / 255 }); // all 301 handled
    await Promise.all(Array.from({ length: 60 }, () => fetch(`${server.url}metrics`).then((r) => r.status)));
    const count = (e: string) => log.lines.filter((l) => l.event === e).length;
    assert.equal(count('settings.changed'), 20);
    assert.equal(count('http.unauthorized'), 20);
    await waitFor(() => count('log.suppressed') >= 2, 5000, 'the summaries at the end of the window');
    const summary = (e: string) => log.lines.find((l) => l.event === 'log.suppressed' && l.suppressedEvent === e);
    assert.equal(summary('settings.changed')?.suppressed, 281);
    assert.equal(summary('http.unauthorized')?.suppressed, 40);
    assert.equal(summary('http.unauthorized')?.level, 'warn');
    // A new window writes again.
    await socket.timeout(5000).emitWithAck('settings', { eps: 4 / 255 });
    assert.equal(count('settings.changed'), 21);
  });
});

describe('serve hardening: logger, listen errors, addresses', () => {
  it('masks URL credentials in every line, whatever field carries them', () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l) });
    log.info('source.status', { source: 'ffmpeg:rtsp://admin:hunter2@10.0.0.5/stream', message: 'rtsp://admin:p@ss:w@10.0.0.5:554/x: Connection refused' });
    log.error('x', { nested: { url: 'http://u:secret@cam.local/mjpg' } });
    const text = lines.join('');
    for (const secret of ['hunter2', 'p@ss', 'secret']) assert.ok(!text.includes(secret), `${secret} in ${text}`);
    assert.match(text, /rtsp:\/\/\*\*\*@10\.0\.0\.5\/stream/);
    assert.equal(redact('http://cam.local/a@b'), 'http://cam.local/a@b', 'an @ after the host is not a credential');
  });

  it('maps listen errors to one-line user errors', () => {
    const err = (code: string) => Object.assign(new Error(code), { code });
    assert.match(listenErrorMessage(err('EACCES'), '0.0.0.0', 80)!, /port 80 is privileged.*--port 8080/);
    assert.match(listenErrorMessage(err('EADDRINUSE'), '127.0.0.1', 8080)!, /already in use/);
    assert.match(listenErrorMessage(err('EADDRNOTAVAIL'), '10.9.9.9', 8080)!, /no such local address/);
    assert.match(listenErrorMessage(err('ENOTFOUND'), 'nohost.invalid', 8080)!, /unknown host name/);
    assert.equal(listenErrorMessage(err('EMFILE'), '127.0.0.1', 8080), null, 'a real failure stays one');
  });

  it('for 0.0.0.0, shows the network addresses, not 127.0.0.1', () => {
    const ifaces = {
      lo: [{ address: '127.0.0.1', family: 'IPv4', internal: true, netmask: '', mac: '', cidr: null }],
      eth0: [
        { address: '192.168.1.20', family: 'IPv4', internal: false, netmask: '', mac: '', cidr: null },
        { address: 'fe80::1', family: 'IPv6', internal: false, netmask: '', mac: '', cidr: null, scopeid: 2 },
      ],
    } as unknown as Parameters<typeof serverUrls>[2];
    assert.deepEqual(serverUrls('0.0.0.0', 8080, ifaces), { local: 'http://127.0.0.1:8080/', shown: ['http://192.168.1.20:8080/'] });
    assert.deepEqual(serverUrls('127.0.0.1', 8080, ifaces).shown, ['http://127.0.0.1:8080/']);
    assert.equal(serverUrls('0.0.0.0', 8080, {}).shown.length, 1, 'the host name when no interface is up');
  });
});

interface Served {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
}

/** `advsign serve …` as a process, as a user or systemd runs it. */
function serve(args: string[], env: NodeJS.ProcessEnv = {}): Served {
  const child = spawn(process.execPath, [BIN, 'serve', '--model', 'untrained:cnn4-small', '--port', '0', '--log-level', 'info', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  return { child, out: () => out, err: () => err, exited: new Promise((r) => child.once('exit', r)) };
}

describe('serve hardening: secrets stay out of the logs and stdout', function () {
  this.timeout(60000);

  it('camera passwords are masked in source.status, daemon.started and source.switch; a configured token is never printed', async function () {
    if (!which('ffmpeg')) this.skip();
    const token = 'configured-token-5678';
    // Port 9 (discard) refuses: ffmpeg fails, and its error message carries the URL too.
    const s = serve(
      ['--source', 'ffmpeg:rtsp://admin:hunter2@127.0.0.1:9/stream', '--sources', 'ffmpeg:http://viewer:s3cret@127.0.0.1:9/cam', '--require-token'],
      { ADVSIGN_TOKEN: token },
    );
    try {
      await waitFor(() => /open http:\/\/127\.0\.0\.1:\d+\//.test(s.out()), 30000, 'the address on stdout');
      const url = /open (http:\/\/127\.0\.0\.1:\d+\/)/.exec(s.out())![1];
      const socket = ioClient(url, { transports: ['websocket'], reconnection: false, forceNew: true, auth: { token } });
      const hello = await new Promise<{ sources: string[] }>((r) => socket.once('hello', r));
      const masked = hello.sources.find((x) => x.includes('viewer') || x.includes('***@127.0.0.1:9/cam'))!;
      assert.equal(masked, 'ffmpeg:http://***@127.0.0.1:9/cam');
      const r = (await socket.timeout(10000).emitWithAck('source', { source: masked })) as { ok: boolean };
      socket.disconnect();
      assert.equal(r.ok, true);
      await waitFor(() => /"event":"source\.status".*cam/.test(s.err()), 10000, 'a status line of the second camera');
    } finally {
      s.child.kill('SIGTERM');
    }
    assert.equal(await s.exited, 0, s.err().slice(-500));
    const all = s.out() + s.err();
    for (const secret of ['hunter2', 's3cret', token]) assert.ok(!all.includes(secret), `'${secret}' was written:\n${all.slice(0, 3000)}`);
    const events = s
      .err()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; source?: string });
    for (const e of ['source.status', 'daemon.started', 'source.switch']) {
      assert.ok(
        events.some((l) => l.event === e && l.source?.includes('***@127.0.0.1:9')),
        `${e} names the masked source`,
      );
    }
    assert.match(s.out(), /needs the access token \(the one in ADVSIGN_TOKEN\)/);
  });

  it('--host 0.0.0.0 prints the network addresses; a generated token is printed once, with them', async () => {
    const s = serve(['--source', 'synthetic', '--host', '0.0.0.0']);
    try {
      await waitFor(() => /token generated/.test(s.out()), 30000, 'the addresses on stdout');
    } finally {
      s.child.kill('SIGTERM');
    }
    await s.exited;
    const port = Number(/"event":"server\.listening"[^\n]*"port":(\d+)/.exec(s.err())![1]);
    const shown = [...s.out().matchAll(/open (http:\/\/\S+?)\?token=/g)].map((m) => m[1]);
    assert.deepEqual(shown, serverUrls('0.0.0.0', port).shown);
    assert.ok(!s.out().includes('127.0.0.1'), s.out());
    const token = /\?token=(\S+)/.exec(s.out())![1];
    assert.ok(!s.err().includes(decodeURIComponent(token)), 'the generated token is not in the logs');
  });

  it('a privileged port without root, or a port in use, is a one-line error (exit 2)', async function () {
    const busy = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => busy.once('listening', r));
    try {
      const inUse = serve(['--source', 'synthetic', '--port', String((busy.address() as net.AddressInfo).port)]);
      assert.equal(await inUse.exited, 2, inUse.err());
      assert.match(inUse.err(), /^advsign: error: port \d+ on 127\.0\.0\.1 is already in use/m);
    } finally {
      busy.close();
    }
    // As root every port is allowed: drop to nobody (setpriv) to see what a user sees.
    const asUser = process.getuid?.() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];
    if (asUser.length && !which('setpriv')) this.skip();
    const child = spawn(
      asUser[0] ?? process.execPath,
      [
        ...asUser.slice(1),
        ...(asUser.length ? [process.execPath] : []),
        BIN,
        'serve',
        '--model',
        'untrained:cnn4-small',
        '--source',
        'synthetic',
        '--port',
        '1',
      ],
      { cwd: ROOT, env: { ...process.env, HOME: '/tmp' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 2, err);
    assert.match(err, /^advsign: error: port 1 is privileged: only root may listen below 1024/m);
    assert.ok(!/internal error/.test(err));
  });
});
