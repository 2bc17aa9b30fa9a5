// Paying with Alipay from the kit: the methods the shop has on, createOrder({method}), and the panel's own
// Alipay button, against a live server in sandbox mode (its Alipay simulator is under /sandbox/alipay).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { kit, panels, commands, fakeContext } = require('./harness.js');

const BASE = process.env.LBPAY_BASE_URL;
const skip = BASE ? false : 'set LBPAY_BASE_URL to a server in sandbox mode (tests/test_vscode_kit.py does)';
const COURSE = 'cpp-primer-5th';

/** The learner pays the trade on the simulated Alipay phone (its control API). */
async function payAtAlipay(outTradeNo) {
  const answer = await fetch(`${BASE}/sandbox/alipay/control/trades/${outTradeNo}/pay`, { method: 'POST' });
  assert.equal(answer.status, 200, await answer.text());
}

test('the catalogue names the methods that are on, and an order placed with Alipay is paid at Alipay', { skip, timeout: 60000 }, async () => {
  const pay = new kit.PayClient({ baseUrl: BASE });
  const { courses, paymentMethods } = await pay.catalog();
  assert.deepEqual(paymentMethods, ['wechat', 'alipay']);
  assert.ok(courses.some((c) => c.id === COURSE));
  const order = await pay.createOrder({ courseId: COURSE, method: 'alipay' });
  assert.equal(order.method, 'alipay');
  assert.match(order.out_trade_no, /^LA/);
  assert.match(order.code_url, /\/sandbox\/alipay\/qr\//);
  const waiting = pay.waitForLicense(order);
  await payAtAlipay(order.out_trade_no);
  const done = await waiting;
  assert.equal(done.status, 'fulfilled');
  assert.ok(done.license && done.license.key);
  // WeChat stays the default: no method named is a WeChat order, as before.
  assert.match((await pay.createOrder({ courseId: COURSE })).out_trade_no, /^LB/);
});

test('the panel offers both methods; its Alipay button buys with Alipay and the license is handed over', { skip, timeout: 60000 }, async () => {
  const context = fakeContext();
  const pay = new kit.PayClient({ baseUrl: BASE });
  const keyring = kit.keyringFromServer(await pay.licenseKeys());
  const handed = [];
  const api = kit.registerWeChatPay(context, { baseUrl: BASE, courseId: COURSE, keyring,
    onLicense: (key) => { handed.push(key); } });
  try {
    const before = panels.length;
    await commands.get(kit.BUY_COMMAND)();
    const panel = panels[before];
    panel.click({ type: 'ready' });
    const ready = await panel.waitFor((s) => s.phase === 'ready');
    assert.deepEqual(ready.methods, ['wechat', 'alipay']);
    assert.match(panel.webview.html, /buy-alipay/);
    assert.match(panel.webview.html, /请使用支付宝扫一扫支付/);

    panel.click({ type: 'buy', method: 'alipay' });
    const waiting = await panel.waitFor((s) => s.phase === 'waiting');
    assert.equal(waiting.order.method, 'alipay');
    const { orders } = await pay.history(await context.secrets.get('lbpay.buyerToken'));
    const placed = orders.find((o) => o.order_id === waiting.order.order_id);
    assert.match(placed.out_trade_no, /^LA/);
    await payAtAlipay(placed.out_trade_no);
    const licensed = await panel.waitFor((s) => s.phase === 'licensed');
    assert.equal(licensed.license.course_id, COURSE);
    assert.equal(handed.length, 1);
  } finally {
    api.dispose();
  }
});

test('a server that names no payment methods (from before Alipay) is taken as WeChat Pay only', { timeout: 30000 }, async () => {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ courses: [{ id: COURSE, title: 'C++', price_fen: 9900, currency: 'CNY', plan: 'one_time', period_days: null }] }));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const pay = new kit.PayClient({ baseUrl: `http://127.0.0.1:${server.address().port}` });
    assert.deepEqual((await pay.catalog()).paymentMethods, ['wechat']);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});
