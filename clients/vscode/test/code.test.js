// A discount code typed in the kit's buy panel (issue 22), against a live sandbox server that has the codes
// KIT20 (20 % off cpp-primer-5th) and RUSTONLY (for rust-monthly only): tests/test_vscode_kit.py adds them.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { kit, fakeContext } = require('./harness.js');

const BASE = process.env.LBPAY_BASE_URL;
const skip = BASE ? false : 'set LBPAY_BASE_URL to a server in sandbox mode (tests/test_vscode_kit.py does)';

test('a discount code typed in the panel: refused beside the form in both languages, then the lower price at WeChat', { skip, timeout: 60000 }, async (t) => {
  const pay = new kit.PayClient({ baseUrl: BASE });
  const api = kit.registerWeChatPay(fakeContext(), { baseUrl: BASE, courseId: 'cpp-primer-5th',
    keyring: kit.keyringFromServer(await pay.licenseKeys()) });
  t.after(() => api.dispose());
  const panel = api.open('buy').panel;
  panel.click({ type: 'ready' });
  await panel.waitFor((s) => s.phase === 'ready');

  panel.click({ type: 'buy', email: '', code: ' rustonly ' });
  const refused = await panel.waitFor((s) => s.phase === 'ready' && s.error !== null);
  assert.equal(refused.error.code, 'code_wrong_course');
  assert.equal(refused.error.message_zh, '该优惠码不适用于这门课程。');
  assert.equal(refused.error.message_en, 'This discount code is not for this course.');
  assert.deepEqual(refused.entered, { email: '', code: 'rustonly' }, 'what was typed stays, to correct it');

  panel.click({ type: 'buy', email: '', code: 'kit20' });
  const waiting = await panel.waitFor((s) => s.phase === 'waiting');
  assert.deepEqual([waiting.order.list_price_fen, waiting.order.discount_fen, waiting.order.amount_fen], [9900, 1980, 7920]);
  assert.equal(waiting.error, null);
  panel.click({ type: 'cancel' });
  await panel.waitFor((s) => s.phase === 'failed');
});
