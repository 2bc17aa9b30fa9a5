// Load the compiled kit with the fake `vscode` module in place of VS Code's.
'use strict';

const Module = require('node:module');
const path = require('node:path');
const { promisify } = require('node:util');
const execFile = promisify(require('node:child_process').execFile);
const fake = require('./fake-vscode.js');

const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (request === 'vscode') return fake.vscode;
  return load.call(this, request, parent, isMain);
};

// Each test file is another learner's machine: its requests come from an address of its own (the server
// trusts one proxy hop in these tests), so the per-address order limit (10 a minute) applies per file.
if (process.env.LBPAY_BASE_URL && !globalThis.fetch.lbpayClient) {
  const client = `198.18.${process.pid % 256}.${1 + Math.floor(Math.random() * 250)}`;
  const realFetch = globalThis.fetch;
  globalThis.fetch = Object.assign(async (url, init = {}) => {
    // The WeChat Pay sandbox (the simulated phone) answers only this machine's own address: no forwarded one.
    const ours = String(url).startsWith(process.env.LBPAY_BASE_URL)
      && !String(url).startsWith(`${process.env.LBPAY_BASE_URL}/sandbox/`);
    if (!ours) return realFetch(url, init);
    return realFetch(url, { ...init, headers: { ...(init.headers || {}), 'X-Forwarded-For': client } });
  }, { lbpayClient: client });
}

const kit = require(path.join(__dirname, '..', 'out', 'index.js'));

/**
 * What the creator does by hand on the server (tests/node/creator.py, named by LBPAY_CREATOR): revoke a
 * license, or let an order run out of time; resolves to what it printed.
 *
 * It runs beside the event loop, never blocking it: the creator takes about two seconds, and a loop that
 * sleeps through the server's keep-alive close hands the next fetch a dead socket.
 */
async function creator(command, orderId) {
  const [python, ...args] = JSON.parse(process.env.LBPAY_CREATOR);
  const { stdout } = await execFile(python, [...args, command, orderId], { encoding: 'utf8', cwd: process.env.LBPAY_REPO });
  return stdout;
}

module.exports = { kit, creator, ...fake };
