// The client on a kept-alive connection the server has already closed, over real sockets on loopback.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { PayClient, PayApiError } = require('../index.js');

/**
 * A tiny HTTP/1.1 server on a raw socket: `answer(request)` gives each request's reply, or null to drop the
 * connection without one, as gunicorn does to a connection whose 2 s keep-alive ran out just as a request came.
 */
async function rawServer(answer) {
  const seen = [];
  const sockets = new Set();
  let connections = 0;
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const connection = ++connections;
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk;
      for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
        const head = buffered.slice(0, end);
        const length = Number((/\r\ncontent-length: *(\d+)/i.exec(head) || [])[1] || 0);
        if (buffered.length < end + 4 + length) return;
        buffered = buffered.slice(end + 4 + length);
        const [method, path] = head.split(' ');
        const request = { method, path, connection, onConnection: seen.filter((r) => r.connection === connection).length + 1 };
        seen.push(request);
        const reply = answer(request);
        if (reply === null) {
          socket.destroy();
          return;
        }
        if (reply === undefined) return;  // never answer
        const body = JSON.stringify(reply.body);
        socket.write(`HTTP/1.1 ${reply.status || 200} X\r\nContent-Type: application/json\r\n`
          + `Content-Length: ${Buffer.byteLength(body)}\r\n${reply.headers || ''}\r\n${body}`);
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = /** @type {net.AddressInfo} */ (server.address());
  return {
    base: `http://127.0.0.1:${port}`, seen,
    close: () => new Promise((resolve) => {
      sockets.forEach((s) => s.destroy());
      server.close(resolve);
    }),
  };
}

const COURSES = { body: { courses: [{ id: 'cpp-primer-5th', title: 'C++', price_fen: 9900 }] } };

/** Let undici put the connection back in its pool (it does so in a callback after the body ends), to be reused. */
const pooled = () => new Promise((resolve) => setImmediate(resolve));

test('a GET on a connection the server closed is sent again, once, on a new connection', async (t) => {
  // The second request on the first connection meets a closed socket; every other request is answered.
  const server = await rawServer((r) => (r.connection === 1 && r.onConnection === 2 ? null : COURSES));
  t.after(server.close);
  const pay = new PayClient({ baseUrl: server.base });

  assert.equal((await pay.listCourses()).length, 1);
  await pooled();
  assert.equal((await pay.listCourses())[0].id, 'cpp-primer-5th');

  assert.deepEqual(server.seen.map((r) => [r.method, r.path, r.connection]), [
    ['GET', '/api/v1/courses', 1], ['GET', '/api/v1/courses', 1], ['GET', '/api/v1/courses', 2]]);
});

test('the error Node gives for such a closed connection is the one the client retries on', async (t) => {
  // What undici says, checked on a real socket, so a change in Node shows up here and not with learners.
  const server = await rawServer((r) => (r.onConnection === 2 ? null : COURSES));
  t.after(server.close);
  await (await fetch(`${server.base}/a`)).json();
  await pooled();
  const failure = await fetch(`${server.base}/b`).then(() => null, (err) => err);
  assert.ok(failure instanceof TypeError, String(failure));
  assert.equal(failure.cause && failure.cause.code, 'UND_ERR_SOCKET', String(failure.cause));
});

test('a GET that meets a closed connection twice fails as the network does', async (t) => {
  // Only the very first request is answered: the server went away between the two.
  const server = await rawServer((r) => (r.connection === 1 && r.onConnection === 1 ? COURSES : null));
  t.after(server.close);
  const pay = new PayClient({ baseUrl: server.base });
  await pay.listCourses();
  await pooled();

  await assert.rejects(pay.listCourses(), (err) => err instanceof TypeError);
  assert.equal(server.seen.length, 3, 'one first try and one retry, no more');
});

test('a POST on a connection the server closed is never sent again', async (t) => {
  const server = await rawServer((r) => (r.method === 'POST' ? null : COURSES));
  t.after(server.close);
  const pay = new PayClient({ baseUrl: server.base });
  await pay.listCourses();
  await pooled();

  await assert.rejects(pay.createOrder({ courseId: 'cpp-primer-5th' }), (err) => err instanceof TypeError);
  assert.deepEqual(server.seen.map((r) => r.method), ['GET', 'POST']);
});

test('an error answer and a timeout are not retried', async (t) => {
  const busy = { status: 503, headers: 'Retry-After: 7\r\n',
    body: { error: { code: 'server_busy', message_zh: '忙', message_en: 'Busy', action: 'retry_later' } } };
  const server = await rawServer((r) => (r.path === '/api/v1/courses' ? busy : undefined));
  t.after(server.close);
  const pay = new PayClient({ baseUrl: server.base, timeoutMs: 300 });

  await assert.rejects(pay.listCourses(), (err) => err instanceof PayApiError && err.status === 503 && err.retryAfterMs === 7000);
  await assert.rejects(pay.licenseKeys(), (err) => err instanceof Error && err.name === 'TimeoutError');
  assert.deepEqual(server.seen.map((r) => r.path), ['/api/v1/courses', '/api/v1/license-keys']);
});
