// Taking a license key in: pasted ("Enter license key"), or from the mail's "Open in VS Code" link.
import * as vscode from 'vscode';
import { PayApiError, PayClient } from './payClient';
import { ACTIVATE_PATH } from './contributes';
import { checkLicense, isRevoked, Keyring, LicensePayload } from './license';
import { LicenseStore } from './licenseStore';
import { RevocationStore } from './revocations';

/** How taking a key in ended; `ok` only for 'activated'. */
export type ActivationCode = 'activated' | 'empty' | 'not_configured' | 'invalid' | 'wrong_course' | 'expired'
  | 'revoked' | 'license_not_found' | 'refused' | 'bad_link';

export interface ActivationResult {
  ok: boolean;
  code: ActivationCode;
  courseId: string | null;
  licenseId: string | null;
  message_zh: string;
  message_en: string;
}

/** What the learner reads for each outcome, with the next step in it. */
export const ACTIVATION_WORDS: Readonly<Record<ActivationCode, { zh: string; en: string }>> = {
  activated: { zh: '许可证已激活，课程已解锁。', en: 'The license is active; the course is unlocked.' },
  empty: { zh: '没有输入许可证密钥。请粘贴邮件中的整行密钥。', en: 'No license key was entered. Paste the whole key line from your mail.' },
  not_configured: { zh: '此扩展尚未配置许可证公钥，无法验证密钥。请联系课程作者。',
    en: 'This extension has no license keys configured, so it cannot verify the key. Contact the course author.' },
  invalid: { zh: '这不是一个有效的许可证密钥（签名不符或不完整）。请从邮件中复制整行密钥再试。',
    en: 'This is not a valid license key (bad signature or incomplete). Copy the whole key line from your mail and try again.' },
  wrong_course: { zh: '这个许可证属于另一门课程，不能用于本扩展的课程。请输入本课程的许可证，或购买本课程。',
    en: 'This license is for another course, not one this extension offers. Enter the license for this course, or buy it.' },
  expired: { zh: '这个许可证已过期。请续费或重新购买。', en: 'This license has expired. Renew or buy the course again.' },
  revoked: { zh: '这个许可证已被撤销（例如已退款），无法激活。如有疑问请联系客服并提供订单号。',
    en: 'This license has been revoked (for example, refunded) and cannot be activated. Contact support with your order id if this is unexpected.' },
  license_not_found: { zh: '课程服务器不认识这个许可证。请从邮件中复制整行密钥再试，或联系客服。',
    en: 'The course server does not know this license. Copy the whole key line from your mail and try again, or contact support.' },
  refused: { zh: '扩展未能保存这个许可证。请重试；若持续出现请联系课程作者。',
    en: 'The extension could not save this license. Try again, and contact the course author if it lasts.' },
  bad_link: { zh: '这个链接不是许可证激活链接。请使用邮件中的「在 VS Code 中打开」链接，或运行「输入许可证密钥」。',
    en: 'This link is not a license activation link. Use the "Open in VS Code" link from your mail, or run "Enter license key".' },
};

function result(code: ActivationCode, payload: LicensePayload | null = null): ActivationResult {
  const words = ACTIVATION_WORDS[code];
  return { ok: code === 'activated', code, courseId: typeof payload?.courseId === 'string' ? payload.courseId : null,
    licenseId: payload?.id ?? null, message_zh: words.zh, message_en: words.en };
}

/** A pasted key as issued: whitespace anywhere (spaces, tabs, line breaks from a mail) is not part of it. */
export function cleanKey(text: string): string {
  return String(text ?? '').replace(/\s+/g, '');
}

/**
 * The key an activation link carries: `vscode://<publisher>.<name>/activate?key=<url-encoded key>`.
 *
 * VS Code hands the handler a query already percent-decoded once; a link encoded twice is decoded again.
 * A `+` of the key that a form decoder turned into a space is put back (a key has no spaces).
 */
export function keyFromUri(uri: vscode.Uri): string | null {
  if (uri.path !== ACTIVATE_PATH) return null;
  const field = uri.query.split('&').find((part) => part.startsWith('key='));
  if (field === undefined) return null;
  let value = field.slice('key='.length);
  if (/%[0-9A-Fa-f]{2}/.test(value)) {
    try {
      value = decodeURIComponent(value);
    } catch {
      return null;
    }
  }
  return cleanKey(value.replace(/ /g, '+'));
}

/** The link a mail or page gives for a key; `extensionId` is "<publisher>.<name>". */
export function activationUri(extensionId: string, key: string, scheme = 'vscode'): string {
  return `${scheme}://${extensionId}${ACTIVATE_PATH}?key=${encodeURIComponent(cleanKey(key))}`;
}

export interface ActivatorOptions {
  keyring: Keyring | null;
  client: PayClient | null;
  licenses: LicenseStore;
  revocations: RevocationStore | null;
  /** The courses this extension sells: a key for any other course is refused. */
  courseIds: readonly string[];
  /** The host's own activation; may throw to refuse the key. */
  onLicense?: (key: string, payload: LicensePayload) => void | Promise<void>;
}

/** Verifies a key (offline by kid, then with the server when it answers) and stores it for its course. */
export class Activator {
  constructor(private readonly options: ActivatorOptions) {}

  async activate(text: string, now: Date = new Date()): Promise<ActivationResult> {
    const key = cleanKey(text);
    if (!key) return result('empty');
    const { keyring, client, licenses, revocations, courseIds, onLicense } = this.options;
    if (!keyring) return result('not_configured');
    const check = checkLicense(key, keyring, { now });
    const payload = check.payload;
    if (check.status === 'invalid' || !payload) return result('invalid');
    if (typeof payload.courseId !== 'string' || !courseIds.includes(payload.courseId)) return result('wrong_course', payload);
    if (check.status === 'expired') return result('expired', payload);
    // The server knows revocations and refunds this very minute; offline, the signed list it last sent.
    let state: string | null = null;
    if (client) {
      try {
        state = (await client.licenseStatus(payload.id)).state;
      } catch (err) {
        if (err instanceof PayApiError && err.code === 'license_not_found') return result('license_not_found', payload);
      }
    }
    const list = revocations?.current(now);
    if (state === null && list?.revoked.has(payload.id)) state = 'revoked';
    // A key replaced by a shorter one shares its id with an active license: only the list names it.
    if (list && isRevoked(list, key, payload.id)) state = 'revoked';
    if (state === 'revoked') return result('revoked', payload);
    if (state === 'expired') return result('expired', payload);
    try {
      if (onLicense) await onLicense(key, payload);
      await licenses.store(payload.courseId, key);
    } catch {
      return result('refused', payload);
    }
    return result('activated', payload);
  }

  /** The URI handler's work: take the key from the link and activate it. */
  async activateLink(uri: vscode.Uri): Promise<ActivationResult> {
    const key = keyFromUri(uri);
    return key === null ? result('bad_link') : this.activate(key);
  }
}
