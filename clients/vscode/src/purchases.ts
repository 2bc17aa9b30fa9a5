// The learner's identity on this machine (the buyer token, in VS Code's secret storage) and what it bought.
import type * as vscode from 'vscode';
import { PayClient, PayApiError } from './payClient';

export const BUYER_TOKEN_SECRET = 'lbpay.buyerToken';

/** One purchase as "my purchases" lists it. */
export interface Purchase {
  order_id: string;
  course_id: string;
  amount_fen: number;
  status: string;
  created_at: string;
  license: { id: string; state: string; expires_at: string; key: string | null } | null;
}

/** Keeps the buyer token secret and answers "what did I buy?" from the server. */
export class Purchases {
  constructor(private readonly secrets: vscode.SecretStorage, private readonly client: PayClient) {}

  /** The buyer token this machine holds, if it has bought anything (or restored a token). */
  async buyerToken(): Promise<string | undefined> {
    return (await this.secrets.get(BUYER_TOKEN_SECRET)) || undefined;
  }

  /** Remember the token an order answered with; it ties later orders and the history to this learner. */
  async remember(buyerToken: string): Promise<void> {
    if (buyerToken && buyerToken !== (await this.buyerToken())) await this.secrets.store(BUYER_TOKEN_SECRET, buyerToken);
  }

  /** Every purchase, newest first, each with its license and key when it has one; none without a token. */
  async list(): Promise<Purchase[]> {
    const token = await this.buyerToken();
    if (!token) return [];
    let history;
    try {
      history = await this.client.history(token);
    } catch (err) {
      // A token the server no longer knows is as good as none: forget it rather than fail forever.
      if (err instanceof PayApiError && err.status === 401) {
        await this.secrets.delete(BUYER_TOKEN_SECRET);
        return [];
      }
      throw err;
    }
    const keys = new Map(history.licenses.map((l) => [l.id, l.key]));
    return history.orders.map((o) => ({
      order_id: o.order_id, course_id: o.course_id, amount_fen: o.amount_fen, status: o.status, created_at: o.created_at,
      license: o.license ? { id: o.license.id, state: o.license.state, expires_at: o.license.expires_at,
        key: keys.get(o.license.id) ?? null } : null,
    }));
  }
}
