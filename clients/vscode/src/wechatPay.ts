// registerWeChatPay: everything the kit brings to a host extension, from one call in its activate():
// the buy and "my purchases" panel, "My courses" tree, the learningbuddy: file system, the activation link
// handler and "Enter license key". Nothing here throws at activation: a missing server address or keyring
// leaves the buy command saying "not configured", and the rest works as far as it can.
import * as crypto from 'crypto';
import * as vscode from 'vscode';
import { PayApiError, PayClient } from './payClient';
import { describeError, ShownError } from './errors';
import { Keyring, LicensePayload, DEFAULT_MAX_REVOCATION_AGE_DAYS, loadKeyring } from './license';
import { Purchases } from './purchases';
import { RevocationStore } from './revocations';
import { CODE_REFUSALS, PageMessage, PanelState, pageHtml } from './webview';
import {
  BUY_COMMAND, CONTENT_SCHEME, COURSES_VIEW, ENTER_KEY_COMMAND, ENTER_KEY_TITLE, OPEN_COURSE_COMMAND, PURCHASES_COMMAND,
  REFRESH_COURSES_COMMAND,
} from './contributes';
import { ACTIVATION_WORDS, ActivationResult, Activator, activationUri } from './activation';
import { LicenseStore } from './licenseStore';
import { ContentFileSystem, contentUri } from './contentFs';
import { CourseNode, CoursesTree } from './coursesTree';
import { contentMessage, ContentAction, ProviderClient } from './provider';

export { BUY_COMMAND, BUY_TITLE, PURCHASES_COMMAND, PURCHASES_TITLE } from './contributes';

export interface WeChatPayOptions {
  /** The Learning Buddy Pay server, https:// in production. Missing or malformed: buying says "not configured". */
  baseUrl?: string;
  /** The course this extension sells. */
  courseId?: string;
  /** Every course this extension sells, when more than one (the tree shows these; keys for others are refused). */
  courseIds?: string[];
  /** The keys that verify licenses; by default licence-keys/keyring.json in the extension's folder (none: not configured). */
  keyring?: Keyring | null;
  /** The extension's own activation: called with the key once it verifies; may throw to refuse it. */
  onLicense?: (key: string, payload: LicensePayload) => void | Promise<void>;
  buyCommand?: string;
  purchasesCommand?: string;
  maxRevocationAgeDays?: number;
  /** Per-request timeout towards the server. */
  timeoutMs?: number;
  /** Register the activation link handler (default true; a host with its own handler passes false and calls handleUri). */
  uriHandler?: boolean;
}

/** What registerWeChatPay hands back: open the panel in code, and the stores it uses. */
export interface WeChatPay extends vscode.Disposable {
  /** Whether buying works: server address, keyring and course all given and readable. */
  readonly configured: boolean;
  /** What is missing when not configured, for the host's log. */
  readonly problems: readonly string[];
  open(view?: 'buy' | 'purchases' | 'restore', courseId?: string): WeChatPayPanel | null;
  readonly client: PayClient | null;
  readonly purchases: Purchases | null;
  readonly revocations: RevocationStore | null;
  readonly licenses: LicenseStore;
  readonly content: ContentFileSystem;
  readonly courses: CoursesTree;
  readonly treeView: vscode.TreeView<CourseNode> | null;
  /** "Enter license key": the text given, or what the learner types in the input box. */
  enterLicenseKey(text?: string): Promise<ActivationResult | null>;
  /** The activation link's work (the registered URI handler calls it). */
  handleUri(uri: vscode.Uri): Promise<ActivationResult>;
  /** Show the course in "My courses" and open its README; resolves to the file opened, if any. */
  openCourse(courseId?: string): Promise<vscode.Uri | null>;
  /** The "Open in VS Code" link for a key, for this extension. */
  activationUri(key: string): string;
}

/** Register everything; all of it is disposed with the extension. Never throws. */
export function registerWeChatPay(context: vscode.ExtensionContext, options: WeChatPayOptions): WeChatPay {
  const problems: string[] = [];
  const attempt = <T>(what: string, make: () => T): T | null => {
    try {
      return make();
    } catch (err) {
      problems.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      return null;
    }
  };
  const courseIds = options.courseIds && options.courseIds.length ? options.courseIds : options.courseId ? [options.courseId] : [];
  const mainCourse = options.courseId ?? courseIds[0] ?? null;
  if (!mainCourse) problems.push('courseId: missing');
  const baseUrl = options.baseUrl ?? '';
  const client = attempt('baseUrl', () => new PayClient({ baseUrl, timeoutMs: options.timeoutMs }));
  const provider = attempt('baseUrl', () => new ProviderClient(baseUrl, options.timeoutMs));
  const keyring = options.keyring !== undefined
    ? (options.keyring ?? (problems.push('keyring: none given'), null))
    : attempt('keyring', () => loadKeyring(context.extensionPath));
  const purchases = client ? new Purchases(context.secrets, client) : null;
  const revocations = client && keyring ? new RevocationStore(context.globalState, client, keyring,
    options.maxRevocationAgeDays ?? DEFAULT_MAX_REVOCATION_AGE_DAYS) : null;
  const licenses = new LicenseStore(context.secrets, keyring);
  const storage = context.globalStorageUri?.fsPath ?? context.extensionPath;
  const disposables: vscode.Disposable[] = [];
  const register = (what: string, make: () => vscode.Disposable): void => {
    const made = attempt(what, make);
    if (made) disposables.push(made);
  };

  const activator = new Activator({ keyring, client, licenses, revocations, courseIds, onLicense: options.onLicense });
  let current: WeChatPayPanel | null = null;
  let disposed = false;
  const configured = Boolean(client && keyring && mainCourse);
  const extensionId = context.extension?.id ?? 'publisher.extension';

  const notConfigured = (): void => {
    const words = contentMessage('not_configured');
    void vscode.window.showErrorMessage(words.text);
  };
  const open = (view: 'buy' | 'purchases' | 'restore' = 'buy', courseId?: string): WeChatPayPanel | null => {
    if (!configured || !client || !purchases) {
      notConfigured();
      return null;
    }
    const course = courseId && courseIds.includes(courseId) ? courseId : mainCourse as string;
    if (current && !current.disposed) {
      current.reveal(view, course);
      return current;
    }
    current = new WeChatPayPanel({ client, purchases, activator, courseIds, courseId: course,
      openCourse: (id) => { void api.openCourse(id); }, enterKey: () => { void api.enterLicenseKey(); } }, view);
    return current;
  };

  // What a refused file offers as the next step.
  const nextStep = async (code: string, courseId: string): Promise<void> => {
    const words = contentMessage(code);
    const buttons: Partial<Record<ContentAction, string>> = {
      buy: '购买 · Buy', enter_key: ENTER_KEY_TITLE, retry: '重试 · Retry', refresh: '刷新 · Refresh',
    };
    const choices = [buttons[words.action], words.action === 'buy' ? ENTER_KEY_TITLE : undefined,
      words.action === 'buy' || words.action === 'enter_key' ? '已购买？Already bought?' : undefined].filter((c): c is string => !!c);
    const picked = await vscode.window.showErrorMessage(words.text, ...choices);
    if (picked === buttons.buy) open('buy', courseId);
    else if (picked === ENTER_KEY_TITLE) await api.enterLicenseKey();
    else if (picked === '已购买？Already bought?') open('restore', courseId);
    else if (picked === buttons.refresh) courses.refresh();
  };
  const content = new ContentFileSystem(storage, provider, licenses, (code, courseId) => {
    if (code !== 'not_found') void nextStep(code, courseId);
  });
  const courses = new CoursesTree(provider, content, licenses, courseIds);
  disposables.push(licenses.onDidChange(() => courses.refresh()));
  register('file system', () => vscode.workspace.registerFileSystemProvider(CONTENT_SCHEME, content,
    { isReadonly: true, isCaseSensitive: true }));
  const treeView = attempt('tree view', () => vscode.window.createTreeView(COURSES_VIEW, { treeDataProvider: courses, showCollapseAll: true }));
  if (treeView) disposables.push(treeView);

  const tell = async (outcome: ActivationResult): Promise<void> => {
    if (outcome.ok) {
      const title = outcome.courseId ? await courseTitle(outcome.courseId) : '';
      const open = '打开课程 · Open course';
      const picked = await vscode.window.showInformationMessage(
        `${title ? `「${title}」` : ''}${outcome.message_zh} · ${outcome.message_en}`, open);
      if (picked === open) await api.openCourse(outcome.courseId ?? undefined);
    } else {
      void vscode.window.showErrorMessage(`${outcome.message_zh} · ${outcome.message_en}`);
    }
  };
  const courseTitle = async (courseId: string): Promise<string> => {
    try {
      return (await courses.catalog()).find((c) => c.id === courseId)?.title ?? courseId;
    } catch {
      return courseId;
    }
  };

  const api: WeChatPay = {
    configured, problems, client, purchases, revocations, licenses, content, courses, treeView: treeView ?? null,
    open,
    async enterLicenseKey(text?: string) {
      const typed = text ?? await vscode.window.showInputBox({
        title: ENTER_KEY_TITLE, ignoreFocusOut: true,
        prompt: '粘贴邮件中的整行许可证密钥 · Paste the whole license key line from your mail',
        placeHolder: 'eyJ…|…',
      });
      if (typed === undefined) return null;  // the learner closed the box
      const outcome = await activator.activate(typed);
      await tell(outcome);
      return outcome;
    },
    async handleUri(uri: vscode.Uri) {
      const outcome = await activator.activateLink(uri);
      await tell(outcome);
      return outcome;
    },
    async openCourse(courseId?: string) {
      const id = courseId ?? mainCourse;
      if (!id) return null;
      if (treeView) {
        try {
          await vscode.commands.executeCommand(`${COURSES_VIEW}.focus`);
          if (!courses.courseNode(id)) await courses.getChildren();
          const node = courses.courseNode(id);
          if (node) await treeView.reveal(node, { expand: true, focus: true, select: true });
        } catch {
          // the view is not in this host's package.json: opening the README below is enough
        }
      }
      let tree;
      try {
        tree = await content.structure(id);
      } catch {
        return null;
      }
      const licensed = (await licenses.get(id)) !== null;
      const readable = [...tree.files, ...tree.exercises.flatMap((f) => f.name === 'free' ? f.files ?? [] : [])]
        .filter((f) => /^readme(\.|$)/i.test(f.name) && (licensed || f.free));
      const first = readable[0];
      if (!first) return null;
      const uri = contentUri(id, first.path);
      await vscode.commands.executeCommand('vscode.open', uri);
      return uri;
    },
    activationUri: (key: string) => activationUri(extensionId, key),
    dispose: () => {
      if (disposed) return;
      disposed = true;
      if (current) current.dispose();
      disposables.forEach((d) => d.dispose());
      content.dispose();
      courses.dispose();
      licenses.dispose();
    },
  };

  register('buy command', () => vscode.commands.registerCommand(options.buyCommand ?? BUY_COMMAND,
    (courseId?: unknown) => { open('buy', typeof courseId === 'string' ? courseId : undefined); }));
  register('purchases command', () => vscode.commands.registerCommand(options.purchasesCommand ?? PURCHASES_COMMAND,
    () => { open('purchases'); }));
  register('enter key command', () => vscode.commands.registerCommand(ENTER_KEY_COMMAND,
    (text?: unknown) => api.enterLicenseKey(typeof text === 'string' ? text : undefined)));
  register('open course command', () => vscode.commands.registerCommand(OPEN_COURSE_COMMAND,
    (arg?: unknown) => api.openCourse(typeof arg === 'string' ? arg : (arg as CourseNode | undefined)?.id)));
  register('refresh command', () => vscode.commands.registerCommand(REFRESH_COURSES_COMMAND, () => courses.refresh()));
  if (options.uriHandler !== false) {
    register('uri handler', () => vscode.window.registerUriHandler({ handleUri: async (uri) => { await api.handleUri(uri); } }));
  }
  context.subscriptions.push(api);
  // Keep the offline revocation list fresh from the start; failures wait for the next day or start.
  if (revocations) void revocations.ensureFresh().catch(() => null);
  return api;
}

/** What one panel needs from the registration. */
interface PanelDeps {
  client: PayClient;
  purchases: Purchases;
  activator: Activator;
  courseIds: readonly string[];
  courseId: string;
  openCourse: (courseId: string) => void;
  enterKey: () => void;
}

type ShownCourse = NonNullable<PanelState['course']>;

/** One purchase panel: draws the state on its webview and drives the order behind it. */
export class WeChatPayPanel {
  readonly panel: vscode.WebviewPanel;
  disposed = false;
  private state: PanelState = { phase: 'loading', course: null, order: null, error: null, license: null, purchases: null,
    restore: null, notice: null };
  private waiting: AbortController | null = null;
  private placed: { order_id: string; order_token: string } | null = null;
  private pageReady = false;
  private catalog: ShownCourse[] | null = null;
  private methods: ('wechat' | 'alipay')[] = ['wechat'];
  /** The method of the last order asked for: "retry" after a failure asks the same way again. */
  private lastMethod: 'wechat' | 'alipay' = 'wechat';
  private courseId: string;

  constructor(private readonly deps: PanelDeps, private view: 'buy' | 'purchases' | 'restore') {
    this.courseId = deps.courseId;
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

  reveal(view: 'buy' | 'purchases' | 'restore', courseId: string = this.courseId): void {
    this.panel.reveal();
    const switched = courseId !== this.courseId && !this.waiting;
    if (switched) this.courseId = courseId;
    if (view === 'purchases') void this.showPurchases();
    else if (view === 'restore') this.show({ phase: 'restore', restore: { sent: false, email: '' }, error: null });
    else if (switched || this.state.phase === 'purchases' || this.state.phase === 'restore') void this.load();
  }

  dispose(): void {
    this.panel.dispose();
  }

  private show(change: Partial<PanelState>): void {
    this.state = { ...this.state, notice: null, ...change };
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
        if (this.view === 'purchases') return this.showPurchases();
        if (this.view === 'restore') return this.show({ phase: 'restore', restore: { sent: false, email: '' } });
        return this.load();
      case 'buy': return this.buy(message.email, message.code, message.method);
      case 'cancel': return this.cancel();
      case 'purchases': return this.showPurchases();
      case 'back': return this.load();
      case 'restore': return this.restore(message.licenseId);
      case 'alreadyBought': return this.show({ phase: 'restore', restore: { sent: false, email: '' }, error: null });
      case 'resend': return this.resend(message.email);
      case 'enterKey': return this.deps.enterKey();
      case 'copy': return this.copy(message.licenseId);
      case 'openCourse': return this.deps.openCourse(message.courseId);
    }
  }

  private async courses(): Promise<ShownCourse[]> {
    if (!this.catalog) {
      const { courses, paymentMethods } = await this.deps.client.catalog();
      this.catalog = courses as ShownCourse[];
      this.methods = paymentMethods;
    }
    return this.catalog;
  }

  private async load(): Promise<void> {
    if (this.waiting) return this.show({ phase: 'waiting' });
    try {
      const course = (await this.courses()).find((c) => c.id === this.courseId);
      if (!course) return this.show({ phase: 'failed', error: describeError('course_not_found') });
      this.show({ phase: 'ready', course, methods: this.methods, error: null, purchases: null, restore: null, entered: null });
    } catch (err) {
      this.fail(err);
    }
  }

  private async buy(email?: string, code?: string, asked?: string): Promise<void> {
    if (this.waiting) return;
    const given = typeof email === 'string' && email.trim() ? email.trim() : undefined;
    const typed = typeof code === 'string' && code.trim() ? code.trim() : undefined;
    // WeChat or Alipay (the server refuses one switched off); none named (the retry button) asks as the last order did.
    const method = asked === 'wechat' || asked === 'alipay' ? asked : this.lastMethod;
    this.lastMethod = method;
    this.show({ phase: 'placing', error: null, order: null, license: null, entered: null });
    let order;
    try {
      order = await this.deps.client.createOrder({ courseId: this.courseId, email: given, code: typed,
        buyerToken: await this.deps.purchases.buyerToken(), method: method === 'wechat' ? undefined : method });
    } catch (err) {
      if (err instanceof PayApiError && err.code === 'buyer_token_invalid') {
        // The server no longer knows this token: buy without it rather than not at all.
        await this.deps.purchases.remember('');
      }
      if (err instanceof PayApiError && CODE_REFUSALS.includes(err.code)) {
        // A code refused: the form again with what was typed and the reason, to correct the code or drop it.
        return this.show({ phase: 'ready', order: null, error: shownError(err),
          entered: { email: given ?? '', code: typed ?? '' } });
      }
      return this.fail(err, null);
    }
    await this.deps.purchases.remember(order.buyer_token);
    this.placed = { order_id: order.order_id, order_token: order.order_token };
    let shown = { order_id: order.order_id, method: order.method ?? method, amount_fen: order.amount_fen, qr_svg: order.qr_svg,
      expires_at: order.expires_at, status: order.status, email_given: given !== undefined,
      email_notice: order.email_notice ?? null, list_price_fen: order.list_price_fen, discount_fen: order.discount_fen };
    this.show({ phase: 'waiting', order: shown });
    const waiting = new AbortController();
    this.waiting = waiting;
    try {
      const done = await this.deps.client.waitForLicense(order, {
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
    const outcome = await this.deps.activator.activate(key);
    if (!outcome.ok || !outcome.courseId) return this.show({ phase: 'failed', order, error: activationError(outcome) });
    const course = (await this.courses().catch(() => [] as ShownCourse[])).find((c) => c.id === outcome.courseId);
    const payload = decodePayload(key);
    this.show({ phase: 'licensed', order, error: null, license: {
      id: outcome.licenseId ?? '', course_id: outcome.courseId, course_title: course?.title ?? outcome.courseId,
      expires_at: String(payload?.expiresAt ?? ''), lifetime: isLifetime(payload?.plan, course) } });
  }

  private async cancel(): Promise<void> {
    const placed = this.placed;
    if (!placed || !this.waiting) return;
    try {
      const view = await this.deps.client.cancelOrder(placed.order_id, placed.order_token);
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
      const [list, courses] = await Promise.all([this.deps.purchases.list(), this.courses().catch(() => [] as ShownCourse[])]);
      this.show({ phase: 'purchases', error: null, purchases: list.map(({ license, ...p }) => {
        const course = courses.find((c) => c.id === p.course_id);
        return { ...p, course_title: course?.title ?? p.course_id, license: license && {
          id: license.id, state: license.state, expires_at: license.expires_at, key: license.key,
          lifetime: isLifetime(license.key ? decodePayload(license.key)?.plan : undefined, course) } };
      }) });
    } catch (err) {
      this.show({ phase: 'purchases', purchases: [], error: shownError(err) });
    }
  }

  private async restore(licenseId: string): Promise<void> {
    try {
      const found = (await this.deps.purchases.list()).find((p) => p.license?.id === licenseId);
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

  /** "Already bought?": the server mails every license bought with this address (it answers the same for any address). */
  private async resend(email: string): Promise<void> {
    const address = typeof email === 'string' ? email.trim() : '';
    if (!address) return this.show({ phase: 'restore', restore: { sent: false, email: '' }, error: describeError('bad_request') });
    try {
      await this.deps.client.resendLicenses(address);
      this.show({ phase: 'restore', restore: { sent: true, email: address }, error: null });
    } catch (err) {
      this.show({ phase: 'restore', restore: { sent: false, email: address }, error: shownError(err) });
    }
  }

  private async copy(licenseId: string): Promise<void> {
    const key = (this.state.purchases ?? []).find((p) => p.license?.id === licenseId)?.license?.key;
    if (!key) return;
    await vscode.env.clipboard.writeText(key);
    this.show({ notice: { zh: '许可证密钥已复制。', en: 'The license key is copied.' } });
  }
}

/** What a license's DATA says, unchecked: only for showing (the plan), never for granting anything. */
function decodePayload(key: string): LicensePayload | null {
  try {
    const payload = JSON.parse(Buffer.from(key.trim().split('|')[0], 'base64').toString('utf8')) as unknown;
    return payload && typeof payload === 'object' ? payload as LicensePayload : null;
  } catch {
    return null;
  }
}

/** A one-time course's license never ends for the learner: say "Lifetime", never the century-ahead date. */
function isLifetime(plan: unknown, course: { plan: string } | undefined): boolean {
  return (plan ?? course?.plan) === 'one_time';
}

/** The panel's words for a key that did not activate. */
function activationError(outcome: ActivationResult): ShownError {
  if (outcome.code === 'revoked') return describeError('license_revoked');
  if (outcome.code === 'invalid') return describeError('license_invalid');
  const action = outcome.code === 'expired' ? 'new_order' : outcome.code === 'refused' ? 'retry'
    : outcome.code === 'wrong_course' ? 'none' : 'contact_support';
  const words = ACTIVATION_WORDS[outcome.code];
  return { code: `license_${outcome.code}`, message_zh: words.zh, message_en: words.en, action };
}

/** The words for whatever went wrong: the server's catalogued error, or the network. */
function shownError(err: unknown): ShownError {
  if (err instanceof PayApiError) return describeError(err.code, { message_zh: err.messageZh, message_en: err.messageEn, action: err.action });
  return describeError('network_unreachable');
}
