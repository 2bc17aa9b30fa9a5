// The purchase panel's page: it only draws the state the extension posts and posts back what was clicked.
// Every colour comes from the VS Code theme (--vscode-* variables), so text reads in light, dark and high
// contrast themes alike; the fallbacks are Light+'s values.
import { ACTION_TEXT, ErrorAction, ShownError } from './errors';

/** Everything the page draws; the extension posts a fresh one on every change. */
export interface PanelState {
  phase: 'loading' | 'ready' | 'placing' | 'waiting' | 'licensed' | 'failed' | 'purchases' | 'restore';
  course: { id: string; title: string; price_fen: number; plan: string; period_days: number | null } | null;
  /** The payment methods the shop takes now, in the order the buttons show them (absent: WeChat Pay only). */
  methods?: ('wechat' | 'alipay')[];
  order: { order_id: string; amount_fen: number; qr_svg: string; expires_at: string; status: string;
    /** Which method's QR this is (absent: WeChat Pay). */
    method?: 'wechat' | 'alipay';
    /** The price before a discount code or launch price, and what it took off (absent: no discount). */
    list_price_fen?: number; discount_fen?: number;
    /** An e-mail was given: the server's words (or, from an older server, the kit's) about a license already owned. */
    email_given?: boolean; email_notice?: { zh: string; en: string } | null } | null;
  error: ShownError | null;
  license: { id: string; course_id: string; course_title: string; expires_at: string; lifetime: boolean } | null;
  purchases: {
    order_id: string; course_id: string; course_title: string; amount_fen: number; status: string; created_at: string;
    license: { id: string; state: string; expires_at: string; key: string | null; lifetime: boolean } | null;
  }[] | null;
  /** "Already bought?": the e-mail asked for and whether the request went out. */
  restore: { sent: boolean; email: string } | null;
  /** A short confirmation (e.g. "copied"). */
  notice: { zh: string; en: string } | null;
  /** What the learner typed in the buy form, shown again with a refusal so a code can be corrected. */
  entered?: { email: string; code: string } | null;
}

/** The server's refusals of a discount code: said in the buy form, beside the code field. */
export const CODE_REFUSALS: readonly string[] = ['code_not_found', 'code_not_started', 'code_expired', 'code_exhausted',
  'code_wrong_course', 'code_already_used', 'price_changed'];

/** What the page can ask of the extension. */
export type PageMessage =
  | { type: 'ready' } | { type: 'buy'; email?: string; code?: string; method?: 'wechat' | 'alipay' } | { type: 'cancel' } | { type: 'purchases' } | { type: 'back' }
  | { type: 'restore'; licenseId: string } | { type: 'alreadyBought' } | { type: 'resend'; email: string }
  | { type: 'enterKey' } | { type: 'copy'; licenseId: string } | { type: 'openCourse'; courseId: string };

/** The page's CSS: theme variables only (fallbacks: Light+), text on its own background at 4.5:1 or more. */
export const PAGE_CSS = `
  body { font-family: var(--vscode-font-family, system-ui), "Noto Sans CJK SC", sans-serif; font-size: var(--vscode-font-size, 13px);
         color: var(--vscode-foreground, #616161); background: var(--vscode-editor-background, #ffffff);
         padding: 20px; max-width: 600px; margin: 0 auto; line-height: 1.5; }
  h1 { font-size: 1.3em; margin: 0 0 4px; }
  h2 { font-size: 1.1em; }
  .en { color: var(--vscode-descriptionForeground, #717171); font-size: .92em; }
  .status .en, .error .en, .ok .en, .note .en, .notice .en, button .en { color: inherit; }
  .price { font-size: 1.6em; font-weight: 600; margin: 12px 0; }
  .qr { text-align: center; margin: 16px 0; }
  .qr img { width: 220px; height: 220px; background: #ffffff; padding: 8px; border: 1px solid var(--vscode-panel-border, #80808059); }
  .status, .note, .notice { margin: 10px 0; padding: 8px 12px; border-radius: 4px; color: var(--vscode-foreground, #616161);
           background: var(--vscode-textBlockQuote-background, transparent);
           border-left: 4px solid var(--vscode-textBlockQuote-border, #007acc80); }
  .error { border: 1px solid var(--vscode-inputValidation-errorBorder, #be1100); border-left-width: 4px;
           background: var(--vscode-inputValidation-errorBackground, #f2dede);
           color: var(--vscode-inputValidation-errorForeground, var(--vscode-foreground, #616161)); padding: 10px 12px; margin: 12px 0; }
  .ok { border: 1px solid var(--vscode-inputValidation-infoBorder, #007acc); border-left-width: 4px;
        background: var(--vscode-inputValidation-infoBackground, #d6ecf2);
        color: var(--vscode-inputValidation-infoForeground, var(--vscode-foreground, #616161)); padding: 10px 12px; margin: 12px 0; }
  button { font: inherit; padding: 6px 14px; margin: 6px 6px 0 0; cursor: pointer; border-radius: 2px;
           border: 1px solid var(--vscode-button-border, transparent);
           background: var(--vscode-button-secondaryBackground, var(--vscode-button-background, #5f6a79)); color: var(--vscode-button-secondaryForeground, #ffffff); }
  button.primary { background: var(--vscode-button-background, #007acc); color: var(--vscode-button-foreground, #ffffff); }
  button:focus-visible, input:focus, textarea:focus { outline: 1px solid var(--vscode-focusBorder, #0090f1); outline-offset: 1px; }
  input, textarea { font: inherit; padding: 4px 6px; box-sizing: border-box; width: 100%;
           background: var(--vscode-input-background, #ffffff); color: var(--vscode-input-foreground, var(--vscode-foreground, #616161));
           border: 1px solid var(--vscode-input-border, var(--vscode-panel-border, #cecece)); }
  textarea.key { font-family: var(--vscode-editor-font-family, monospace); font-size: .85em; height: 4.2em; resize: vertical;
           word-break: break-all; margin-top: 4px; }
  label { display: block; margin: 12px 0 4px; }
  .lifetime { font-weight: 600; }
  table { border-collapse: collapse; width: 100%; margin-top: 8px; }
  .row { border-bottom: 1px solid var(--vscode-panel-border, #80808059); padding: 10px 0; }
  .row .title { font-weight: 600; }
  [hidden] { display: none !important; }
`;

/** The page's HTML: no remote resources, scripts only with this load's nonce, the QR as an image. */
export function pageHtml({ nonce, cspSource }: { nonce: string; cspSource: string }): string {
  const actions = JSON.stringify(ACTION_TEXT as Record<ErrorAction, { zh: string; en: string }>);
  return `<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src ${cspSource} data:; style-src 'nonce-${nonce}'; script-src 'nonce-${nonce}';">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>微信支付购买 · Buy with WeChat Pay</title>
<style nonce="${nonce}">${PAGE_CSS}</style>
</head>
<body>
<div id="app" data-phase="loading"><p>加载中… <span class="en">Loading…</span></p></div>
<script nonce="${nonce}">
(function () {
  const vscode = acquireVsCodeApi();
  const ACTIONS = ${actions};
  const STATUS = {
    pending: ['等待扫码支付', 'Waiting for you to scan and pay'],
    paid: ['已收到付款，正在生成许可证', 'Payment received, issuing the license'],
    fulfilled: ['支付成功', 'Paid'],
    closed: ['订单已关闭', 'Order closed'],
    refunded: ['已退款', 'Refunded'],
  };
  // Each payment method's words: its buy button, how to scan, and the QR's name.
  const METHODS = {
    wechat: { id: 'buy', buy: ['微信支付购买', 'Buy with WeChat Pay'], scan: ['请使用微信扫一扫支付 ', 'Scan with WeChat to pay '],
      alt: '微信支付二维码 WeChat Pay QR code' },
    alipay: { id: 'buy-alipay', buy: ['支付宝购买', 'Buy with Alipay'], scan: ['请使用支付宝扫一扫支付 ', 'Scan with Alipay to pay '],
      alt: '支付宝二维码 Alipay QR code' },
  };
  const LICENSE_STATE = { active: ['有效', 'active'], expired: ['已过期', 'expired'], revoked: ['已撤销', 'revoked'] };
  let state = null;
  let timer = null;

  const el = (tag, attrs, children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'onclick') node.addEventListener('click', v); else if (k === 'onsubmit') node.addEventListener('submit', v);
      else node.setAttribute(k, v);
    }
    for (const child of [].concat(children || [])) node.append(child);
    return node;
  };
  const both = (zh, en) => [zh, ' ', el('span', { class: 'en' }, en)];
  const yuan = (fen) => '¥' + (fen / 100).toFixed(2);
  const send = (message) => vscode.postMessage(message);
  const button = (id, zh, en, message, primary) =>
    el('button', { id, type: 'button', class: primary ? 'primary' : '', onclick: () => send(typeof message === 'function' ? message() : message) }, zh + ' · ' + en);
  const shanghai = (iso) => new Date(iso).toLocaleString('zh-CN', { timeZone: 'Asia/Shanghai', hour12: false });
  const until = (lifetime, iso) => lifetime
    ? el('span', { class: 'lifetime' }, '永久 · Lifetime')
    : el('span', {}, '有效期至 Valid until ' + shanghai(iso) + ' (Asia/Shanghai)');

  function countdown(expiresAt) {
    const left = Math.max(0, Math.floor((Date.parse(expiresAt) - Date.now()) / 1000));
    const mm = String(Math.floor(left / 60)).padStart(2, '0');
    const ss = String(left % 60).padStart(2, '0');
    return left > 0 ? both('二维码 ' + mm + ':' + ss + ' 后过期', '(QR expires in ' + mm + ':' + ss + ')')
                    : both('二维码已过期', '(the QR code has expired)');
  }

  function courseHeader(course) {
    if (!course) return [];
    const plan = course.plan === 'subscription'
      ? both('订阅 · 每 ' + course.period_days + ' 天', 'subscription, every ' + course.period_days + ' days')
      : both('一次购买，永久有效', 'one-time purchase, lifetime access');
    return [el('h1', { id: 'course-title' }, course.title), el('div', { class: 'en' }, plan),
            el('div', { class: 'price', id: 'price' }, yuan(course.price_fen))];
  }

  // A refused code's next step is the learner's own: correct the code or leave it out (not "update the extension").
  const CODE_NEXT = { zh: '检查优惠码，或清空后按原价购买。', en: 'check the code, or clear it to pay the full price.' };

  function errorBox(error, next) {
    const action = next || ACTIONS[error.action] || ACTIONS.none;
    return el('div', { class: 'error', id: 'error', role: 'alert', 'data-code': error.code, 'data-action': error.action }, [
      el('div', { id: 'error-zh' }, error.message_zh),
      el('div', { class: 'en', id: 'error-en' }, error.message_en),
      el('div', { id: 'error-action' }, [el('strong', {}, '下一步：'), action.zh, ' ', el('span', { class: 'en' }, 'Next: ' + action.en)]),
    ]);
  }

  const mailboxNote = (notice) => el('div', { class: 'note', id: 'mailbox-note' }, notice ? both(notice.zh, notice.en) : both(
    '如果这个邮箱以前买过这门课，许可证已经发到邮箱，无需再次付款。',
    'If this e-mail bought it before, your license is in your mailbox — no need to pay again.'));

  function restoreForm() {
    const r = state.restore || { sent: false, email: '' };
    const parts = [el('h2', {}, both('已购买？', 'Already bought?'))];
    if (r.sent) {
      parts.push(el('div', { class: 'ok', id: 'restore-sent' }, [
        el('div', {}, '如果 ' + r.email + ' 买过课程，许可证邮件几分钟内就到（也请看看垃圾邮件）。点邮件中的「在 VS Code 中打开」即可激活，或复制密钥后点下面的按钮。'),
        el('div', { class: 'en' }, 'If ' + r.email + ' bought a course, the license mail arrives within minutes (check spam too). Click "Open in VS Code" in it to activate, or copy the key and use the button below.'),
      ]));
    } else {
      parts.push(el('p', {}, both('输入购买时填写的邮箱，我们把许可证发给你。', 'Enter the e-mail you bought with and we mail you the licenses.')));
      const input = el('input', { id: 'restore-email', type: 'email', required: 'required', autocomplete: 'email',
        value: r.email || '', 'aria-label': '邮箱 E-mail' });
      parts.push(el('form', { id: 'restore-form', onsubmit: (e) => { e.preventDefault(); send({ type: 'resend', email: input.value }); } }, [
        el('label', { for: 'restore-email' }, both('邮箱', 'E-mail')), input,
        el('button', { id: 'resend', type: 'submit', class: 'primary' }, '发送许可证 · Mail my licenses'),
      ]));
    }
    if (state.error) parts.push(errorBox(state.error));
    parts.push(button('enter-key', '输入许可证密钥', 'Enter license key', { type: 'enterKey' }, r.sent));
    parts.push(button('back', '返回', 'Back', { type: 'back' }));
    return parts;
  }

  function render() {
    const app = document.getElementById('app');
    app.setAttribute('data-phase', state.phase);
    const parts = state.phase === 'restore' || state.phase === 'purchases' ? [] : [...courseHeader(state.course)];
    if (state.phase === 'loading') parts.push(el('p', {}, both('加载中…', 'Loading…')));
    if (state.phase === 'ready') {
      const entered = state.entered || { email: '', code: '' };
      const email = el('input', { id: 'email', type: 'email', autocomplete: 'email', 'aria-label': '邮箱（可选）E-mail (optional)',
        value: entered.email });
      parts.push(el('label', { for: 'email' }, both('邮箱（可选，用于接收许可证）', 'E-mail (optional, to receive the license)')), email);
      const codeRefused = state.error && ${JSON.stringify(CODE_REFUSALS)}.includes(state.error.code);
      const code = el('input', { id: 'code', type: 'text', autocomplete: 'off', spellcheck: 'false', maxlength: '32',
        'aria-label': '优惠码（可选）Discount code (optional)', value: entered.code });
      if (codeRefused) code.setAttribute('aria-invalid', 'true');
      parts.push(el('label', { for: 'code' }, both('优惠码（可选）', 'Discount code (optional)')), code);
      if (state.error) parts.push(errorBox(state.error, codeRefused ? CODE_NEXT : null));
      const methods = state.methods && state.methods.length ? state.methods : ['wechat'];
      for (const method of methods) {
        const m = METHODS[method] || METHODS.wechat;
        // With WeChat Pay alone its button says no more than before; with a choice, each names its method
        // (an unnamed "buy" is the retry button's: the way the last order went).
        parts.push(button(m.id, m.buy[0], m.buy[1], () => ({ type: 'buy', email: email.value, code: code.value,
          ...(methods.length > 1 || method !== 'wechat' ? { method } : {}) }), true));
      }
      parts.push(button('already-bought', '已购买？', 'Already bought?', { type: 'alreadyBought' }));
      parts.push(button('purchases', '我的购买', 'My purchases', { type: 'purchases' }));
    }
    if (state.phase === 'placing') parts.push(el('div', { class: 'status', id: 'status' }, both('正在下单…', 'Placing the order…')));
    if (state.phase === 'waiting' && state.order) {
      const o = state.order;
      const image = 'data:image/svg+xml;base64,' + btoa(unescape(encodeURIComponent(o.qr_svg)));
      const words = STATUS[o.status] || [o.status, o.status];
      if (o.email_given || o.email_notice) parts.push(mailboxNote(o.email_notice));
      const m = METHODS[o.method] || METHODS.wechat;
      parts.push(el('p', { id: 'scan-with', 'data-method': o.method || 'wechat' },
        both(m.scan[0] + yuan(o.amount_fen), m.scan[1] + yuan(o.amount_fen))));
      if (o.discount_fen) {
        parts.push(el('p', { id: 'breakdown', class: 'en' }, '原价 List ' + yuan(o.list_price_fen) + ' · 优惠 Discount −'
          + yuan(o.discount_fen) + ' · 实付 Paid ' + yuan(o.amount_fen)));
      }
      parts.push(el('div', { class: 'qr' }, el('img', { id: 'qr', alt: m.alt, src: image })));
      parts.push(el('div', { id: 'countdown' }, countdown(o.expires_at)));
      parts.push(el('div', { class: 'status', id: 'status', 'data-status': o.status }, both(words[0], words[1])));
      if (state.error) parts.push(errorBox(state.error));
      parts.push(el('div', { class: 'en' }, '订单号 Order ' + o.order_id));
      parts.push(button('cancel', '取消订单', 'Cancel order', { type: 'cancel' }));
    }
    if (state.phase === 'licensed' && state.license) {
      const l = state.license;
      parts.push(el('div', { class: 'ok', id: 'licensed' }, [
        el('div', {}, '许可证已激活，「' + l.course_title + '」已解锁。'), el('div', { class: 'en' }, 'Your license is active; "' + l.course_title + '" is unlocked.'),
        el('div', { id: 'license-until' }, until(l.lifetime, l.expires_at)),
      ]));
      parts.push(button('open-course', '打开课程', 'Open course', { type: 'openCourse', courseId: l.course_id }, true));
      parts.push(button('purchases', '我的购买', 'My purchases', { type: 'purchases' }));
    }
    if (state.phase === 'failed' && state.error) {
      parts.push(errorBox(state.error));
      if (['retry', 'retry_later', 'new_order'].includes(state.error.action)) {
        const again = ACTIONS[state.error.action];
        parts.push(button('retry', again.zh, again.en, { type: 'buy' }, true));
      }
      if (state.order) parts.push(el('div', { class: 'en' }, '订单号 Order ' + state.order.order_id));
      parts.push(button('purchases', '我的购买', 'My purchases', { type: 'purchases' }));
    }
    if (state.phase === 'purchases') {
      parts.push(el('h2', {}, both('我的购买', 'My purchases')));
      const rows = (state.purchases || []).map((p) => {
        const lic = p.license;
        const words = lic ? (LICENSE_STATE[lic.state] || [lic.state, lic.state]) : ['—', ''];
        const children = [
          el('div', { class: 'title' }, p.course_title),
          el('div', {}, [yuan(p.amount_fen) + ' · ' + shanghai(p.created_at) + ' · ', el('span', { class: 'state' }, both(words[0], words[1]))]),
        ];
        if (lic && lic.state === 'active') {
          children.push(el('div', { class: 'until' }, until(lic.lifetime, lic.expires_at)));
          if (lic.key) {
            children.push(el('label', { for: 'key-' + lic.id }, both('许可证密钥', 'License key')));
            children.push(el('textarea', { id: 'key-' + lic.id, class: 'key', readonly: 'readonly', rows: '3' }, lic.key));
            children.push(el('button', { type: 'button', class: 'copy', 'data-license': lic.id,
              onclick: () => send({ type: 'copy', licenseId: lic.id }) }, '复制密钥 · Copy key'));
          }
          children.push(el('button', { type: 'button', class: 'restore primary', 'data-license': lic.id,
            onclick: () => send({ type: 'restore', licenseId: lic.id }) }, '在本机激活 · Activate here'));
          children.push(el('button', { type: 'button', class: 'open-course', 'data-course': p.course_id,
            onclick: () => send({ type: 'openCourse', courseId: p.course_id }) }, '打开课程 · Open course'));
        }
        return el('div', { class: 'row', 'data-order': p.order_id }, children);
      });
      parts.push(rows.length ? el('div', { id: 'purchases-list' }, rows)
        : el('p', { id: 'no-purchases' }, both('这台电脑上还没有购买记录。换了电脑？用「已购买？」通过邮箱找回。',
          'No purchases on this machine yet. New computer? Use "Already bought?" to restore by e-mail.')));
      if (state.error) parts.push(errorBox(state.error));
      parts.push(button('already-bought', '已购买？', 'Already bought?', { type: 'alreadyBought' }));
      parts.push(button('back', '返回', 'Back', { type: 'back' }));
    }
    if (state.phase === 'restore') parts.push(...restoreForm());
    if (state.notice) parts.push(el('div', { class: 'notice', id: 'notice', role: 'status' }, both(state.notice.zh, state.notice.en)));
    app.replaceChildren(...parts);
  }

  window.addEventListener('message', (event) => {
    state = event.data;
    render();
    clearInterval(timer);
    if (state.phase === 'waiting') {
      timer = setInterval(() => {
        const node = document.getElementById('countdown');
        if (node && state.order) node.replaceChildren(...countdown(state.order.expires_at));
      }, 1000);
    }
  });
  send({ type: 'ready' });
})();
</script>
</body>
</html>`;
}
