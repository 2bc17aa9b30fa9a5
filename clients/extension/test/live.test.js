// The client against a running server with its WeChat Pay sandbox (LBPAY_BASE_URL, e.g. `make run`).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { PayClient, PayApiError, verifyLicense, verifyRevocations } = require('../index.js');

const BASE = process.env.LBPAY_BASE_URL;
const skip = BASE ? false : 'set LBPAY_BASE_URL to a server in sandbox mode (make test-client does)';
const pay = BASE ? new PayClient({ baseUrl: BASE, timeoutMs: 10000 }) : null;

/** Pay an order on the sandbox's simulated phone. */
async function payInSandbox(order, result = 'success') {
  const response = await fetch(`${BASE}/sandbox/control/orders/${order.out_trade_no}/pay`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ result }),
  });
  assert.equal(response.status, 200, await response.text());
}

test('the client buys, waits for, verifies and finds a license', { skip, timeout: 60000 }, async () => {
  const courses = await pay.listCourses();
  const course = courses.find((c) => c.id === 'cpp-primer-5th');
  assert.ok(course, JSON.stringify(courses));
  assert.equal(typeof course.price_fen, 'number');

  const order = await pay.createOrder({ courseId: 'cpp-primer-5th', email: 'learner@example.com' });
  assert.equal(order.status, 'pending');
  assert.ok(order.poll_after_ms > 0 && order.final === false);
  assert.match(order.code_url, /^weixin:\/\/wxpay\/bizpayurl\?pr=/);
  assert.match(order.qr_svg, /^<svg/);

  const seen = [];
  const waiting = pay.waitForLicense(order, { onUpdate: (view) => seen.push(view.status) });
  await payInSandbox(order);
  const done = await waiting;
  assert.equal(done.status, 'fulfilled');
  assert.equal(done.final, true);
  assert.equal(done.poll_after_ms, null);
  assert.ok(seen.length >= 1 && seen.at(-1) === 'fulfilled');

  const [active] = (await pay.licenseKeys()).filter((k) => k.active);
  const check = verifyLicense(done.license.key, active.public_key_pem, { courseId: 'cpp-primer-5th', kid: active.kid });
  assert.deepEqual([check.valid, check.expired], [true, false], check.reason);
  assert.equal(check.payload.id, done.license.id);
  assert.equal(check.payload.orderId, order.order_id);
  assert.equal(verifyLicense(done.license.key, active.public_key_pem, { courseId: 'rust-monthly' }).valid, false);

  const { orders, licenses } = await pay.history(order.buyer_token);
  assert.deepEqual(orders.map((o) => o.order_id), [order.order_id]);
  assert.equal(orders[0].transaction_id, done.transaction_id);
  assert.equal(orders[0].out_trade_no, order.out_trade_no);
  assert.deepEqual(licenses.map((l) => [l.id, l.state, l.key]), [[done.license.id, 'active', done.license.key]]);

  assert.deepEqual(await pay.licenseStatus(done.license.id),
    { id: done.license.id, state: 'active', expires_at: done.license.expires_at });
  const revocations = verifyRevocations(await pay.revocations(), active.public_key_pem, { kid: active.kid });
  assert.equal(revocations.valid, true, revocations.reason);
  assert.equal(revocations.revoked.has(done.license.id), false);

  await pay.resendLicenses('learner@example.com');  // 202, nothing to read
});

test('a final order polled again is a bodiless 304 and the answer the client holds', { skip, timeout: 60000 }, async () => {
  const sent = [];
  const watched = new PayClient({ baseUrl: BASE, timeoutMs: 10000, fetch: async (url, init) => {
    const response = await fetch(url, init);
    sent.push({ url, ifNoneMatch: init.headers['If-None-Match'], status: response.status });
    return response;
  } });
  const order = await watched.createOrder({ courseId: 'cpp-primer-5th' });
  const pending = await watched.getOrder(order.order_id, order.order_token);
  assert.equal(pending.final, false);
  await payInSandbox(order);
  const done = await watched.waitForLicense(order);
  assert.equal(done.status, 'fulfilled');

  const polls = () => sent.filter((s) => s.url.endsWith(`/orders/${order.order_id}`));
  const before = polls().length;
  const again = await watched.getOrder(order.order_id, order.order_token);
  assert.deepEqual(again, done);
  const [last] = polls().slice(before);
  assert.equal(last.status, 304);
  assert.match(last.ifNoneMatch, /^"[0-9a-f]{32}"$/);
  assert.ok(polls().slice(0, before).every((s) => s.status === 200));
  assert.equal(polls().slice(0, before).filter((s) => s.ifNoneMatch).length, 0);  // nothing final held before

  // Another client without the tag gets the whole answer, equal to the one held.
  assert.deepEqual(await pay.getOrder(order.order_id, order.order_token), done);
});

test('a renewed subscription keeps its license id', { skip, timeout: 60000 }, async () => {
  const first = await pay.createOrder({ courseId: 'rust-monthly' });
  await payInSandbox(first);
  const a = await pay.waitForLicense(first);
  const second = await pay.createOrder({ courseId: 'rust-monthly', buyerToken: first.buyer_token });
  assert.equal(second.buyer_token, first.buyer_token);
  await payInSandbox(second);
  const b = await pay.waitForLicense(second);
  assert.equal(b.license.id, a.license.id);
  const days = (Date.parse(b.license.expires_at) - Date.parse(a.license.expires_at)) / 86400000;
  assert.ok(Math.abs(days - 30) < 0.01, String(days));
  const { licenses } = await pay.history(first.buyer_token);
  assert.deepEqual(licenses.map((l) => [l.id, l.order_id]), [[a.license.id, second.order_id]]);
});

test('waiting can be cancelled with an AbortSignal', { skip, timeout: 30000 }, async () => {
  const order = await pay.createOrder({ courseId: 'cpp-primer-5th' });
  const controller = new AbortController();
  const started = Date.now();
  setTimeout(() => controller.abort(new Error('learner closed the panel')), 300);
  await assert.rejects(pay.waitForLicense(order, { signal: controller.signal }), /learner closed the panel/);
  assert.ok(Date.now() - started < 3000);
  await pay.cancelOrder(order.order_id, order.order_token);
});

test('waiting stops at a final state that is not a license', { skip, timeout: 30000 }, async () => {
  const order = await pay.createOrder({ courseId: 'cpp-primer-5th' });
  const waiting = pay.waitForLicense(order);
  await pay.cancelOrder(order.order_id, order.order_token);
  const done = await waiting;
  assert.deepEqual([done.status, done.final, done.license], ['closed', true, null]);
  assert.equal(done.error.code, 'payment_cancelled');
  assert.equal(done.error.action, 'new_order');
});

test('errors arrive as PayApiError with both languages and an action', { skip, timeout: 30000 }, async () => {
  await assert.rejects(pay.createOrder({ courseId: 'no-such-course' }), (err) => {
    assert.ok(err instanceof PayApiError);
    assert.deepEqual([err.status, err.code, err.action, err.transient], [404, 'course_not_found', 'none', false]);
    assert.match(err.messageZh, /课程/);
    assert.match(err.messageEn, /course/);
    return true;
  });
  await assert.rejects(pay.history('bt_not_a_real_buyer_token'), (err) => err.status === 401 && err.code === 'unauthorized');
  await assert.rejects(pay.licenseStatus('00000000-0000-4000-8000-000000000000'),
    (err) => err.status === 404 && err.code === 'license_not_found');
});
