// The content provider's client against a real local HTTP server that drops connections, as a server
// closing an idle keep-alive socket does just as the client sends on it.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { kit } = require('./harness.js');

const { ProviderClient, ProviderError } = kit;

/** A server that destroys the socket of the first `drops` requests without answering, then serves "hello". */
async function flakyServer(t, drops) {
  const seen = [];
  const server = http.createServer((req, res) => {
    seen.push(req.url);
    if (seen.length <= drops) {
      req.socket.destroy();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain', ETag: '"v1"' });
    res.end('hello');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  return { base: `http://127.0.0.1:${server.address().port}`, seen };
}

test('a dropped connection is tried once more: the file arrives', async (t) => {
  const { base, seen } = await flakyServer(t, 1);
  const answer = await new ProviderClient(base).file('cpp-primer-5th', 'free/README.md');
  assert.equal(Buffer.from(answer.bytes).toString(), 'hello');
  assert.equal(answer.etag, '"v1"');
  assert.equal(seen.length, 2);
});

test('a connection dropped twice is "offline", and nothing is asked a third time', async (t) => {
  const { base, seen } = await flakyServer(t, 2);
  await assert.rejects(new ProviderClient(base).file('cpp-primer-5th', 'free/README.md'),
    (err) => err instanceof ProviderError && err.code === 'offline' && err.status === 0);
  assert.equal(seen.length, 2);
});
