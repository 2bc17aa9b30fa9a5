// The purchase panel's page: it only draws the state the extension posts and posts back what was clicked.
import { ACTION_TEXT, ErrorAction, ShownError } from './errors';

/** Everything the page draws; the extension posts a fresh one on every change. */
export interface PanelState {
  phase: 'loading' | 'ready' | 'placing' | 'waiting' | 'licensed' | 'failed' | 'purchases';
  course: { id: string; title: string; price_fen: number; plan: string; period_days: number | null } | null;
  order: { order_id: string; amount_fen: number; qr_svg: string; expires_at: string; status: string } | null;
  error: ShownError | null;
  license: { id: string; expires_at: string } | null;
  purchases: {
    order_id: string; course_id: string; amount_fen: number; status: string; created_at: string;
    license: { id: string; state: string; expires_at: string } | null;
  }[] | null;
}

/** What the page can ask of the extension. */
export type PageMessage =
  | { type: 'ready' } | { type: 'buy' } | { type: 'cancel' } | { type: 'purchases' } | { type: 'back' }
  | { type: 'restore'; licenseId: string };

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
<style nonce="${nonce}">
  body { font-family: var(--vscode-font-family, system-ui), "Noto Sans CJK SC", sans-serif; color: var(--vscode-foreground, #1f2328);
         background: var(--vscode-editor-background, #fff); padding: 20px; max-width: 560px; margin: 0 auto; }
  h1 { font-size: 1.3em; margin: 0 0 4px; }
  .en { color: var(--vscode-descriptionForeground, #59636e); font-size: .9em; }
  .price { font-size: 1.6em; font-weight: 600; margin: 12px 0; }
  .qr { text-align: center; margin: 16px 0; }
  .qr img { width: 220px; height: 220px; background: #fff; padding: 8px; border: 1px solid #d0d7de; }
  .status { margin: 10px 0; padding: 8px 12px; border-radius: 6px; background: var(--vscode-textBlockQuote-background, #f6f8fa); }
  .error { border-left: 4px solid #cf222e; background: #ffebe9; color: #1f2328; padding: 10px 12px; margin: 12px 0; }
  .ok { border-left: 4px solid #1a7f37; background: #dafbe1; color: #1f2328; padding: 10px 12px; margin: 12px 0; }
  button { font: inherit; padding: 6px 14px; margin: 6px 6px 0 0; cursor: pointer; border-radius: 4px; border: 1px solid #d0d7de;
           background: var(--vscode-button-secondaryBackground, #f6f8fa); color: var(--vscode-button-secondaryForeground, #1f2328); }
  button.primary { background: #07c160; border-color: #07c160; color: #fff; }
  table { border-collapse: collapse; width: 100%; margin-top: 8px; font-size: .92em; }
  td, th { border-bottom: 1px solid #d0d7de; padding: 6px 4px; text-align: left; }
  [hidden] { display: none !important; }
</style>
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
  const LICENSE_STATE = { active: ['有效', 'active'], expired: ['已过期', 'expired'], revoked: ['已撤销', 'revoked'] };
  let state = null;
  let timer = null;

  const el = (tag, attrs, children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'onclick') node.addEventListener('click', v); else node.setAttribute(k, v);
    }
    for (const child of [].concat(children || [])) node.append(child);
    return node;
  };
  const both = (zh, en) => [zh, ' ', el('span', { class: 'en' }, en)];
  const yuan = (fen) => '¥' + (fen / 100).toFixed(2);
  const send = (message) => vscode.postMessage(message);
  const button = (id, zh, en, message, primary) =>
    el('button', { id, class: primary ? 'primary' : '', onclick: () => send(message) }, zh + ' · ' + en);
  const shanghai = (iso) => new Date(iso).toLocaleString('zh-CN', { timeZone: 'Asia/Shanghai', hour12: false });

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
      : both('一次购买，长期有效', 'one-time purchase');
    return [el('h1', { id: 'course-title' }, course.title), el('div', { class: 'en' }, plan),
            el('div', { class: 'price', id: 'price' }, yuan(course.price_fen))];
  }

  function errorBox(error) {
    const action = ACTIONS[error.action] || ACTIONS.none;
    return el('div', { class: 'error', id: 'error', 'data-code': error.code, 'data-action': error.action }, [
      el('div', { id: 'error-zh' }, error.message_zh),
      el('div', { class: 'en', id: 'error-en' }, error.message_en),
      el('div', { id: 'error-action' }, [el('strong', {}, '下一步：'), action.zh, ' ', el('span', { class: 'en' }, 'Next: ' + action.en)]),
    ]);
  }

  function render() {
    const app = document.getElementById('app');
    app.setAttribute('data-phase', state.phase);
    const parts = [...courseHeader(state.course)];
    if (state.phase === 'loading') parts.push(el('p', {}, both('加载中…', 'Loading…')));
    if (state.phase === 'ready') {
      parts.push(button('buy', '微信支付购买', 'Buy with WeChat Pay', { type: 'buy' }, true));
      parts.push(button('purchases', '我的购买', 'My purchases', { type: 'purchases' }));
    }
    if (state.phase === 'placing') parts.push(el('div', { class: 'status', id: 'status' }, both('正在下单…', 'Placing the order…')));
    if (state.phase === 'waiting' && state.order) {
      const o = state.order;
      const image = 'data:image/svg+xml;base64,' + btoa(unescape(encodeURIComponent(o.qr_svg)));
      const words = STATUS[o.status] || [o.status, o.status];
      parts.push(el('p', {}, both('请使用微信扫一扫支付 ' + yuan(o.amount_fen), 'Scan with WeChat to pay ' + yuan(o.amount_fen))));
      parts.push(el('div', { class: 'qr' }, el('img', { id: 'qr', alt: '微信支付二维码 WeChat Pay QR code', src: image })));
      parts.push(el('div', { id: 'countdown' }, countdown(o.expires_at)));
      parts.push(el('div', { class: 'status', id: 'status', 'data-status': o.status }, both(words[0], words[1])));
      if (state.error) parts.push(errorBox(state.error));
      parts.push(el('div', { class: 'en' }, '订单号 Order ' + o.order_id));
      parts.push(button('cancel', '取消订单', 'Cancel order', { type: 'cancel' }));
    }
    if (state.phase === 'licensed' && state.license) {
      parts.push(el('div', { class: 'ok', id: 'licensed' }, [
        el('div', {}, '许可证已激活，课程已解锁。'), el('div', { class: 'en' }, 'Your license is active; the course is unlocked.'),
        el('div', { class: 'en' }, '有效期至 Valid until ' + shanghai(state.license.expires_at) + ' (Asia/Shanghai)'),
      ]));
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
        const restore = lic && lic.state === 'active'
          ? el('button', { class: 'restore', 'data-license': lic.id, onclick: () => send({ type: 'restore', licenseId: lic.id }) }, '恢复 · Restore')
          : '';
        return el('tr', { 'data-order': p.order_id }, [el('td', {}, p.course_id), el('td', {}, yuan(p.amount_fen)),
          el('td', {}, shanghai(p.created_at)), el('td', { class: 'state' }, both(words[0], words[1])), el('td', {}, restore)]);
      });
      parts.push(rows.length ? el('table', { id: 'purchases-table' }, [
        el('tr', {}, ['课程 Course', '金额 Amount', '时间 Time', '许可证 License', ''].map((h) => el('th', {}, h))), ...rows])
        : el('p', { id: 'no-purchases' }, both('这台电脑上还没有购买记录。', 'No purchases on this machine yet.')));
      if (state.error) parts.push(errorBox(state.error));
      parts.push(button('back', '返回', 'Back', { type: 'back' }));
    }
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
