// verifyLicense and verifyRevocations, offline, with keys made here.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { verifyLicense, verifyRevocations } = require('../index.js');

const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const PEM = publicKey.export({ type: 'spki', format: 'pem' }).toString();
const OTHER_PEM = other.publicKey.export({ type: 'spki', format: 'pem' }).toString();

/** Sign a JSON object into DATA|SIG the way the server does. */
function sign(payload, key = privateKey) {
  const data = Buffer.from(JSON.stringify(payload)).toString('base64');
  return `${data}|${crypto.createSign('SHA256').update(data).sign(key, 'base64')}`;
}

const LICENSE = {
  id: '5fa64e1c-d2a4-4736-aee3-e86943af539e', createdAt: '2026-11-26T06:00:00.000Z',
  expiresAt: '2026-12-26T06:00:00.000Z', contentPermissions: ['all_chapters'], v: 1, kid: '41e0ce46f6612fff',
  courseId: 'rust-monthly', orderId: 'ord_x', plan: 'subscription',
};
const BEFORE = new Date('2026-12-01T00:00:00Z');

test('a license signed by the key is valid for its course and kid', () => {
  const check = verifyLicense(sign(LICENSE), PEM, { courseId: 'rust-monthly', kid: '41e0ce46f6612fff', now: BEFORE });
  assert.deepEqual([check.valid, check.expired, check.reason], [true, false, 'ok']);
  assert.equal(check.payload.id, LICENSE.id);
});

test('a license past expiresAt is valid but expired', () => {
  const check = verifyLicense(sign(LICENSE), PEM, { now: new Date('2026-12-26T06:00:00Z') });
  assert.deepEqual([check.valid, check.expired], [true, true]);
});

test('a license without expiresAt never expires', () => {
  const { expiresAt, ...lifetime } = LICENSE;
  assert.equal(expiresAt.length > 0, true);
  const check = verifyLicense(sign(lifetime), PEM, { now: new Date('2999-01-01T00:00:00Z') });
  assert.deepEqual([check.valid, check.expired], [true, false]);
});

test('another course or another kid is refused', () => {
  assert.equal(verifyLicense(sign(LICENSE), PEM, { courseId: 'cpp-primer-5th', now: BEFORE }).valid, false);
  assert.match(verifyLicense(sign(LICENSE), PEM, { kid: '0000000000000000', now: BEFORE }).reason, /key/);
});

test('a tampered, foreign or malformed license is refused', () => {
  const good = sign(LICENSE);
  const [data, sig] = good.split('|');
  const forged = Buffer.from(JSON.stringify({ ...LICENSE, courseId: 'everything' })).toString('base64');
  for (const bad of [`${forged}|${sig}`, `${data}|${sig.slice(0, -4)}AAA=`, sign(LICENSE, other.privateKey),
    data, `${good}|extra`, '', '|', 'not base64|at all']) {
    assert.equal(verifyLicense(bad, PEM, { now: BEFORE }).valid, false, bad.slice(0, 40));
  }
  assert.equal(verifyLicense(good, OTHER_PEM, { now: BEFORE }).valid, false);
  assert.equal(verifyLicense(good, 'not a pem', { now: BEFORE }).valid, false);
});

test('a revocation list lists the revoked ids once verified', () => {
  const list = sign({ v: 1, kid: 'k1', issuedAt: '2026-11-26T06:00:00.000Z', revoked: ['a', 'b'] });
  const check = verifyRevocations(list, PEM, { kid: 'k1' });
  assert.equal(check.valid, true);
  assert.deepEqual([...check.revoked], ['a', 'b']);
  assert.equal(verifyRevocations(list, OTHER_PEM).valid, false);
  assert.equal(verifyRevocations(list, PEM, { kid: 'k2' }).valid, false);
  assert.equal(verifyRevocations(sign({ v: 2, revoked: [] }), PEM).valid, false);
  assert.equal(verifyRevocations(sign({ v: 1, revoked: [1] }), PEM).valid, false);
});
