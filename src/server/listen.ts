/**
 * Binding the port, with the usual mistakes as one-line user errors (a privileged port, a port
 * in use, an address this machine does not have), and the addresses to print: for 0.0.0.0 / ::
 * the machine's own network addresses, which is where a phone or laptop can reach it.
 */
import type * as http from 'node:http';
import * as os from 'node:os';
import { UserError } from '../data/types';

/** The user's mistake behind a listen() error, or null for a real failure. */
export function listenErrorMessage(e: NodeJS.ErrnoException, host: string, port: number): string | null {
  switch (e.code) {
    case 'EADDRINUSE':
      return `port ${port} on ${host} is already in use (another advsign running? try --port)`;
    case 'EACCES':
    case 'EPERM':
      return port > 0 && port < 1024
        ? `port ${port} is privileged: only root may listen below 1024 (use --port 8080, or forward the port)`
        : `not allowed to listen on ${host}:${port}`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${host}: no such local address`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot listen on ${host}: unknown host name`;
    default:
      return null;
  }
}

/** Listens and resolves with the bound port; mistakes become UserErrors. */
export function listen(server: http.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      const msg = listenErrorMessage(e, host, port);
      reject(msg ? new UserError(msg) : e);
    });
    server.listen(port, host, () => {
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : port);
    });
  });
}

function urlFor(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}/`;
}

/** The addresses of this machine's network interfaces (not loopback), IPv4 first. */
export function networkAddresses(ifaces = os.networkInterfaces()): string[] {
  const all = Object.values(ifaces)
    .flatMap((list) => list ?? [])
    .filter((a) => !a.internal);
  const v4 = all.filter((a) => a.family === 'IPv4').map((a) => a.address);
  const v6 = all.filter((a) => a.family === 'IPv6' && !a.address.startsWith('fe80')).map((a) => a.address);
  return [...new Set([...v4, ...v6])];
}

/**
 * `local`: a URL this process can connect to; `shown`: what to tell the user. Bound to every
 * address, that is each network address (or the host name when none is up yet).
 */
export function serverUrls(host: string, port: number, ifaces?: ReturnType<typeof os.networkInterfaces>): { local: string; shown: string[] } {
  const wildcard = host === '0.0.0.0' || host === '::' || host === '[::]';
  if (!wildcard) return { local: urlFor(host, port), shown: [urlFor(host, port)] };
  const local = urlFor(host === '0.0.0.0' ? '127.0.0.1' : '::1', port);
  const addrs = networkAddresses(ifaces).filter((a) => host !== '0.0.0.0' || !a.includes(':'));
  return { local, shown: addrs.length ? addrs.map((a) => urlFor(a, port)) : [urlFor(os.hostname(), port)] };
}
