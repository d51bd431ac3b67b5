/**
 * HTTP routes of the classroom pieces (behind the same token check as the rest of the API):
 *   POST /api/sticker           {name, json, layer}: a sticker run picked on the page (the run
 *                               JSON's text and its layer PNG in base64) becomes the virtual sticker
 *   GET  /api/jobs/:id/:file    a finished print job's PDF (only files the job manager published)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import express, { NextFunction, Request, Response } from 'express';
import type { Classifier } from '../inference/model';
import { UserError } from '../data/types';
import type { Logger } from './log';
import type { RateLimiter } from './auth';
import type { Classroom } from './classroom';
import { stickerFromUpload } from './sticker-overlay';

/** Largest upload: a run JSON is tens of KB and a layer PNG a few KB; this leaves room. */
export const MAX_UPLOAD_BYTES = 2 * 1024 * 1024;

export interface ClassroomHttpDeps {
  room: Classroom;
  classifier: Classifier;
  log: Logger;
  uploadLimit: RateLimiter;
}

interface UploadBody {
  name: string;
  json: string;
  layer: string;
}

function uploadBody(b: unknown): UploadBody {
  if (!b || typeof b !== 'object' || Array.isArray(b)) throw new UserError('send {name, json, layer}: the run JSON as text and its layer PNG in base64');
  const o = b as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length !== 3 || !['name', 'json', 'layer'].every((k) => typeof o[k] === 'string')) {
    throw new UserError('send exactly {name, json, layer} as strings');
  }
  const name = path.basename(o.name as string).slice(0, 120);
  return { name, json: o.json as string, layer: o.layer as string };
}

export function classroomRoutes(app: express.Express, d: ClassroomHttpDeps): void {
  const json = express.json({ limit: MAX_UPLOAD_BYTES });
  // The body parser's own errors (too large, not JSON) become one-line 4xx answers.
  const parse = (req: Request, res: Response, next: NextFunction): void => {
    json(req, res, (err?: unknown) => {
      if (!err) return next();
      const e = err as { status?: number; type?: string };
      res
        .status(e.status ?? 400)
        .json({ error: e.type === 'entity.too.large' ? `upload larger than ${MAX_UPLOAD_BYTES / 2 ** 20} MB` : 'the upload is not valid JSON' });
    });
  };

  app.post('/api/sticker', parse, async (req, res, next) => {
    try {
      const ok = d.uploadLimit.take(req.ip ?? 'unknown');
      if (ok !== true) {
        res.setHeader('Retry-After', String(ok));
        res.status(429).json({ error: `too many uploads: retry in ${ok} s` });
        return;
      }
      const body = uploadBody(req.body);
      if (!/^[A-Za-z0-9+/=\s]*$/.test(body.layer)) throw new UserError('layer must be the PNG in base64');
      const png = Buffer.from(body.layer, 'base64');
      const meta = { id: d.room.stickers.nextId('upload'), origin: 'upload' as const, pdf: null };
      const s = await stickerFromUpload(body.json, png, d.classifier, meta, body.name);
      d.room.stickers.add(s);
      d.log.info('sticker.loaded', { id: s.summary.id, name: s.summary.name, upload: body.name, coverage: Math.round(s.overlay.coverage() * 1000) / 1000 });
      res.json({ ok: true, sticker: s.summary, stickers: d.room.stickers.message() });
    } catch (e) {
      if (e instanceof UserError) {
        d.log.warn('sticker.rejected', { error: e.message });
        res.status(400).json({ error: e.message });
        return;
      }
      next(e);
    }
  });

  app.get('/api/jobs/:id/:file', (req, res) => {
    const id = String(req.params.id),
      file = String(req.params.file);
    const pdf = /^[\w-]{1,64}$/.test(id) ? d.room.jobs.pdfFile(id) : null;
    if (!pdf || path.basename(pdf) !== file || !fs.existsSync(pdf)) {
      res.status(404).json({ error: 'no such print job PDF' });
      return;
    }
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Content-Disposition', `attachment; filename="${file}"`);
    res.type('application/pdf').sendFile(pdf);
  });
}
