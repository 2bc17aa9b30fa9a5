// registerWeChatPay: the "Buy with WeChat Pay" command, its panel, and "my purchases".
import * as crypto from 'crypto';
import * as vscode from 'vscode';
import { PayApiError, PayClient } from './payClient';
import { describeError, ShownError } from './errors';
import { checkLicense, Keyring, LicensePayload, DEFAULT_MAX_REVOCATION_AGE_DAYS } from './license';
import { Purchases } from './purchases';
import { RevocationStore } from './revocations';
import { PageMessage, PanelState, pageHtml } from './webview';

export const BUY_COMMAND = 'lbpay.buyWithWeChatPay';
export const BUY_TITLE = 'Buy with WeChat Pay · 微信支付购买';
export const PURCHASES_COMMAND = 'lbpay.myPurchases';
export const PURCHASES_TITLE = 'My purchases · 我的购买';

export interface WeChatPayOptions {
  /** The Learning Buddy Pay server, https:// in production. */
  baseUrl: string;
  /** The course this extension sells. */
  courseId: string;
  /** The keys the extension ships (loadKeyring(context.extensionPath)). */
  keyring: Keyring;
  /** The extension's own activation: called with the key once it verifies; may throw to refuse it. */
  onLicense: (key: string, payload: LicensePayload) => void | Promise<void>;
  buyCommand?: string;
  purchasesCommand?: string;
  maxRevocationAgeDays?: number;
  /** Per-request timeout towards the server. */
  timeoutMs?: number;
}

/** What registerWeChatPay hands back: open the panel in code, and the stores it uses. */
export interface WeChatPay extends vscode.Disposable {
  open(view?: 'buy' | 'purchases'): WeChatPayPanel;
  readonly client: PayClient;
  readonly purchases: Purchases;
  readonly revocations: RevocationStore;
}

/** Register the buy and "my purchases" commands; everything registered is disposed with the extension. */
export function registerWeChatPay(context: vscode.ExtensionContext, options: WeChatPayOptions): WeChatPay {
  const client = new PayClient({ baseUrl: options.baseUrl, timeoutMs: options.timeoutMs });
  const purchases = new Purchases(context.secrets, client);
  const revocations = new RevocationStore(context.globalState, client, options.keyring,
    options.maxRevocationAgeDays ?? DEFAULT_MAX_REVOCATION_AGE_DAYS);
  let current: WeChatPayPanel | null = null;
  const open = (view: 'buy' | 'purchases' = 'buy'): WeChatPayPanel => {
    if (current && !current.disposed) {
      current.reveal(view);
      return current;
    }
    current = new WeChatPayPanel(options, client, purchases, view);
    return current;
  };
  const registrations = [
    vscode.commands.registerCommand(options.buyCommand ?? BUY_COMMAND, () => { open('buy'); }),
    vscode.commands.registerCommand(options.purchasesCommand ?? PURCHASES_COMMAND, () => { open('purchases'); }),
  ];
  const api: WeChatPay = {
    open, client, purchases, revocations,
    dispose: () => {
      if (current) current.dispose();
      registrations.forEach((r) => r.dispose());
    },
  };
  context.subscriptions.push(api);
  // Keep the offline revocation list fresh from the start; failures wait for the next day or start.
  void revocations.ensureFresh();
  return api;
}

/** One purchase panel: draws the state on its webview and drives the order behind it. */
export class WeChatPayPanel {
  readonly panel: vscode.WebviewPanel;
  disposed = false;
  private state: PanelState = { phase: 'loading', course: null, order: null, error: null, license: null, purchases: null };
  private waiting: AbortController | null = null;
  private placed: { order_id: string; order_token: string } | null = null;
  private pageReady = false;

  constructor(
    private readonly options: WeChatPayOptions,
    private readonly client: PayClient,
    private readonly purchases: Purchases,
    private view: 'buy' | 'purchases',
  ) {
    this.panel = vscode.window.createWebviewPanel('lbpay.wechatPay', '微信支付购买 · WeChat Pay', vscode.ViewColumn.One,
      { enableScripts: true, retainContextWhenHidden: true, localResourceRoots: [] });
    this.panel.webview.html = pageHtml({ nonce: crypto.randomBytes(16).toString('base64'), cspSource: this.panel.webview.cspSource });
    this.panel.webview.onDidReceiveMessage((message: PageMessage) => { void this.handle(message); });
    this.panel.onDidDispose(() => {
      this.disposed = true;
      this.waiting?.abort(new Error('panel closed'));
    });
  }

  /** The state last drawn (tests and hosts may read it). */
  get current(): PanelState {
    return this.state;
  }

  reveal(view: 'buy' | 'purchases'): void {
    this.panel.reveal();
    if (view === 'purchases') void this.showPurchases(); else if (this.state.phase === 'purchases') void this.load();
  }

  dispose(): void {
    this.panel.dispose();
  }

  private show(change: Partial<PanelState>): void {
    this.state = { ...this.state, ...change };
    if (this.pageReady && !this.disposed) void this.panel.webview.postMessage(this.state);
  }

  private fail(err: unknown, order: PanelState['order'] = this.state.order): void {
    this.show({ phase: 'failed', error: shownError(err), order });
  }

  /** Answer one click of the page. */
  async handle(message: PageMessage): Promise<void> {
    switch (message.type) {
      case 'ready':
        this.pageReady = true;
        return this.view === 'purchases' ? this.showPurchases() : this.load();
      case 'buy': return this.buy();
      case 'cancel': return this.cancel();
      case 'purchases': return this.showPurchases();
      case 'back': return this.load();
      case 'restore': return this.restore(message.licenseId);
    }
  }

  private async load(): Promise<void> {
    if (this.waiting) return this.show({ phase: 'waiting' });
    try {
      const courses = await this.client.listCourses();
      const course = courses.find((c) => c.id === this.options.courseId);
      if (!course) return this.show({ phase: 'failed', error: describeError('course_not_found') });
      this.show({ phase: 'ready', course, error: null, purchases: null });
    } catch (err) {
      this.fail(err);
    }
  }

  private async buy(): Promise<void> {
    if (this.waiting) return;
    this.show({ phase: 'placing', error: null, order: null, license: null });
    let order;
    try {
      order = await this.client.createOrder({ courseId: this.options.courseId, buyerToken: await this.purchases.buyerToken() });
    } catch (err) {
      if (err instanceof PayApiError && err.code === 'buyer_token_invalid') {
        // The server no longer knows this token: buy without it rather than not at all.
        await this.purchases.remember('');
      }
      return this.fail(err, null);
    }
    await this.purchases.remember(order.buyer_token);
    this.placed = { order_id: order.order_id, order_token: order.order_token };
    let shown = { order_id: order.order_id, amount_fen: order.amount_fen, qr_svg: order.qr_svg,
      expires_at: order.expires_at, status: order.status };
    this.show({ phase: 'waiting', order: shown });
    const waiting = new AbortController();
    this.waiting = waiting;
    try {
      const done = await this.client.waitForLicense(order, {
        signal: waiting.signal,
        onUpdate: (view) => {
          if (view.final) return;
          // The server replaces the code_url before WeChat's 2 hours run out: show the QR it holds now.
          shown = { ...shown, status: view.status, qr_svg: view.qr_svg ?? shown.qr_svg };
          this.show({ order: shown, error: view.error ? describeError(view.error.code, view.error) : null });
        },
      });
      this.waiting = null;
      await this.finish(done, shown);
    } catch (err) {
      this.waiting = null;
      if (!waiting.signal.aborted) this.fail(err, shown);
    }
  }

  private async finish(done: { status: string; license: { key: string; state: string } | null; error: ShownError | null },
    shown: NonNullable<PanelState['order']>): Promise<void> {
    const order = { ...shown, status: done.status };
    if (!done.license || done.status !== 'fulfilled') {
      return this.show({ phase: 'failed', order, error: describeError(done.error?.code ?? 'order_closed', done.error) });
    }
    await this.activate(done.license.key, done.license.state, order);
  }

  /** Hand a key the server just called `state` to the host, once it verifies here too. */
  private async activate(key: string, state: string, order: PanelState['order']): Promise<void> {
    if (state !== 'active') {
      return this.show({ phase: 'failed', order, error: describeError(state === 'revoked' ? 'license_revoked' : 'refunded') });
    }
    const check = checkLicense(key, this.options.keyring, { courseId: this.options.courseId });
    if (!check.ok || !check.payload) return this.show({ phase: 'failed', order, error: describeError('license_invalid') });
    try {
      await this.options.onLicense(key.trim(), check.payload);
    } catch {
      return this.show({ phase: 'failed', order, error: describeError('license_invalid') });
    }
    this.show({ phase: 'licensed', order, error: null, license: { id: check.payload.id, expires_at: check.payload.expiresAt } });
  }

  private async cancel(): Promise<void> {
    const placed = this.placed;
    if (!placed || !this.waiting) return;
    try {
      const view = await this.client.cancelOrder(placed.order_id, placed.order_token);
      this.waiting.abort(new Error('cancelled'));
      this.waiting = null;
      const order = this.state.order && { ...this.state.order, status: view.status };
      this.show({ phase: 'failed', order, error: describeError(view.error?.code ?? 'payment_cancelled', view.error) });
    } catch (err) {
      // Already paid: the wait goes on and the license arrives; say so without stopping it.
      this.show({ error: shownError(err) });
    }
  }

  private async showPurchases(): Promise<void> {
    try {
      const list = await this.purchases.list();
      this.show({ phase: 'purchases', purchases: list.map(({ license, ...p }) => ({
        ...p, license: license && { id: license.id, state: license.state, expires_at: license.expires_at } })), error: null });
    } catch (err) {
      this.show({ phase: 'purchases', purchases: [], error: shownError(err) });
    }
  }

  private async restore(licenseId: string): Promise<void> {
    try {
      const found = (await this.purchases.list()).find((p) => p.license?.id === licenseId);
      if (!found || !found.license || !found.license.key) {
        return this.show({ phase: 'failed', error: describeError('license_not_found') });
      }
      const course = this.state.course;
      await this.activate(found.license.key, found.license.state, null);
      if (course) this.show({ course });
    } catch (err) {
      this.fail(err, null);
    }
  }
}


/** The words for whatever went wrong: the server's catalogued error, or the network. */
function shownError(err: unknown): ShownError {
  if (err instanceof PayApiError) return describeError(err.code, { message_zh: err.messageZh, message_en: err.messageEn, action: err.action });
  return describeError('network_unreachable');
}
