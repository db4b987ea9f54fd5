#!/usr/bin/env node
// Lets py-solc-x drive the npm `solc` package (solcjs) as if it were the native binary.
// It answers only the two calls py-solc-x makes: `--version` and `--standard-json` (input on stdin).
"use strict";
const fs = require("fs");
const path = require("path");

// solcjs is looked up from the project root (two folders up), where `npm ci` put it.
const root = process.env.VOUCHER_NODE_ROOT || path.resolve(__dirname, "..", "..");
const solc = require(require.resolve("solc", { paths: [root] }));

// process.stdout.write followed by exit truncated large outputs at 128 KiB: write synchronously, in full.
function writeAll(text) {
  const buf = Buffer.from(text, "utf8");
  let off = 0;
  while (off < buf.length) off += fs.writeSync(1, buf, off, buf.length - off);
}

const args = process.argv.slice(2);
if (args.includes("--version")) {
  writeAll(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
} else if (args.includes("--standard-json")) {
  const input = fs.readFileSync(0, "utf8");
  // Sources arrive inline (the Python side resolves imports), so no import callback is needed.
  writeAll(solc.compile(input));
} else {
  process.stderr.write(`solcjs shim: unsupported arguments ${JSON.stringify(args)} (only --version, --standard-json)\n`);
  process.exit(2);
}
