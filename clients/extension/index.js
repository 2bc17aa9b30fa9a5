// @ts-check
// The Learning Buddy Pay API for the VS Code extension (Node 20, no dependencies beyond Node's own).
//
//   const { PayClient, verifyLicense } = require('./index.js');
//   const pay = new PayClient({ baseUrl: 'https://pay.example.com' });
//   const order = await pay.createOrder({ courseId: 'cpp-primer-5th', buyerToken });  // method: 'alipay' if catalog().paymentMethods has it
//   // show order.qr_svg, keep order.buyer_token in the extension's secret storage; while it waits, show
//   // each poll's qr_svg instead (the server renews the code before WeChat's 2 hours run out)
//   const done = await pay.waitForLicense(order, { signal, onUpdate: (view) => view.qr_svg && draw(view.qr_svg) });
//   if (done.license) verifyLicense(done.license.key, publicKeyPem, { courseId: 'cpp-primer-5th' });
//   verifyRevocations(await pay.revocations(), publicKeyPem);  // refused once older than 7 days
'use strict';

const crypto = require('node:crypto');

/**
 * @typedef {{id: string, title: string, price_fen: number, currency: 'CNY',
 *            plan: 'one_time'|'subscription', period_days: number|null}} Course
 * @typedef {'retry'|'retry_later'|'new_order'|'contact_support'|'fix_request'|'none'} ErrorAction
 * @typedef {'wechat'|'alipay'} PaymentMethod
 * @typedef {{code: string, message_zh: string, message_en: string, action: ErrorAction, detail?: string}} ErrorDetail
 * @typedef {{id: string, key: string, expires_at: string, plan: 'one_time'|'subscription',
 *            state: 'active'|'expired'|'revoked'}} OrderLicense
 * @typedef {{order_id: string, status: string, course_id: string, amount_fen: number, list_price_fen: number,
 *            discount_fen: number, currency: 'CNY',
 *            code_url: string|null, qr_svg: string|null, created_at: string, expires_at: string, paid_at: string|null,
 *            out_trade_no: string, method?: 'wechat'|'alipay', transaction_id: string|null, license: OrderLicense|null,
 *            error: ErrorDetail|null, final: boolean, poll_after_ms: number|null}} Order
 * @typedef {Order & {qr_svg: string, order_token: string, buyer_token: string,
 *            email_notice: {zh: string, en: string}|null,
 *            seats?: {count: number, unit_fen: number, page_url: string}}} PlacedOrder
 * @typedef {{order_id: string, out_trade_no: string, transaction_id: string|null, course_title: string,
 *            amount_fen: number, amount: string, currency: 'CNY', paid_at_beijing: string, timezone: 'Asia/Shanghai',
 *            seller: {name: string, contact: string|null, refund_terms: string|null}, url: string}} Receipt
 * @typedef {{order_id: string, course_id: string, amount_fen: number, currency: 'CNY', status: string,
 *            created_at: string, paid_at: string|null, transaction_id: string|null, out_trade_no: string,
 *            license: {id: string, state: string, expires_at: string}|null, receipt: Receipt|null}} HistoryOrder
 * @typedef {{id: string, course_id: string, order_id: string, state: 'active'|'expired'|'revoked',
 *            expires_at: string, key: string}} BuyerLicense
 * @typedef {{kid: string, algorithm: string, public_key_pem: string, active: boolean}} LicenseKey
 * @typedef {{valid: boolean, expired: boolean, payload: Record<string, any>|null, reason: string}} LicenseCheck
 * @typedef {{valid: boolean, reason: string, issuedAt: string|null, kid: string|null, revoked: Set<string>,
 *            revokedKeys: Set<string>}} RevocationCheck
 */

const DEFAULT_TIMEOUT_MS = 10000;
/**
 * What Node's fetch (undici) names in `cause` when the connection dropped under a request: a reused
 * keep-alive connection the server had closed (gunicorn after 2 s idle) while a busy host did not notice.
 */
const DROPPED_CONNECTION = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);
const DEFAULT_POLL_MS = 1000;
const MAX_WAIT_MS = 30 * 60 * 1000;
/** Final answers a client keeps to send their ETags back (the oldest goes first). */
const MAX_HELD_ANSWERS = 100;

/** An answer from the server that carries a catalogued error: show `messageZh`/`messageEn`, follow `action`. */
class PayApiError extends Error {
  /**
   * @param {number} status
   * @param {ErrorDetail} detail
   * @param {number|null} retryAfterMs
   */
  constructor(status, detail, retryAfterMs) {
    super(`${status} ${detail.code}: ${detail.message_en}`);
    this.name = 'PayApiError';
    this.status = status;
    this.code = detail.code;
    this.messageZh = detail.message_zh;
    this.messageEn = detail.message_en;
    this.action = detail.action;
    this.detail = detail.detail;
    /** How long to wait before trying again, when the server said so. */
    this.retryAfterMs = retryAfterMs;
  }

  /** True when the same call may succeed later (server busy, WeChat down, rate limited). */
  get transient() {
    return this.status === 429 || this.status >= 500;
  }
}

/**
 * Wait `ms`, or reject with the signal's reason as soon as it aborts.
 * @param {number} ms
 * @param {AbortSignal} [signal]
 * @returns {Promise<void>}
 */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal && signal.reason);
    };
    const timer = setTimeout(() => {
      if (signal) signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Whether fetch failed because the connection dropped (not an answer, an abort or a timeout).
 * @param {unknown} err
 */
function droppedConnection(err) {
  const cause = err instanceof TypeError ? /** @type {{cause?: {code?: unknown}}} */ (err).cause : undefined;
  return typeof cause?.code === 'string' && DROPPED_CONNECTION.has(cause.code);
}

/**
 * One signal that aborts when the caller's does or when `timeoutMs` passes.
 * @param {AbortSignal|undefined} signal
 * @param {number} timeoutMs
 */
function withTimeout(signal, timeoutMs) {
  const timeout = AbortSignal.timeout(timeoutMs);
  if (!signal) return timeout;
  const controller = new AbortController();
  const forward = (/** @type {AbortSignal} */ from) => () => controller.abort(from.reason);
  if (signal.aborted) controller.abort(signal.reason);
  signal.addEventListener('abort', forward(signal), { once: true });
  timeout.addEventListener('abort', forward(timeout), { once: true });
  return controller.signal;
}

/** A client for one Learning Buddy Pay server's `/api/v1`. */
class PayClient {
  /**
   * @param {{baseUrl: string, timeoutMs?: number, fetch?: typeof globalThis.fetch}} options
   */
  constructor({ baseUrl, timeoutMs = DEFAULT_TIMEOUT_MS, fetch = globalThis.fetch }) {
    if (!/^https?:\/\//.test(baseUrl)) throw new TypeError('baseUrl must start with https:// (or http:// locally)');
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.timeoutMs = timeoutMs;
    this.fetch = fetch;
    /** The last final answer of each order polled, with its ETag: sent back, an unchanged one is a bodiless 304. */
    this.finalAnswers = new Map();
  }

  /**
   * Call the API; resolve with the JSON (or text) body, reject with PayApiError for an error answer.
   * With `etag` (a string, '' for none yet) the request is a conditional GET: it resolves with
   * `{data, etag}`, `data` null when the server answered 304 (what the client holds is current).
   * @param {string} method
   * @param {string} path
   * @param {{body?: unknown, token?: string, signal?: AbortSignal, text?: boolean, etag?: string}} [options]
   * @returns {Promise<any>}
   */
  async request(method, path, { body, token, signal, text = false, etag } = {}) {
    /** @type {Record<string, string>} */
    const headers = { Accept: text ? 'text/plain' : 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    if (etag) headers['If-None-Match'] = etag;
    const url = `${this.baseUrl}/api/v1${path}`;
    const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      signal: withTimeout(signal, this.timeoutMs) };
    let response;
    try {
      response = await this.fetch(url, init);
    } catch (err) {
      // A GET changes nothing, so it goes again at once (on a new connection); a POST may have arrived.
      if (method !== 'GET' || !droppedConnection(err)) throw err;
      response = await this.fetch(url, init);
    }
    if (etag !== undefined && (response.ok || response.status === 304)) {
      // A conditional GET: its answer (null for "unchanged", 304) with the tag that names it.
      return { data: response.status === 304 ? null : await response.json(), etag: response.headers.get('ETag') };
    }
    if (response.ok) return text ? response.text() : response.json();
    const retryAfter = Number.parseInt(response.headers.get('Retry-After') || '', 10);
    let detail;
    try {
      detail = (await response.json()).error;
    } catch {
      detail = undefined;
    }
    if (!detail || typeof detail.code !== 'string') {
      detail = { code: 'internal_error', message_zh: '服务器返回了无法识别的错误。',
                 message_en: `The server answered ${response.status}.`, action: 'retry_later' };
    }
    throw new PayApiError(response.status, detail, Number.isFinite(retryAfter) ? retryAfter * 1000 : null);
  }

  /**
   * The courses for sale.
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<Course[]>}
   */
  async listCourses({ signal } = {}) {
    return (await this.catalog({ signal })).courses;
  }

  /**
   * The courses for sale and the payment methods the shop takes now (a server from before Alipay: WeChat only).
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<{courses: Course[], paymentMethods: PaymentMethod[]}>}
   */
  async catalog({ signal } = {}) {
    const data = await this.request('GET', '/courses', { signal });
    /** @type {PaymentMethod[]} */
    const methods = Array.isArray(data.payment_methods)
      ? data.payment_methods.filter((/** @type {unknown} */ m) => m === 'wechat' || m === 'alipay') : [];
    return { courses: data.courses, paymentMethods: methods.length ? methods : ['wechat'] };
  }

  /**
   * Place an order; keep `buyer_token` (it ties later orders and the history to this learner) and `order_token`.
   * A discount `code` the creator gave out lowers `amount_fen` (the order says `list_price_fen` and
   * `discount_fen`); a refused one is a PayApiError: code_not_found, code_expired, code_exhausted,
   * code_wrong_course, code_not_started, code_already_used.
   * `method` is 'wechat' (the default) or 'alipay', one of `catalog().paymentMethods`; a method the shop
   * has switched off is PayApiError payment_method_unavailable.
   * @param {{courseId: string, email?: string, buyerToken?: string, code?: string, method?: PaymentMethod}} order
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<PlacedOrder>}
   */
  async createOrder({ courseId, email, buyerToken, code, method }, { signal } = {}) {
    /** @type {Record<string, string>} */
    const body = { course_id: courseId };
    if (method) body.method = method;
    if (email) body.email = email;
    if (code && code.trim()) body.code = code.trim();
    if (buyerToken) body.buyer_token = buyerToken;
    return this.request('POST', '/orders', { body, signal });
  }

  /**
   * One order as it stands.
   * @param {string} orderId
   * @param {string} orderToken
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<Order>}
   */
  async getOrder(orderId, orderToken, { signal } = {}) {
    // A final order's answer changes only with a refund or a revoke: the server tags it, and a client
    // that sends the tag back gets 304 (no body) while it still holds the answer.
    const held = this.finalAnswers.get(orderId);
    const path = `/orders/${encodeURIComponent(orderId)}`;
    const { data, etag } = await this.request('GET', path, { token: orderToken, signal, etag: held ? held.etag : '' });
    if (data === null && held) return held.view;
    this.finalAnswers.delete(orderId);
    if (data && data.final && etag) {
      if (this.finalAnswers.size >= MAX_HELD_ANSWERS) this.finalAnswers.delete(this.finalAnswers.keys().next().value);
      this.finalAnswers.set(orderId, { etag, view: data });
    }
    return data;
  }

  /**
   * Cancel a pending order.
   * @param {string} orderId
   * @param {string} orderToken
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<Order>}
   */
  async cancelOrder(orderId, orderToken, { signal } = {}) {
    return this.request('POST', `/orders/${encodeURIComponent(orderId)}/cancel`, { token: orderToken, signal });
  }

  /**
   * Poll an order until it is final (paid with a license, closed, refunded or flagged); cancel with `signal`.
   *
   * Waits `poll_after_ms` between polls; a busy server, WeChat outage or network failure is waited out
   * (Retry-After, else a growing pause) until `maxWaitMs`, after which it rejects with a TimeoutError.
   * @param {{order_id: string, order_token: string}} order
   * @param {{signal?: AbortSignal, maxWaitMs?: number, onUpdate?: (order: Order) => void}} [options]
   * @returns {Promise<Order>}
   */
  async waitForLicense(order, { signal, maxWaitMs = MAX_WAIT_MS, onUpdate } = {}) {
    const deadline = Date.now() + maxWaitMs;
    let failures = 0;
    for (;;) {
      if (signal && signal.aborted) throw signal.reason;
      let pause;
      try {
        const view = await this.getOrder(order.order_id, order.order_token, { signal });
        failures = 0;
        if (onUpdate) onUpdate(view);
        if (view.final) return view;
        pause = view.poll_after_ms || DEFAULT_POLL_MS;
      } catch (err) {
        if (signal && signal.aborted) throw signal.reason;
        const transient = err instanceof PayApiError ? err.transient : err instanceof TypeError
          || (err instanceof Error && err.name === 'TimeoutError');
        if (!transient) throw err;
        failures += 1;
        pause = (err instanceof PayApiError && err.retryAfterMs) || Math.min(1000 * 2 ** failures, 15000);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new DOMException('no final state before maxWaitMs', 'TimeoutError');
      await sleep(Math.min(pause, left), signal);
    }
  }

  /**
   * What this buyer bought: every order (newest first) and one license per license id.
   * @param {string} buyerToken
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<{orders: HistoryOrder[], licenses: BuyerLicense[]}>}
   */
  async history(buyerToken, { signal } = {}) {
    const [orders, licenses] = await Promise.all([
      this.request('GET', '/me/orders', { token: buyerToken, signal }),
      this.request('GET', '/me/licenses', { token: buyerToken, signal }),
    ]);
    return { orders: orders.orders, licenses: licenses.licenses };
  }

  /**
   * Whether a license is active, expired or revoked.
   * @param {string} licenseId
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<{id: string, state: 'active'|'expired'|'revoked', expires_at: string}>}
   */
  async licenseStatus(licenseId, { signal } = {}) {
    return this.request('GET', `/licenses/${encodeURIComponent(licenseId)}/status`, { signal });
  }

  /**
   * Ask for every license bought with this address by mail; the server answers the same whatever the address.
   * @param {string} email
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<void>}
   */
  async resendLicenses(email, { signal } = {}) {
    await this.request('POST', '/licenses/resend', { body: { email }, signal });
  }

  /**
   * The public keys that verify licenses (and the revocation list), active first.
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<LicenseKey[]>}
   */
  async licenseKeys({ signal } = {}) {
    return (await this.request('GET', '/license-keys', { signal })).keys;
  }

  /**
   * The signed revocation list as served (`DATA|SIG`); check it with `verifyRevocations`.
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<string>}
   */
  async revocations({ signal } = {}) {
    return this.request('GET', '/revocations', { signal, text: true });
  }
}

/** The `typ` of a license; every other signed document names its own and signs a prefixed message. */
const LICENSE = 'license';
const REVOCATIONS = 'revocations';
/** Fields every license signed before documents had a `typ` carries. */
const LEGACY_LICENSE_FIELDS = ['id', 'contentPermissions', 'expiresAt'];
/** A revocation list older than this tells nothing about revocations since: refuse it. */
const REVOCATIONS_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;
/** How far ahead of our clock a list's issuedAt may be. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;

/**
 * What a document of type `typ` is signed over: DATA for a license, `lbpay.<typ>\n` + DATA otherwise.
 * @param {string} typ
 * @param {string} data
 */
function signedMessage(typ, data) {
  return typ === LICENSE ? data : `lbpay.${typ}\n${data}`;
}

/**
 * Split `DATA|SIG`, check SHA256withRSA over the message of `typ`, and check the payload names that type.
 * @param {string} text
 * @param {string} publicKeyPem
 * @param {string} typ
 * @returns {{ok: boolean, payload: Record<string, any>|null, reason: string}}
 */
function verifySigned(text, publicKeyPem, typ) {
  if (typeof text !== 'string') return { ok: false, payload: null, reason: 'not a string' };
  const parts = text.trim().split('|');
  if (parts.length !== 2 || !parts[0] || !parts[1]) return { ok: false, payload: null, reason: 'not DATA|SIG' };
  const [data, signature] = parts;
  let ok = false;
  try {
    ok = crypto.createVerify('SHA256').update(signedMessage(typ, data)).verify(publicKeyPem, signature, 'base64');
  } catch (err) {
    return { ok: false, payload: null, reason: `cannot verify: ${/** @type {Error} */ (err).message}` };
  }
  if (!ok) return { ok: false, payload: null, reason: 'bad signature' };
  let payload;
  try {
    payload = JSON.parse(Buffer.from(data, 'base64').toString('utf8'));
  } catch {
    return { ok: false, payload: null, reason: 'DATA is not JSON' };
  }
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
    return { ok: false, payload: null, reason: 'DATA is not a JSON object' };
  }
  if (payload.typ !== undefined ? payload.typ !== typ
    : typ !== LICENSE || !LEGACY_LICENSE_FIELDS.every((name) => name in payload)) {
    // Only licenses predate `typ`, and they always carried these fields.
    return { ok: false, payload: null, reason: `not a ${typ}` };
  }
  return { ok: true, payload, reason: 'ok' };
}

/**
 * Verify a license offline: signature, `typ`, expiry, and the course and signing key it must name.
 *
 * `valid` is the signature, type and the optional courseId/kid checks; `expired` compares `expiresAt` with
 * `now`. A license without `expiresAt` is not valid (the extension's own check would call it perpetual).
 * Use it when `valid && !expired`.
 * @param {string} key
 * @param {string} publicKeyPem
 * @param {{courseId?: string, kid?: string, now?: Date}} [expect]
 * @returns {LicenseCheck}
 */
function verifyLicense(key, publicKeyPem, { courseId, kid, now = new Date() } = {}) {
  const signed = verifySigned(key, publicKeyPem, LICENSE);
  if (!signed.ok || !signed.payload) return { valid: false, expired: false, payload: null, reason: signed.reason };
  const payload = signed.payload;
  if (typeof payload.expiresAt !== 'string') return { valid: false, expired: false, payload, reason: 'no expiry' };
  const expiresAt = new Date(payload.expiresAt).getTime();
  if (Number.isNaN(expiresAt)) return { valid: false, expired: false, payload, reason: 'expiresAt is not a date' };
  const expired = now.getTime() >= expiresAt;
  if (courseId !== undefined && payload.courseId !== courseId) {
    return { valid: false, expired, payload, reason: `for course ${payload.courseId}, not ${courseId}` };
  }
  if (kid !== undefined && payload.kid !== kid) {
    return { valid: false, expired, payload, reason: `signed by key ${payload.kid}, not ${kid}` };
  }
  return { valid: true, expired, payload, reason: expired ? 'expired' : 'ok' };
}

/** How long a key digest in a revocation list's `revokedKeys` is (hex digits). */
const KEY_DIGEST_HEX = 32;

/**
 * The name a revocation list gives one license key: the first 32 hex digits of SHA-256 over its DATA
 * part (the text before `|`, which its signature covers). A subscription key signed again shorter keeps
 * its license id, so the longer key it replaced is listed by this name instead.
 * @param {string} key
 */
function keyDigest(key) {
  const data = String(key).trim().split('|', 1)[0];
  return crypto.createHash('sha256').update(data, 'utf8').digest('hex').slice(0, KEY_DIGEST_HEX);
}

/**
 * Whether a verified revocation list revokes this license key: its license id, or this very key.
 * @param {RevocationCheck} list
 * @param {string} key
 * @param {string|null|undefined} licenseId
 */
function isRevoked(list, key, licenseId) {
  return (typeof licenseId === 'string' && list.revoked.has(licenseId)) || list.revokedKeys.has(keyDigest(key));
}

/**
 * Check the signed revocation list offline and return the revoked license ids (and single keys).
 *
 * A list whose `issuedAt` is more than `maxAgeMs` (7 days) before `now` is refused: it says nothing
 * about licenses revoked since, and anyone could replay it forever.
 * @param {string} text
 * @param {string} publicKeyPem
 * @param {{kid?: string, now?: Date, maxAgeMs?: number}} [expect]
 * @returns {RevocationCheck}
 */
function verifyRevocations(text, publicKeyPem, { kid, now = new Date(), maxAgeMs = REVOCATIONS_MAX_AGE_MS } = {}) {
  const signed = verifySigned(text, publicKeyPem, REVOCATIONS);
  const empty = { issuedAt: null, kid: null, revoked: new Set(), revokedKeys: new Set() };
  if (!signed.ok || !signed.payload) return { valid: false, reason: signed.reason, ...empty };
  const doc = signed.payload;
  if (doc.v !== 1 || !Array.isArray(doc.revoked) || !doc.revoked.every((id) => typeof id === 'string')) {
    return { valid: false, reason: 'not a version 1 revocation list', ...empty };
  }
  // Absent from lists signed before single keys were listed.
  const revokedKeys = doc.revokedKeys === undefined ? [] : doc.revokedKeys;
  if (!Array.isArray(revokedKeys) || !revokedKeys.every((d) => typeof d === 'string' && /^[0-9a-f]{32}$/.test(d))) {
    return { valid: false, reason: 'revokedKeys is not a list of key digests', ...empty };
  }
  if (kid !== undefined && doc.kid !== kid) {
    return { valid: false, reason: `signed by key ${doc.kid}, not ${kid}`, ...empty };
  }
  const issuedAt = typeof doc.issuedAt === 'string' ? new Date(doc.issuedAt).getTime() : Number.NaN;
  if (Number.isNaN(issuedAt)) return { valid: false, reason: 'issuedAt is not a date', ...empty };
  if (issuedAt > now.getTime() + CLOCK_SKEW_MS) return { valid: false, reason: 'issued in the future', ...empty };
  if (now.getTime() - issuedAt > maxAgeMs) return { valid: false, reason: 'stale', ...empty };
  return { valid: true, reason: 'ok', issuedAt: doc.issuedAt, kid: doc.kid, revoked: new Set(doc.revoked),
    revokedKeys: new Set(revokedKeys) };
}

module.exports = {
  PayClient, PayApiError, verifyLicense, verifyRevocations, keyDigest, isRevoked, signedMessage, sleep, LICENSE,
  REVOCATIONS, REVOCATIONS_MAX_AGE_MS,
};
