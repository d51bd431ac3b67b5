#!/usr/bin/env node
'use strict';
// Entry point: runs the compiled CLI (npm install compiles it through the "prepare" script).
const path = require('node:path');
const fs = require('node:fs');
const entry = path.join(__dirname, '..', 'dist', 'src', 'cli', 'index.js');
if (!fs.existsSync(entry)) {
  process.stderr.write('advsign: not built yet: run `npm install` (or `npm run build`) in ' + path.dirname(__dirname) + '\n');
  process.exit(1);
}
require(entry)
  .main(process.argv.slice(2))
  .then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(String((err && err.stack) || err) + '\n');
      process.exitCode = 1;
    },
  );
