// The signed revocation list, fetched at most daily and kept in the extension's storage for offline use.
import type * as vscode from 'vscode';
import { PayClient } from './payClient';
import { DEFAULT_MAX_REVOCATION_AGE_DAYS, Keyring, RevocationList, verifyRevocations } from './license';

export const REVOCATIONS_STATE = 'lbpay.revocations';
const DAY_MS = 24 * 60 * 60 * 1000;

/** The latest good revocation list this machine has seen, refreshed once a day while online. */
export class RevocationStore {
  constructor(
    private readonly state: vscode.Memento,
    private readonly client: PayClient,
    private readonly keyring: Keyring,
    private readonly maxAgeDays: number = DEFAULT_MAX_REVOCATION_AGE_DAYS,
  ) {}

  /** The stored list, checked again now (a stored list ages; one older than the limit is no list). */
  current(now: Date = new Date()): RevocationList | null {
    const text = this.state.get<string>(REVOCATIONS_STATE);
    if (!text) return null;
    const checked = verifyRevocations(text, this.keyring, { now, maxAgeDays: this.maxAgeDays });
    return checked.ok ? checked.list : null;
  }

  /** Fetch the list now; keep it when it verifies and is newer than the one stored. Throws why not. */
  async refresh(now: Date = new Date()): Promise<RevocationList> {
    const text = await this.client.revocations();
    const checked = verifyRevocations(text, this.keyring, { now, maxAgeDays: this.maxAgeDays });
    if (!checked.ok) throw new Error(`revocation list refused: ${checked.reason}`);
    const held = this.current(now);
    if (held && held.issuedAt > checked.list.issuedAt) return held;  // never step back to an older list
    await this.state.update(REVOCATIONS_STATE, checked.list.text);
    return checked.list;
  }

  /** The list to verify with: refreshed when a day old and the server answers, else what is stored. */
  async ensureFresh(now: Date = new Date()): Promise<RevocationList | null> {
    const held = this.current(now);
    if (held && now.getTime() - held.issuedAt.getTime() < DAY_MS) return held;
    try {
      return await this.refresh(now);
    } catch {
      return held;  // offline: the stored list serves until it is too old
    }
  }
}
