// Offline checks of what the server signs: licenses and the revocation list.
//
// Both are `DATA|SIG`, DATA = base64 of a compact UTF-8 JSON object, SIG = base64 RSA PKCS#1 v1.5 SHA-256.
// A license is signed over the ASCII bytes of DATA (what the extension has always checked); every other
// document names its `typ` and is signed over "lbpay." + typ + "\n" + DATA, so no signed document of
// another kind can ever pass for a license, nor a license for one of them.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

/** One public key the server has signed with; `active` is the one that signs new documents. */
export interface KeyringEntry {
  kid: string;
  pem: string;
  active: boolean;
}

/** The keys the extension ships (`lbpay keys export DIR` writes them as licence-keys/keyring.json). */
export interface Keyring {
  keys: KeyringEntry[];
}

/** What a license says about itself, once its signature holds. */
export interface LicensePayload {
  id: string;
  createdAt?: string;
  expiresAt: string;
  contentPermissions: unknown;
  v?: number;
  kid?: string;
  typ?: string;
  courseId?: string;
  orderId?: string;
  plan?: string;
  [field: string]: unknown;
}

export type LicenseStatus = 'valid' | 'invalid' | 'expired' | 'wrong_course' | 'revoked' | 'revocations_stale';

/** The verdict on a license: use it only when `ok`. */
export interface LicenseCheck {
  ok: boolean;
  status: LicenseStatus;
  reason: string;
  payload: LicensePayload | null;
}

/** A revocation list whose signature, kind and age have been checked. */
export interface RevocationList {
  kid: string;
  issuedAt: Date;
  revoked: ReadonlySet<string>;
  /** Single keys revoked on their own (`keyDigest`): a subscription key replaced by a shorter one. */
  revokedKeys: ReadonlySet<string>;
  text: string;
}

export const LICENSE_TYP = 'license';
export const REVOCATIONS_TYP = 'revocations';
export const DEFAULT_MAX_REVOCATION_AGE_DAYS = 7;
const DAY_MS = 24 * 60 * 60 * 1000;
// A list stamped a little ahead of this machine's clock is a skewed clock, not a forgery.
const FUTURE_SKEW_MS = 5 * 60 * 1000;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** A key's kid as the server names it: the first 16 hex digits of SHA-256 over its DER SubjectPublicKeyInfo. */
export function keyId(pem: string): string {
  const der = crypto.createPublicKey(pem).export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(der).digest('hex').slice(0, 16);
}

/** Check a keyring read from JSON: every entry an RSA public key whose kid is its own, exactly one active. */
export function parseKeyring(value: unknown): Keyring {
  const keys = value && typeof value === 'object' ? (value as { keys?: unknown }).keys : undefined;
  if (!Array.isArray(keys) || keys.length === 0) throw new Error('keyring: "keys" must be a non-empty list');
  const entries = keys.map((entry, i): KeyringEntry => {
    const { kid, pem, active } = (entry || {}) as Record<string, unknown>;
    if (typeof kid !== 'string' || typeof pem !== 'string' || typeof active !== 'boolean') {
      throw new Error(`keyring: key ${i} needs kid, pem and active`);
    }
    const key = crypto.createPublicKey(pem);
    if (key.asymmetricKeyType !== 'rsa') throw new Error(`keyring: key ${kid} is not an RSA key`);
    if (keyId(pem) !== kid) throw new Error(`keyring: key ${kid} is not the key its kid names`);
    return { kid, pem, active };
  });
  if (entries.filter((k) => k.active).length !== 1) throw new Error('keyring: exactly one key must be active');
  return { keys: entries };
}

/** Read `licence-keys/keyring.json` from the extension's folder (or the file itself). */
export function loadKeyring(extensionPathOrFile: string): Keyring {
  const file = extensionPathOrFile.endsWith('.json')
    ? extensionPathOrFile : path.join(extensionPathOrFile, 'licence-keys', 'keyring.json');
  return parseKeyring(JSON.parse(fs.readFileSync(file, 'utf8')));
}

/** The keyring as `GET /api/v1/license-keys` publishes it (for tests and for a first run online). */
export function keyringFromServer(keys: { kid: string; public_key_pem: string; active: boolean }[]): Keyring {
  return parseKeyring({ keys: keys.map((k) => ({ kid: k.kid, pem: k.public_key_pem, active: k.active })) });
}

function decodeBase64(text: string): Buffer | null {
  if (!BASE64.test(text) || text.length % 4 !== 0) return null;
  const bytes = Buffer.from(text, 'base64');
  // Only one spelling of the bytes is accepted, so nothing can ride along in the padding bits.
  return bytes.toString('base64') === text ? bytes : null;
}

type Opened = { ok: true; payload: Record<string, unknown>; kid: string } | { ok: false; reason: string };

/** Verify `DATA|SIG` as a document of kind `typ` under one of the keyring's keys. */
export function openSigned(text: string, keyring: Keyring, typ: string): Opened {
  const parts = text.split('|');
  if (parts.length !== 2) return { ok: false, reason: 'not DATA|SIG' };
  const [data, sig] = parts;
  const raw = decodeBase64(data);
  const signature = decodeBase64(sig);
  if (!raw || !signature) return { ok: false, reason: 'DATA or SIG is not base64' };
  let payload: unknown;
  try {
    payload = JSON.parse(raw.toString('utf8'));
  } catch {
    return { ok: false, reason: 'DATA is not JSON' };
  }
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) return { ok: false, reason: 'DATA is not a JSON object' };
  const fields = payload as Record<string, unknown>;
  // The kid only chooses a key to try; nothing in the payload counts until the signature holds.
  const candidates = typeof fields.kid === 'string'
    ? keyring.keys.filter((k) => k.kid === fields.kid)
    : typ === LICENSE_TYP && fields.kid === undefined ? keyring.keys : [];
  if (candidates.length === 0) return { ok: false, reason: `signed by a key this extension does not know (${String(fields.kid)})` };
  const message = Buffer.from(typ === LICENSE_TYP ? data : `lbpay.${typ}\n${data}`, 'ascii');
  const signer = candidates.find((k) => crypto.verify('sha256', message,
    { key: k.pem, padding: crypto.constants.RSA_PKCS1_PADDING }, signature));
  if (!signer) return { ok: false, reason: 'bad signature' };
  return { ok: true, payload: fields, kid: signer.kid };
}

/**
 * The name a revocation list gives one license key: the first 32 hex digits of SHA-256 over its DATA part
 * (the text before `|`, which its signature covers). A subscription key signed again shorter keeps its
 * license id, so the longer key it replaced is listed by this name, in `revokedKeys`.
 */
export function keyDigest(key: string): string {
  const data = key.trim().split('|', 1)[0];
  return crypto.createHash('sha256').update(data, 'utf8').digest('hex').slice(0, 32);
}

/** Whether the list revokes this key: its whole license id, or this very key. */
export function isRevoked(list: RevocationList, key: string, licenseId: string | undefined): boolean {
  return (typeof licenseId === 'string' && list.revoked.has(licenseId)) || list.revokedKeys.has(keyDigest(key));
}

/** Check a signed revocation list: kind, signature, shape and age (refused once older than `maxAgeDays`). */
export function verifyRevocations(text: string, keyring: Keyring,
  { now = new Date(), maxAgeDays = DEFAULT_MAX_REVOCATION_AGE_DAYS }: { now?: Date; maxAgeDays?: number } = {},
): { ok: true; list: RevocationList } | { ok: false; reason: string } {
  const opened = openSigned(text.trim(), keyring, REVOCATIONS_TYP);
  if (!opened.ok) return opened;
  const doc = opened.payload;
  if (doc.typ !== REVOCATIONS_TYP) return { ok: false, reason: `typ is ${JSON.stringify(doc.typ)}, not "revocations"` };
  const revoked = doc.revoked;
  if (!Array.isArray(revoked) || !revoked.every((id) => typeof id === 'string')) {
    return { ok: false, reason: 'revoked is not a list of license ids' };
  }
  // Absent from lists signed before single keys were listed.
  const revokedKeys = doc.revokedKeys === undefined ? [] : doc.revokedKeys;
  if (!Array.isArray(revokedKeys) || !revokedKeys.every((d) => typeof d === 'string' && /^[0-9a-f]{32}$/.test(d))) {
    return { ok: false, reason: 'revokedKeys is not a list of key digests' };
  }
  const issuedAt = typeof doc.issuedAt === 'string' ? new Date(doc.issuedAt) : new Date(NaN);
  if (Number.isNaN(issuedAt.getTime())) return { ok: false, reason: 'issuedAt is not a date' };
  const list: RevocationList = {
    kid: opened.kid, issuedAt, revoked: new Set(revoked as string[]), revokedKeys: new Set(revokedKeys as string[]),
    text: text.trim(),
  };
  const age = revocationAge(list, now, maxAgeDays);
  return age ? { ok: false, reason: age } : { ok: true, list };
}

/** Why a list cannot be relied on at `now`, or null when it can. */
function revocationAge(list: RevocationList, now: Date, maxAgeDays: number): string | null {
  const age = now.getTime() - list.issuedAt.getTime();
  if (age > maxAgeDays * DAY_MS) return `the revocation list is from ${list.issuedAt.toISOString()}, older than ${maxAgeDays} days`;
  if (age < -FUTURE_SKEW_MS) return `the revocation list is dated in the future (${list.issuedAt.toISOString()})`;
  return null;
}

function refuse(status: LicenseStatus, reason: string, payload: LicensePayload | null = null): LicenseCheck {
  return { ok: false, status, reason, payload };
}

/**
 * Check a license offline without the revocation list: signature under a keyring key, kind, course and expiry.
 *
 * Use it only where the server has just said the license is active (the order or history it came with);
 * everywhere else use `verifyLicense`, which also needs a fresh revocation list.
 */
export function checkLicense(key: string, keyring: Keyring,
  { courseId, now = new Date() }: { courseId?: string; now?: Date } = {}): LicenseCheck {
  if (typeof key !== 'string') return refuse('invalid', 'not a string');
  const opened = openSigned(key.trim(), keyring, LICENSE_TYP);
  if (!opened.ok) return refuse('invalid', opened.reason);
  const payload = opened.payload as LicensePayload;
  if (payload.typ !== undefined && payload.typ !== LICENSE_TYP) {
    return refuse('invalid', `typ is ${JSON.stringify(payload.typ)}, not "license"`);
  }
  if (payload.typ === undefined
      && !(typeof payload.id === 'string' && payload.contentPermissions !== undefined && typeof payload.expiresAt === 'string')) {
    return refuse('invalid', 'a license without typ needs id, contentPermissions and expiresAt');
  }
  if (typeof payload.id !== 'string' || !payload.id) return refuse('invalid', 'no license id', payload);
  // A license with no end date is not one that never ends: it is not one of ours.
  const expiresAt = typeof payload.expiresAt === 'string' ? new Date(payload.expiresAt).getTime() : NaN;
  if (Number.isNaN(expiresAt)) return refuse('invalid', 'expiresAt is missing or not a date', payload);
  if (courseId !== undefined && payload.courseId !== courseId) {
    return refuse('wrong_course', `for course ${String(payload.courseId)}, not ${courseId}`, payload);
  }
  if (now.getTime() >= expiresAt) return refuse('expired', `expired at ${payload.expiresAt}`, payload);
  return { ok: true, status: 'valid', reason: 'ok', payload };
}

/**
 * Verify a license offline: everything `checkLicense` checks, and that a signed revocation list no older
 * than `maxRevocationAgeDays` does not name it. Without such a list the answer is `revocations_stale`.
 */
export function verifyLicense(key: string, keyring: Keyring, {
  courseId, now = new Date(), revocations, maxRevocationAgeDays = DEFAULT_MAX_REVOCATION_AGE_DAYS,
}: { courseId?: string; now?: Date; revocations?: RevocationList | null; maxRevocationAgeDays?: number } = {}): LicenseCheck {
  const check = checkLicense(key, keyring, { courseId, now });
  if (!check.ok || !check.payload) return check;
  if (!revocations) return refuse('revocations_stale', 'no revocation list yet: go online once', check.payload);
  const stale = revocationAge(revocations, now, maxRevocationAgeDays);
  if (stale) return refuse('revocations_stale', stale, check.payload);
  if (revocations.revoked.has(check.payload.id)) return refuse('revoked', 'the license is on the revocation list', check.payload);
  if (isRevoked(revocations, key, check.payload.id)) {
    return refuse('revoked', 'this key was replaced by a shorter one (a refunded period)', check.payload);
  }
  return check;
}
