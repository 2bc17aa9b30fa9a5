// The licenses this machine holds, one per course, in VS Code's secret storage: what opens paid files.
import * as vscode from 'vscode';
import { checkLicense, Keyring, LicensePayload } from './license';

export const LICENSES_SECRET = 'lbpay.licenses';

/** A stored license: the key as issued (trimmed) and what it says of itself. */
export interface HeldLicense {
  courseId: string;
  key: string;
  payload: LicensePayload;
}

/** Keeps one verified key per course; a key that no longer verifies here (expired, other keyring) is not handed out. */
export class LicenseStore {
  private readonly changed = new vscode.EventEmitter<string>();
  /** Fires with the course id whenever its license is stored or forgotten. */
  readonly onDidChange = this.changed.event;

  constructor(private readonly secrets: vscode.SecretStorage, private readonly keyring: Keyring | null) {}

  private async all(): Promise<Record<string, string>> {
    const text = await this.secrets.get(LICENSES_SECRET);
    if (!text) return {};
    try {
      const parsed = JSON.parse(text) as unknown;
      return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed as Record<string, string> : {};
    } catch {
      return {};
    }
  }

  /** The license for a course, if one is stored and still verifies offline (signature, course, expiry). */
  async get(courseId: string, now: Date = new Date()): Promise<HeldLicense | null> {
    const key = (await this.all())[courseId];
    if (!key || !this.keyring) return null;
    const check = checkLicense(key, this.keyring, { courseId, now });
    return check.ok && check.payload ? { courseId, key, payload: check.payload } : null;
  }

  /** Every course with a license that verifies now. */
  async list(now: Date = new Date()): Promise<HeldLicense[]> {
    const held = await Promise.all(Object.keys(await this.all()).map((id) => this.get(id, now)));
    return held.filter((h): h is HeldLicense => h !== null);
  }

  /** Store a key the caller has verified for `courseId` (it replaces the course's previous one). */
  async store(courseId: string, key: string): Promise<void> {
    const all = await this.all();
    all[courseId] = key;
    await this.secrets.store(LICENSES_SECRET, JSON.stringify(all));
    this.changed.fire(courseId);
  }

  /** Forget a course's license (the server refused it: revoked, refunded, expired). */
  async forget(courseId: string): Promise<void> {
    const all = await this.all();
    if (!(courseId in all)) return;
    delete all[courseId];
    await this.secrets.store(LICENSES_SECRET, JSON.stringify(all));
    this.changed.fire(courseId);
  }

  dispose(): void {
    this.changed.dispose();
  }
}
