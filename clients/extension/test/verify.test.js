// verifyLicense and verifyRevocations, offline, with keys made here.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { verifyLicense, verifyRevocations, keyDigest, isRevoked, signedMessage } = require('../index.js');

const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const PEM = publicKey.export({ type: 'spki', format: 'pem' }).toString();
const OTHER_PEM = other.publicKey.export({ type: 'spki', format: 'pem' }).toString();

/** Sign a JSON object into DATA|SIG the way the server does: over DATA, or `lbpay.<typ>\n` + DATA. */
function sign(payload, key = privateKey, typ = payload.typ || 'license') {
  const data = Buffer.from(JSON.stringify(payload)).toString('base64');
  return `${data}|${crypto.createSign('SHA256').update(signedMessage(typ, data)).sign(key, 'base64')}`;
}

const LICENSE = {
  typ: 'license', id: '5fa64e1c-d2a4-4736-aee3-e86943af539e', createdAt: '2026-11-26T06:00:00.000Z',
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

test('a license without expiresAt is refused, never taken as perpetual', () => {
  const { expiresAt, ...lifetime } = LICENSE;
  assert.equal(expiresAt.length > 0, true);
  const check = verifyLicense(sign(lifetime), PEM, { now: BEFORE });
  assert.deepEqual([check.valid, check.reason], [false, 'no expiry']);
});

test('a legacy license without typ is valid only with id, contentPermissions and expiresAt', () => {
  const { typ, ...legacy } = LICENSE;
  assert.equal(typ, 'license');
  assert.equal(verifyLicense(sign(legacy), PEM, { now: BEFORE }).valid, true);
  for (const field of ['id', 'contentPermissions', 'expiresAt']) {
    const { [field]: dropped, ...partial } = legacy;
    assert.ok(dropped !== undefined);
    const check = verifyLicense(sign(partial), PEM, { now: BEFORE });
    assert.deepEqual([check.valid, check.reason], [false, 'not a license'], field);
  }
});

test('a document of another typ is never a license, however it was signed', () => {
  const list = { typ: 'revocations', v: 1, kid: 'k1', issuedAt: '2026-11-30T00:00:00.000Z', revoked: [] };
  assert.equal(verifyLicense(sign(list), PEM, { now: BEFORE }).reason, 'bad signature');
  // Even signed over bare DATA (as a license is), its typ gives it away.
  assert.equal(verifyLicense(sign(list, privateKey, 'license'), PEM, { now: BEFORE }).reason, 'not a license');
  assert.equal(verifyLicense(sign({ ...LICENSE, typ: 'receipt' }), PEM, { now: BEFORE }).valid, false);
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

const ISSUED = '2026-11-26T06:00:00.000Z';
const LIST = { typ: 'revocations', v: 1, kid: 'k1', issuedAt: ISSUED, revoked: ['a', 'b'] };
const SOON = new Date('2026-11-27T00:00:00Z');

test('a revocation list lists the revoked ids once verified', () => {
  const list = sign(LIST);
  const check = verifyRevocations(list, PEM, { kid: 'k1', now: SOON });
  assert.equal(check.valid, true, check.reason);
  assert.deepEqual([...check.revoked], ['a', 'b']);
  assert.equal(verifyRevocations(list, OTHER_PEM, { now: SOON }).valid, false);
  assert.equal(verifyRevocations(list, PEM, { kid: 'k2', now: SOON }).valid, false);
  assert.equal(verifyRevocations(sign({ ...LIST, v: 2 }), PEM, { now: SOON }).valid, false);
  assert.equal(verifyRevocations(sign({ ...LIST, revoked: [1] }), PEM, { now: SOON }).valid, false);
});

test('a revocation list names single keys by the digest of their DATA part', () => {
  const longer = sign(LICENSE);
  const shorter = sign({ ...LICENSE, expiresAt: '2026-12-20T06:00:00.000Z' });
  const check = verifyRevocations(sign({ ...LIST, revokedKeys: [keyDigest(longer)] }), PEM, { now: SOON });
  assert.equal(check.valid, true, check.reason);
  assert.deepEqual([isRevoked(check, ` ${longer}\n`, LICENSE.id), isRevoked(check, shorter, LICENSE.id)], [true, false]);
  assert.equal(isRevoked(check, shorter, 'a'), true, 'a listed license id revokes every key of it');
  assert.equal(verifyRevocations(sign(LIST), PEM, { now: SOON }).revokedKeys.size, 0);
  assert.equal(verifyRevocations(sign({ ...LIST, revokedKeys: ['nope'] }), PEM, { now: SOON }).valid, false);
});

test('a revocation list older than seven days, or from the future, is refused', () => {
  const list = sign(LIST);
  const issued = Date.parse(ISSUED);
  const day = 24 * 60 * 60 * 1000;
  assert.equal(verifyRevocations(list, PEM, { now: new Date(issued + 7 * day) }).valid, true);
  assert.equal(verifyRevocations(list, PEM, { now: new Date(issued + 7 * day + 1) }).reason, 'stale');
  assert.equal(verifyRevocations(list, PEM, { now: new Date(issued + 2 * day), maxAgeMs: day }).reason, 'stale');
  assert.equal(verifyRevocations(list, PEM, { now: new Date(issued - day) }).reason, 'issued in the future');
  assert.equal(verifyRevocations(sign({ ...LIST, issuedAt: 'soon' }), PEM, { now: SOON }).valid, false);
});

test('a license or an untyped list is never a revocation list', () => {
  assert.equal(verifyRevocations(sign(LICENSE), PEM, { now: SOON }).reason, 'bad signature');
  const { typ, ...untyped } = LIST;
  assert.equal(typ, 'revocations');
  // The lists served before documents had a typ were signed like licenses; none verifies now.
  assert.equal(verifyRevocations(sign(untyped, privateKey, 'license'), PEM, { now: SOON }).valid, false);
  assert.equal(verifyRevocations(sign(untyped, privateKey, 'revocations'), PEM, { now: SOON }).reason,
    'not a revocations');
});
