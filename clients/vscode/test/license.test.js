// verifyLicense and verifyRevocations against documents signed here with keys made here.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { kit } = require('./harness.js');

const { checkLicense, verifyLicense, verifyRevocations, parseKeyring, loadKeyring, keyId, keyDigest, isRevoked } = kit;
const NOW = new Date('2026-11-26T06:00:00.000Z');
const DAY = 86400000;

function makeKey() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = publicKey.export({ type: 'spki', format: 'pem' });
  return { privateKey, pem, kid: keyId(pem) };
}
const active = makeKey();
const retired = makeKey();
const stranger = makeKey();
const keyring = parseKeyring({ keys: [{ kid: active.kid, pem: active.pem, active: true },
  { kid: retired.kid, pem: retired.pem, active: false }] });

/** Sign a payload as the server does: licenses over DATA, every other typ over "lbpay.<typ>\n" + DATA. */
function sign(payload, key = active, { domain = payload.typ && payload.typ !== 'license' ? payload.typ : null } = {}) {
  const data = Buffer.from(JSON.stringify(payload), 'utf8').toString('base64');
  const message = domain ? `lbpay.${domain}\n${data}` : data;
  return `${data}|${crypto.sign('sha256', Buffer.from(message, 'ascii'), key.privateKey).toString('base64')}`;
}
function license(fields = {}, key = active) {
  return sign({ id: 'lic-1', createdAt: '2026-11-01T00:00:00.000Z', expiresAt: '2026-12-01T00:00:00.000Z',
    contentPermissions: ['all_chapters'], v: 1, kid: key.kid, courseId: 'cpp-primer-5th', orderId: 'LB1', plan: 'subscription',
    typ: 'license', ...fields }, key);
}
function revocations(revoked, fields = {}, key = active) {
  return verifyRevocations(sign({ typ: 'revocations', kid: key.kid, issuedAt: new Date(NOW.getTime() - DAY).toISOString(),
    revoked, ...fields }, key), keyring, { now: NOW });
}
const fresh = revocations([]).list;

test('a license of ours verifies, trimmed, under the key its kid names', () => {
  const key = license();
  for (const text of [key, ` ${key}`, `${key}\n`, `\t${key} \r\n`]) {
    const check = verifyLicense(text, keyring, { courseId: 'cpp-primer-5th', now: NOW, revocations: fresh });
    assert.deepEqual([check.ok, check.status], [true, 'valid'], check.reason);
  }
  assert.equal(verifyLicense(license({}, retired), keyring, { now: NOW, revocations: fresh }).ok, true);
});

test('a license is refused for another course, after expiry, and under a key not in the keyring', () => {
  assert.equal(verifyLicense(license(), keyring, { courseId: 'rust-monthly', now: NOW, revocations: fresh }).status, 'wrong_course');
  assert.equal(verifyLicense(license({ courseId: undefined }), keyring, { courseId: 'cpp-primer-5th', now: NOW, revocations: fresh }).status, 'wrong_course');
  const atExpiry = new Date('2026-12-01T00:00:00.000Z');
  assert.equal(checkLicense(license(), keyring, { now: atExpiry }).status, 'expired');
  assert.equal(checkLicense(license(), keyring, { now: new Date(atExpiry.getTime() - 1) }).status, 'valid');
  const foreign = checkLicense(license({}, stranger), keyring, { now: NOW });
  assert.deepEqual([foreign.ok, foreign.status], [false, 'invalid']);
  assert.match(foreign.reason, /does not know/);
  // A stranger's license naming our kid is still a bad signature.
  assert.match(checkLicense(license({ kid: active.kid }, stranger), keyring, { now: NOW }).reason, /bad signature/);
});

test('a missing or unreadable expiresAt never means forever', () => {
  for (const expiresAt of [undefined, null, 'soon', 0]) {
    const check = checkLicense(license({ expiresAt }), keyring, { now: NOW });
    assert.deepEqual([check.ok, check.status], [false, 'invalid'], String(expiresAt));
  }
});

test('legacy licenses without typ need id, contentPermissions and expiresAt', () => {
  const legacy = { id: 'old-1', createdAt: '2026-01-01T00:00:00.000Z', expiresAt: '2027-01-01T00:00:00.000Z', contentPermissions: ['all'] };
  assert.equal(checkLicense(sign(legacy), keyring, { now: NOW }).status, 'valid');
  for (const missing of ['id', 'contentPermissions', 'expiresAt']) {
    const { [missing]: _, ...rest } = legacy;
    assert.equal(checkLicense(sign(rest), keyring, { now: NOW }).status, 'invalid', missing);
  }
  assert.equal(checkLicense(license({ typ: 'licence' }), keyring, { now: NOW }).status, 'invalid');
});

test('no other signed document passes for a license, nor a license for a revocation list', () => {
  // A revocation list carries id-like fields and an expiry here, yet it is signed in its own domain.
  const list = sign({ typ: 'revocations', kid: active.kid, issuedAt: NOW.toISOString(), revoked: [],
    id: 'x', contentPermissions: [], expiresAt: '2099-01-01T00:00:00.000Z' });
  assert.match(checkLicense(list, keyring, { now: NOW }).reason, /bad signature/);
  // The same payload signed over DATA alone (the old way) is refused by its typ.
  assert.match(checkLicense(sign({ typ: 'revocations', id: 'x', contentPermissions: [], expiresAt: '2099-01-01T00:00:00.000Z', kid: active.kid }, active, { domain: null }), keyring, { now: NOW }).reason, /typ/);
  assert.equal(verifyRevocations(license(), keyring, { now: NOW }).ok, false);
  // A list signed over DATA alone, as servers before the typed format did, is not a list.
  const untyped = sign({ typ: 'revocations', kid: active.kid, issuedAt: NOW.toISOString(), revoked: [] }, active, { domain: null });
  assert.match(verifyRevocations(untyped, keyring, { now: NOW }).reason, /bad signature/);
});

test('a revoked license is refused, and so is any license without a fresh list', () => {
  const key = license({ expiresAt: '2027-12-01T00:00:00.000Z' });
  assert.equal(verifyLicense(key, keyring, { now: NOW, revocations: revocations(['lic-1']).list }).status, 'revoked');
  assert.equal(verifyLicense(key, keyring, { now: NOW }).status, 'revocations_stale');
  const weekLater = new Date(fresh.issuedAt.getTime() + 7 * DAY + 1);
  assert.equal(verifyLicense(key, keyring, { now: weekLater, revocations: fresh }).status, 'revocations_stale');
  assert.equal(verifyLicense(key, keyring, { now: new Date(weekLater.getTime() - 2), revocations: fresh }).status, 'valid');
  assert.equal(verifyLicense(key, keyring, { now: weekLater, revocations: fresh, maxRevocationAgeDays: 8 }).status, 'valid');
  assert.match(revocations([], { issuedAt: new Date(NOW.getTime() - 8 * DAY).toISOString() }).reason, /older than 7 days/);
  assert.match(revocations([], { issuedAt: new Date(NOW.getTime() + DAY).toISOString() }).reason, /future/);
  assert.match(revocations([], { typ: 'revocation' }).reason, /bad signature|typ/);
  assert.match(revocations([1]).reason, /license ids/);
});

test('a key replaced by a shorter one is revoked by its digest alone, the shorter key stays valid', () => {
  const longer = license({ id: 'lic-sub', expiresAt: '2027-12-01T00:00:00.000Z' });
  const shorter = license({ id: 'lic-sub', expiresAt: '2027-11-01T00:00:00.000Z' });
  const list = revocations([], { revokedKeys: [keyDigest(`  ${longer}\n`)] }).list;
  assert.equal(verifyLicense(longer, keyring, { now: NOW, revocations: list }).status, 'revoked');
  assert.equal(verifyLicense(shorter, keyring, { now: NOW, revocations: list }).status, 'valid');
  assert.equal(isRevoked(list, longer, 'lic-sub'), true);
  assert.equal(fresh.revokedKeys.size, 0, 'a list without revokedKeys (an older server) revokes no single key');
  assert.match(revocations([], { revokedKeys: ['XYZ'] }).reason, /key digests/);
});

test('DATA and SIG are strict base64 and exactly two parts', () => {
  const [data, sig] = license().split('|');
  for (const text of [`${data}|${sig}|x`, data, `${data}|`, `${data} |${sig}`, `${data}|${sig.slice(0, -2)}`, `${data}=|${sig}`]) {
    assert.equal(checkLicense(text, keyring, { now: NOW }).ok, false, text.slice(-20));
  }
});

test('a keyring is refused when a kid is not its key or not exactly one key is active', () => {
  assert.throws(() => parseKeyring({ keys: [{ kid: retired.kid, pem: active.pem, active: true }] }), /not the key its kid names/);
  assert.throws(() => parseKeyring({ keys: [{ kid: active.kid, pem: active.pem, active: false }] }), /exactly one/);
  assert.throws(() => parseKeyring({ keys: [] }), /non-empty/);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lbpay-keyring-'));
  fs.mkdirSync(path.join(dir, 'licence-keys'));
  fs.writeFileSync(path.join(dir, 'licence-keys', 'keyring.json'), JSON.stringify(keyring));
  assert.deepEqual(loadKeyring(dir), keyring);
});
