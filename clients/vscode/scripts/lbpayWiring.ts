// src/lbpayWiring.ts
// Learning Buddy Pay in this extension: written by the kit's apply.sh, which rewrites it on every run and
// keeps only the two constants below (or takes them from --server and --course). Edit nothing else here.
import * as fs from 'fs';
import * as path from 'path';
import * as vscode from 'vscode';
import type { Keyring, LicenseCheck, LicensePayload, WeChatPay } from './lbpay';

/** The Learning Buddy Pay server (https://, no trailing slash); the .invalid default reaches nothing. */
export const LBPAY_SERVER = 'https://your-lbpay-server.invalid';
/** The course this extension sells. */
export const COURSE_ID = 'cpp-primer-5th';
/** What CourseContentProviderClient asks for catalog, structure, licenses and files. */
export const PROVIDER_URL = `${LBPAY_SERVER}/provider`;

/** What the kit needs of the extension's license store (its CourseContentProtectionManager). */
export interface LicenseHost {
  addLicense(key: string, courseId?: string): Promise<boolean>;
  getValidLicenses?(): { key: string }[];
  recheckStoredLicenses?(): Promise<string[]>;
}

type Kit = typeof import('./lbpay');
let kit: Kit | null = null;
let keyring: Keyring | null = null;
let pay: WeChatPay | null = null;

/** The kit's commands that must answer even when nothing else of it can start. */
const KIT_COMMANDS = ['lbpay.buyWithWeChatPay', 'lbpay.myPurchases', 'lbpay.enterLicenseKey', 'lbpay.openCourse',
  'lbpay.refreshCourses'];
const NOT_CONFIGURED = '微信支付尚未配置（缺少服务器地址或许可证公钥），暂时无法购买或激活。请联系课程作者。'
  + ' · WeChat Pay is not configured yet (no server address or license keys), so buying and activating are off.'
  + ' Contact the course author.';

/**
 * The one call in activate(): the buy and "my purchases" panel, "My courses", the learningbuddy: files, the
 * mail's activation link and "Enter license key". Never throws: without a keyring or a server address the
 * kit's commands say "not configured" and the rest of the extension works as before.
 */
export function wireLearningBuddyPay(context: vscode.ExtensionContext, host: LicenseHost): WeChatPay | null {
  const notConfigured = (why: string): null => {
    console.warn(`Learning Buddy Pay is not configured (${why}): run the kit's apply.sh with --server and the exported keys`);
    for (const command of KIT_COMMANDS) {
      context.subscriptions.push(vscode.commands.registerCommand(command, () => {
        void vscode.window.showErrorMessage(NOT_CONFIGURED);
      }));
    }
    return null;
  };
  // The kit is loaded here, not imported above, so that nothing of it can stop the extension's own start; and
  // not at all while the build has no server or keys (the extension's own tests activate it that way).
  if (LBPAY_SERVER.endsWith('.invalid')) return notConfigured('no server address');
  const keyFile = path.join(context.extensionPath, 'licence-keys', 'keyring.json');
  if (!fs.existsSync(keyFile)) return notConfigured(`no ${keyFile}`);
  try {
    kit = require('./lbpay') as Kit;
    keyring = kit.loadKeyring(keyFile);
  } catch (err) {
    kit = null;
    return notConfigured(err instanceof Error ? err.message : String(err));
  }
  pay = kit.registerWeChatPay(context, {
    baseUrl: LBPAY_SERVER,
    courseId: COURSE_ID,
    keyring,
    onLicense: async (key: string, payload: LicensePayload) => {
      if (!(await host.addLicense(key, payload.courseId))) throw new Error('the extension refused the license');
    },
  });
  if (!pay.configured) console.warn('Learning Buddy Pay is not configured:', pay.problems.join('; '));
  // At every start: drop the stored licenses that no longer verify, hand the others to the kit's files.
  void (async () => {
    const dropped = host.recheckStoredLicenses ? await host.recheckStoredLicenses() : [];
    if (dropped.length) console.log('Learning Buddy Pay dropped stored licenses:', dropped);
    for (const license of host.getValidLicenses ? host.getValidLicenses() : []) await shareWithKit(license.key);
  })().catch((err: unknown) => console.error('Learning Buddy Pay could not re-check stored licenses:', err));
  return pay;
}

/** Give the kit's file system a key the extension took in itself (its own paste box): the course's files open. */
export async function shareWithKit(key: string): Promise<void> {
  if (!kit || !keyring || !pay) return;
  const payload = kit.checkLicense(key.trim(), keyring).payload;
  if (!payload || typeof payload.courseId !== 'string' || !kit.checkLicense(key.trim(), keyring, { courseId: payload.courseId }).ok) return;
  const held = await pay.licenses.get(payload.courseId);
  if (!held || held.key !== key.trim()) await pay.licenses.store(payload.courseId, key.trim());
}

/**
 * The offline check of a key (the key chosen by kid, typ "license", course, expiry and the signed revocation
 * list), for when the server cannot be reached and for stored licenses; null when the kit cannot tell
 * (not wired or no keyring shipped), so that nothing is dropped or unlocked on that account.
 */
export async function checkLicenseOffline(key: string, courseId?: string): Promise<LicenseCheck | null> {
  if (!kit || !keyring) return null;
  const revocations = pay && pay.revocations ? await pay.revocations.ensureFresh() : null;
  return kit.verifyLicense(key.trim(), keyring, { courseId, revocations });
}

/** What a license says of itself and the server said of it: course, plan, signing key, kind and order. */
export function licenseFacts(key: string, answer: Record<string, unknown> = {}): {
  courseId?: string; plan?: string; kid?: string; typ?: string; orderId?: string;
} {
  const signed = kit && keyring ? kit.checkLicense(key.trim(), keyring).payload : null;
  const text = (value: unknown): string | undefined => (typeof value === 'string' && value ? value : undefined);
  return {
    courseId: text(answer.course_id) ?? text(answer.courseId) ?? text(signed?.courseId),
    plan: text(answer.plan) ?? text(signed?.plan),
    kid: text(signed?.kid),
    typ: text(signed?.typ),
    orderId: text(signed?.orderId),
  };
}
