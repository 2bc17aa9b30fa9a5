// The kit in a fake VS Code against a live server in sandbox mode (LBPAY_BASE_URL; `make test-vscode` starts one).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { kit, creator, panels, commands, fakeContext } = require('./harness.js');

const BASE = process.env.LBPAY_BASE_URL;
const skip = BASE ? false : 'set LBPAY_BASE_URL to a server in sandbox mode (tests/test_vscode_kit.py does)';
const COURSE = 'cpp-primer-5th';

/** POST/DELETE to the WeChat Pay sandbox's control API, mounted under /sandbox in sandbox mode. */
async function sandbox(method, path, body) {
  const response = await fetch(`${BASE}/sandbox/control/${path}`, {
    method, headers: { 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${await response.text()}`);
}

/** The sandbox's own view of an order: its current code_url and the phone page that pays it. */
async function sandboxOrder(no) {
  const response = await fetch(`${BASE}/sandbox/control/orders/${no}`);
  assert.equal(response.status, 200, await response.clone().text());
  return response.json();
}

/** A fresh extension: context, keyring from the server, the kit registered, licenses it was handed. */
async function extension(overrides = {}) {
  const context = fakeContext();
  const pay = new kit.PayClient({ baseUrl: BASE });
  const keyring = kit.keyringFromServer(await pay.licenseKeys());
  const licenses = [];
  const api = kit.registerWeChatPay(context, {
    baseUrl: BASE, courseId: COURSE, keyring, onLicense: (key, payload) => { licenses.push({ key, payload }); }, ...overrides,
  });
  return { context, api, keyring, licenses, pay };
}

/** Open the panel through the command, as the learner would, and play the page's "ready". */
async function openPanel(command = kit.BUY_COMMAND) {
  const before = panels.length;
  await commands.get(command)();
  const panel = panels[before];
  assert.ok(panel, 'the command opened no panel');
  panel.click({ type: 'ready' });
  return panel;
}

/** A fresh extension whose panel has placed an order and shows its QR. */
async function startBuying() {
  const ext = await extension();
  const panel = await openPanel();
  await panel.waitFor((s) => s.phase === 'ready');
  panel.click({ type: 'buy' });
  return { ext, panel, waiting: await panel.waitFor((s) => s.phase === 'waiting') };
}

/** The out_trade_no of the order on the panel, from the learner's own history. */
async function outTradeNo(ext, orderId) {
  const { orders } = await ext.pay.history(await ext.context.secrets.get('lbpay.buyerToken'));
  return orders.find((o) => o.order_id === orderId).out_trade_no;
}

test('buy, pay on the sandbox phone, and the license reaches onLicense', { skip, timeout: 60000 }, async () => {
  const ext = await extension();
  assert.ok(commands.has('lbpay.buyWithWeChatPay') && commands.has('lbpay.myPurchases'));
  const panel = await openPanel();
  assert.match(panel.webview.html, /acquireVsCodeApi/);
  assert.match(panel.webview.html, /Content-Security-Policy/);
  const ready = await panel.waitFor((s) => s.phase === 'ready');
  assert.deepEqual([ready.course.id, ready.course.price_fen], [COURSE, 9900]);

  panel.click({ type: 'buy' });
  const waiting = await panel.waitFor((s) => s.phase === 'waiting');
  assert.match(waiting.order.qr_svg, /^<svg/);
  assert.equal(waiting.order.amount_fen, 9900);
  assert.ok(Date.parse(waiting.order.expires_at) > Date.now());
  const token = await ext.context.secrets.get('lbpay.buyerToken');
  assert.match(token, /\S{20,}/, 'the buyer token is kept in secret storage');
  assert.equal(JSON.stringify(ext.context.globalState.keys().map((k) => ext.context.globalState.get(k))).includes(token), false);

  await sandbox('POST', `orders/${await outTradeNo(ext, waiting.order.order_id)}/pay`, { result: 'success' });
  const licensed = await panel.waitFor((s) => s.phase === 'licensed');
  assert.equal(ext.licenses.length, 1);
  const [{ key, payload }] = ext.licenses;
  assert.equal(payload.courseId, COURSE);
  assert.equal(licensed.license.id, payload.id);
  // The host's own check at start-up: the key it was handed, the shipped keyring, the offline list.
  assert.equal(kit.checkLicense(key, ext.keyring, { courseId: COURSE }).status, 'valid');
  assert.equal(kit.checkLicense(key, ext.keyring, { courseId: 'rust-monthly' }).status, 'wrong_course');

  // "My purchases" on a new machine: the same buyer token restores the license there.
  const other = await extension({ buyCommand: 'other.buy', purchasesCommand: 'other.purchases' });
  await other.context.secrets.store('lbpay.buyerToken', token);
  const mine = await openPanel('other.purchases');
  const shown = await mine.waitFor((s) => s.phase === 'purchases');
  assert.deepEqual(shown.purchases.map((p) => [p.order_id, p.license && p.license.state]), [[waiting.order.order_id, 'active']]);
  assert.equal(shown.purchases[0].license.key, key, 'the learner sees (and may copy) their own key');
  mine.click({ type: 'restore', licenseId: payload.id });
  await mine.waitFor((s) => s.phase === 'licensed');
  assert.deepEqual(other.licenses.map((l) => l.key), [key]);
  other.api.dispose();
  ext.api.dispose();
  assert.equal(commands.has('lbpay.buyWithWeChatPay'), false);
});

test('cancel closes the order and offers a new one', { skip, timeout: 60000 }, async () => {
  const { ext, panel, waiting } = await startBuying();
  panel.click({ type: 'cancel' });
  const failed = await panel.waitFor((s) => s.phase === 'failed');
  assert.deepEqual([failed.error.code, failed.error.action, failed.order.status], ['payment_cancelled', 'new_order', 'closed']);
  assert.match(failed.error.message_zh, /取消/);
  const view = await ext.pay.getOrder(waiting.order.order_id, 'x').catch((err) => err);
  assert.equal(view.code, 'order_not_found', 'a wrong token still sees nothing');
  const { orders } = await ext.pay.history(await ext.context.secrets.get('lbpay.buyerToken'));
  assert.equal(orders.find((o) => o.order_id === waiting.order.order_id).status, 'closed');
  // The retry button places a new order.
  panel.click({ type: 'buy' });
  const again = await panel.waitFor((s) => s.phase === 'waiting' && s.order.order_id !== waiting.order.order_id);
  panel.click({ type: 'cancel' });
  await panel.waitFor((s) => s.phase === 'failed' && s.order.order_id === again.order.order_id);
  assert.equal(ext.licenses.length, 0);
  ext.api.dispose();
});

test('WeChat down: the order fails with retry_later in both languages, and a retry succeeds', { skip, timeout: 60000 }, async () => {
  const ext = await extension();
  const panel = await openPanel();
  await panel.waitFor((s) => s.phase === 'ready');
  await sandbox('POST', 'faults', { api: { fail_for: 600, status: 500, code: 'SYSTEM_ERROR' } });
  try {
    panel.click({ type: 'buy' });
    const failed = await panel.waitFor((s) => s.phase === 'failed');
    assert.deepEqual([failed.error.code, failed.error.action], ['wechat_unavailable', 'retry_later']);
    assert.match(failed.error.message_zh, /微信支付/);
    assert.match(failed.error.message_en, /WeChat Pay/);
  } finally {
    await sandbox('DELETE', 'faults');
  }
  panel.click({ type: 'buy' });
  await panel.waitFor((s) => s.phase === 'waiting');
  panel.click({ type: 'cancel' });
  await panel.waitFor((s) => s.phase === 'failed' && s.error.code === 'payment_cancelled');
  ext.api.dispose();
});

test('an expired order ends the wait with order_expired and a new order', { skip, timeout: 90000 }, async () => {
  const { ext, panel, waiting } = await startBuying();
  const summary = JSON.parse(await creator('expire', waiting.order.order_id));
  assert.equal(summary.closed, 1, JSON.stringify(summary));
  const failed = await panel.waitFor((s) => s.phase === 'failed');
  assert.deepEqual([failed.error.code, failed.error.action, failed.order.status], ['order_expired', 'new_order', 'closed']);
  assert.match(failed.error.message_zh, /过期/);
  assert.equal(ext.licenses.length, 0);
  ext.api.dispose();
});

test('a QR code the server replaces before its two hours is the one the panel shows, and it pays', { skip, timeout: 90000 }, async (t) => {
  const { ext, panel, waiting } = await startBuying();
  t.after(() => ext.api.dispose());  // a failed wait must not leave the panel polling
  // See what the panel's own polls answer, passing every call through to the server unchanged.
  const polls = [];
  const getOrder = ext.api.client.getOrder.bind(ext.api.client);
  ext.api.client.getOrder = async (...args) => {
    const view = await getOrder(...args);
    polls.push(view);
    return view;
  };
  const id = waiting.order.order_id;
  const before = await sandboxOrder(await outTradeNo(ext, id));
  await creator('age-qr', id);  // the code is now 101 minutes old on the server's side

  const redrawn = await panel.waitFor((s) => s.phase === 'waiting' && s.order.qr_svg !== waiting.order.qr_svg);
  const now = await sandboxOrder(before.out_trade_no);
  assert.notEqual(now.code_url, before.code_url, 'WeChat was asked for a current code_url');
  const poll = polls.find((view) => view.code_url === now.code_url);
  assert.ok(poll, `no poll answered the current code_url: ${JSON.stringify(polls.map((v) => v.code_url))}`);
  assert.equal(redrawn.order.qr_svg, poll.qr_svg, 'the panel draws the QR of the current code_url');
  assert.deepEqual([redrawn.order.order_id, redrawn.order.status, redrawn.order.expires_at], [id, 'pending', waiting.order.expires_at]);

  // The learner scans what the panel now shows: that code pays, and the license arrives.
  const scanned = await fetch(now.pay_page, { method: 'POST', body: new URLSearchParams({ result: 'success' }) });
  assert.equal(scanned.status, 200, await scanned.text());
  await panel.waitFor((s) => s.phase === 'licensed');
  assert.equal(ext.licenses.length, 1);
});

test('a revoked license is refused on restore and never reaches onLicense', { skip, timeout: 60000 }, async () => {
  const ext = await extension();
  const order = await ext.pay.createOrder({ courseId: COURSE });
  await ext.context.secrets.store('lbpay.buyerToken', order.buyer_token);
  const waiting = ext.pay.waitForLicense(order);
  await sandbox('POST', `orders/${order.out_trade_no}/pay`, { result: 'success' });
  const done = await waiting;
  await creator('revoke', order.order_id);

  const panel = await openPanel(kit.PURCHASES_COMMAND);
  const shown = await panel.waitFor((s) => s.phase === 'purchases');
  assert.deepEqual(shown.purchases.map((p) => p.license.state), ['revoked']);
  panel.click({ type: 'restore', licenseId: done.license.id });
  const failed = await panel.waitFor((s) => s.phase === 'failed');
  assert.deepEqual([failed.error.code, failed.error.action], ['license_revoked', 'contact_support']);
  assert.equal(ext.licenses.length, 0);
  ext.api.dispose();
});

test("the kit's client sends a final order's ETag back and keeps its answer on 304", { skip, timeout: 60000 }, async () => {
  const statuses = [];
  const pay = new kit.PayClient({ baseUrl: BASE, fetch: async (url, init) => {
    const response = await fetch(url, init);
    if (/\/api\/v1\/orders\/[^/]+$/.test(url)) statuses.push([response.status, init.headers['If-None-Match'] || null]);
    return response;
  } });
  const order = await pay.createOrder({ courseId: COURSE });
  await sandbox('POST', `orders/${order.out_trade_no}/pay`, { result: 'success' });
  const done = await pay.waitForLicense(order);
  assert.equal(done.status, 'fulfilled');
  assert.equal(statuses.at(-1)[0], 200);
  assert.deepEqual(await pay.getOrder(order.order_id, order.order_token), done);
  const [status, sent] = statuses.at(-1);
  assert.equal(status, 304);
  assert.match(sent, /^"[0-9a-f]{32}"$/);
});
