/**
 * Socket handlers for the classroom events ('sticker', 'view', 'print'; types in protocol.ts),
 * and the broadcasts that keep every page in step ('stickers', 'job'). app.ts validates the
 * envelope (known event, one argument, size) and hands the message here.
 */
import type { Server as IoServer, Socket } from 'socket.io';
import { UserError } from '../data/types';
import type { Daemon } from './daemon';
import type { Logger } from './log';
import type { RateLimiter } from './auth';
import type { Classroom } from './classroom';
import { PRINT_SIGN_MM, PRINT_STEPS } from './print-jobs';
import { validatePrintRequest, validateStickerRequest, validateViewRequest } from './schema';

export type Ack = (r: unknown) => void;
export type Reject = (code: string, message: string, ack?: Ack) => void;
export const CLASSROOM_EVENTS = ['sticker', 'view', 'print'] as const;
export type ClassroomEvent = (typeof CLASSROOM_EVENTS)[number];

export interface ClassroomSocketDeps {
  io: IoServer;
  room: Classroom;
  daemon: Daemon;
  numClasses: number;
  log: Logger;
  /** Print job starts, per client address. */
  jobLimit: RateLimiter;
}

export interface ClassroomSocket {
  connected(socket: Socket): void;
  disconnected(socket: Socket): void;
  handle(event: ClassroomEvent, socket: Socket, msg: unknown, reject: Reject, ack?: Ack): void;
}

export function isClassroomEvent(name: string): name is ClassroomEvent {
  return (CLASSROOM_EVENTS as readonly string[]).includes(name);
}

export function classroomSocket(d: ClassroomSocketDeps): ClassroomSocket {
  const { io, room, daemon, log } = d;
  room.stickers.on('change', (m) => io.emit('stickers', m));
  room.jobs.on('update', (j) => io.emit('job', j));

  const print = (socket: Socket, msg: unknown, reject: Reject, ack?: Ack): void => {
    const v = validatePrintRequest(msg, d.numClasses, PRINT_STEPS, PRINT_SIGN_MM);
    if (!v.ok) return reject('invalid', v.error, ack);
    if (v.value.action === 'cancel') {
      if (!room.jobs.cancel('cancelled on the page')) return reject('no_job', 'no print job is running', ack);
      ack?.({ ok: true, job: room.jobs.current });
      return;
    }
    const last = daemon.last;
    if (!last) return reject('no_frame', 'no frame yet: the print job is for the sign in view', ack);
    const refuse = (message: string): void => {
      log.info('print.job_refused', { reason: message, client: socket.id });
      reject('print_refused', message, ack);
    };
    const req = { target: v.value.target, signMm: v.value.signMm, steps: v.value.steps, classId: last.clean.classId, owner: socket.id };
    try {
      room.jobs.check(req); // refusals first: they should not use up the client's rate budget
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      return refuse(e.message);
    }
    const ok = d.jobLimit.take(socket.handshake.address || 'unknown');
    if (ok !== true) return refuse(`print jobs are limited: retry in ${ok} s`);
    ack?.({ ok: true, job: room.jobs.start(req) });
  };

  return {
    connected: (socket) => room.views.add(socket.id),
    disconnected: (socket) => {
      room.views.remove(socket.id);
      room.jobs.ownerGone(socket.id);
    },
    handle(event, socket, msg, reject, ack) {
      if (event === 'print') return print(socket, msg, reject, ack);
      if (event === 'view') {
        const v = validateViewRequest(msg);
        if (!v.ok) return reject('invalid', v.error, ack);
        room.views.set(socket.id, v.value.images);
        ack?.({ ok: true, images: v.value.images });
        return;
      }
      const v = validateStickerRequest(msg);
      if (!v.ok) return reject('invalid', v.error, ack);
      try {
        room.stickers.select(v.value.id);
      } catch (e) {
        return reject('invalid', (e as Error).message, ack);
      }
      log.info('sticker.selected', { id: v.value.id, client: socket.id });
      ack?.({ ok: true, stickers: room.stickers.message() });
    },
  };
}
