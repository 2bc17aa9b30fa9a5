// The server's own revocation list, as the kit keeps it offline, refuses a license the creator revoked.
// The typed revocation format (signed over "lbpay.revocations\n" + DATA); run by tests/test_vscode_kit.py.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { kit, creator, fakeContext } = require('./harness.js');

const BASE = process.env.LBPAY_BASE_URL;

test('a revoked license is on the server\'s list and verifyLicense refuses it', { timeout: 60000 }, async () => {
  const pay = new kit.PayClient({ baseUrl: BASE });
  const keyring = kit.keyringFromServer(await pay.licenseKeys());
  const bought = [];
  for (let i = 0; i < 2; i += 1) {
    const order = await pay.createOrder({ courseId: 'cpp-primer-5th' });
    const waiting = pay.waitForLicense(order);
    const paid = await fetch(`${BASE}/sandbox/control/orders/${order.out_trade_no}/pay`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"result":"success"}' });
    assert.equal(paid.status, 200);
    bought.push({ order, done: await waiting });
  }
  const [revoked, kept] = bought;
  await creator('revoke', revoked.order.order_id);

  const store = new kit.RevocationStore(fakeContext().globalState, pay, keyring);
  const list = await store.refresh();
  assert.ok(list.revoked.has(revoked.done.license.id));
  const check = (done) => kit.verifyLicense(done.license.key, keyring, { courseId: 'cpp-primer-5th', revocations: store.current() });
  assert.equal(check(revoked.done).status, 'revoked');
  assert.equal(check(kept.done).status, 'valid');
  // The list itself is no license.
  assert.equal(kit.checkLicense(list.text, keyring).status, 'invalid');
});
