// The purchase page: place an order, show its QR code with a countdown, poll until the license arrives,
// and bring back licenses this browser already bought. Without JavaScript the forms post to the server.
"use strict";

(function () {
  const root = document.getElementById("buy");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const catalogue = JSON.parse($("error-catalogue").textContent);
  const TOKEN = "lbpay.buyer_token";
  const ACTIONS = {
    retry: ["请重试。", "Please try again."],
    retry_later: ["请稍后重试。", "Please try again later."],
    new_order: ["请重新下单。", "Please place a new order."],
    contact_support: ["请联系客服并提供订单号。", "Contact support and give your order id."],
    fix_request: ["请检查输入。", "Please check what you entered."],
    none: ["", ""],
  };
  // Codes that are news, not failures: shown calmly, never in red.
  const CALM = { payment_cancelled: true, payment_failed: true, already_licensed: true };
  // The server's reasons for a refused field, in the learner's words (the detail is shown as well).
  const FIELDS = { email: ["邮箱格式不正确，例如 name@example.com。", "The e-mail address is not valid, e.g. name@example.com."] };
  let order = null;
  let timer = null;
  let ticker = null;
  let mailedTo = "";

  function say(zh, en) {
    $("status").textContent = en ? zh + " · " + en : zh;
  }

  function hideProblems() {
    for (const id of ["error", "notice"]) {
      $(id).hidden = true;
      $(id).dataset.code = "";
    }
    for (const field of ["email", "code"]) {
      $(field + "-problem").hidden = true;
      $(field).removeAttribute("aria-invalid");
    }
  }

  // A code the server refused (unknown, expired, used up, for another course…): said beside the code field.
  const CODE_REFUSALS = ["code_not_found", "code_not_started", "code_expired", "code_exhausted",
                         "code_wrong_course", "code_already_used", "price_changed"];

  function showError(err, retryAfter) {
    const known = catalogue[err.code] || {};
    const zh = err.message_zh || known.zh || "出错了";
    const en = err.message_en || known.en || "Something went wrong";
    if (CALM[err.code]) {
      $("error").hidden = true;
      $("notice-zh").textContent = zh;
      $("notice-en").textContent = en;
      $("notice").hidden = false;
      $("notice").dataset.code = err.code;
      return;
    }
    $("error-zh").textContent = zh;
    $("error-en").textContent = en;
    $("error-detail").textContent = err.detail || "";
    $("error-detail").hidden = !err.detail;
    const action = ACTIONS[err.action || known.action] || ACTIONS.none;
    let hint = action[0] + " " + action[1];
    if (retryAfter) hint += " (" + retryAfter + " s)";
    if (order) hint += " · " + order.order_id;
    $("error-action").textContent = hint.trim();
    $("error").hidden = false;
    $("error").dataset.code = err.code || "";
    const field = CODE_REFUSALS.includes(err.code) ? "code"
      : err.detail && Object.keys(FIELDS).find((name) => err.detail.indexOf(name) === 0);
    if (field) {  // name the field and its rule next to it (in words: the server's detail then says nothing more)
      if (field !== "code") $("error-detail").hidden = true;
      $(field + "-problem").textContent = field === "code" ? zh + " " + en : FIELDS[field].join(" ");
      $(field + "-problem").hidden = false;
      $(field).setAttribute("aria-invalid", "true");
      $(field).focus();
    }
  }

  async function api(method, path, body, token) {
    const headers = { Accept: "application/json" };
    if (body) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { ok: response.ok, status: response.status, data,
             retryAfter: response.headers.get("Retry-After") };
  }

  let shownCodeUrl = null;

  function onPhone() {
    return window.matchMedia("(max-width: 40rem)").matches
      || /Mobi|Android|iPhone|iPad|MicroMessenger/i.test(navigator.userAgent);
  }

  function countdown() {
    if (!order || !order.expires_at) return;
    const left = Math.max(0, Math.floor((new Date(order.expires_at) - Date.now()) / 1000));
    const mm = String(Math.floor(left / 60)).padStart(2, "0");
    const ss = String(left % 60).padStart(2, "0");
    $("countdown").textContent = mm + ":" + ss;
    $("countdown").dataset.seconds = String(left);
  }

  const yuan = (fen) => "¥" + (fen / 100).toFixed(2);

  // List price, discount and what is paid, when a code or a launch price lowered the price.
  function showBreakdown(view) {
    const box = $("breakdown");
    box.hidden = !view.discount_fen;
    box.textContent = view.discount_fen
      ? "原价 List " + yuan(view.list_price_fen) + " · 优惠 Discount −" + yuan(view.discount_fen)
        + " · 实付 Paid " + yuan(view.amount_fen)
      : "";
  }

  function showQr(view) {
    // An image, not inline SVG: a phone can long-press and save it, then scan it from the album.
    const svg = view.qr_svg || "";
    $("qr").src = "data:image/svg+xml;base64," + btoa(unescape(encodeURIComponent(svg)));
    shownCodeUrl = view.code_url;
    $("qr").dataset.codeUrl = view.code_url || "";
    $("order-id").textContent = view.order_id;
    $("amount").textContent = "¥" + (view.amount_fen / 100).toFixed(2);
    showBreakdown(view);
    const alipay = view.method === "alipay";
    $("method-name").textContent = alipay ? "支付宝 · Alipay" : "微信支付 · WeChat Pay";
    $("method-name").className = "method " + (alipay ? "method-alipay" : "method-wechat");
    $("qr").alt = alipay ? "支付宝二维码，请用支付宝“扫一扫” · Alipay QR code: scan it with Alipay"
                         : "微信支付二维码，请用微信“扫一扫” · WeChat Pay QR code: scan it with WeChat";
    $("scan-words").firstChild.textContent = alipay ? "请使用支付宝扫一扫 · " : "请使用微信扫一扫 · ";
    $("scan-words").lastChild.textContent = alipay ? "Scan with Alipay" : "Scan with WeChat";
    const link = $("sandbox-pay");
    if (link && view.code_url && alipay) {
      link.href = view.code_url;  // the simulator's QR is the address of its phone page
    } else if (link && view.code_url) {
      const pr = new URL(view.code_url.replace("weixin://", "https://")).searchParams.get("pr");
      link.href = "/sandbox/pay/" + encodeURIComponent(pr);
    }
    $("phone-help").hidden = !onPhone();
    $("qr-box").hidden = false;
    $("start").hidden = true;
    $("resend").hidden = true;  // one thing at a time: paying
    clearInterval(ticker);
    countdown();
    ticker = setInterval(countdown, 1000);
  }

  function lifetime(license) {
    // A one-time course is bought for good; its key says so with an expiry a century away.
    const centuryish = new Date(license.expires_at) - Date.now() > 50 * 365 * 86400 * 1000;
    return license.plan === "one_time" || centuryish;
  }

  function expiry(license) {
    return lifetime(license)
      ? "永久 · Lifetime"
      : new Date(license.expires_at).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai" });
  }

  function showEmailNotice(notice) {
    $("email-notice").hidden = !notice;
    $("email-notice-zh").textContent = notice ? notice.zh : "";
    $("email-notice-en").textContent = notice ? notice.en : "";
  }

  function yuanOf(fen) {
    return "¥" + Math.floor(fen / 100) + "." + String(fen % 100).padStart(2, "0");
  }

  // The receipt of a paid order (a gift has none): amount, time in Beijing, WeChat's number, the seller.
  function showReceipt(view, orderToken) {
    const paid = view && view.paid_at && view.amount_fen > 0 && orderToken;
    $("receipt-box").hidden = !paid;
    if (!paid) return;
    $("receipt-amount").textContent = yuanOf(view.amount_fen);
    $("receipt-paid-at").textContent = new Date(view.paid_at).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });
    $("receipt-transaction").textContent = view.transaction_id || "";
    $("receipt-order").textContent = view.order_id;
    $("receipt-out-trade-no").textContent = view.out_trade_no || "";
    const form = $("fapiao-open");
    form.action = "/receipt/" + encodeURIComponent(view.order_id) + "/open";
    form.elements.namedItem("order_token").value = orderToken;
  }

  function showLicense(license, orderId) {
    $("license").value = license.key;
    $("license-order").textContent = orderId || license.order_id || "";
    $("license-expiry").textContent = expiry(license);
    $("label-until").hidden = lifetime(license);
    $("label-lifetime").hidden = !lifetime(license);
    $("mailed").hidden = !mailedTo;
    $("mailed-to").textContent = mailedTo;
    $("mailed-to-en").textContent = mailedTo;
    $("license-box").hidden = false;
    $("qr-box").hidden = true;
    $("resend").hidden = true;
    showEmailNotice(null);
    clearInterval(ticker);
  }

  function render(view) {
    if (view.error) showError(view.error); else hideProblems();
    if (view.status === "fulfilled" && view.license) {
      say("支付成功", "Paid");
      showLicense(view.license, view.order_id);
      showReceipt(view, order && order.order_token);
    } else if (view.status === "pending") {
      say("等待支付…", "Waiting for payment…");
      // A code_url lives 2 hours; the server replaces it before then and the page shows the new one.
      if (view.qr_svg && view.code_url && view.code_url !== shownCodeUrl) showQr(view);
    } else if (view.status === "closed") {
      say("订单已关闭", "Order closed");
      $("qr-box").hidden = true;
      clearInterval(ticker);
      showEmailNotice(null);
      $("start").hidden = false;  // offer a new order at once, the way back by e-mail too
      $("resend").hidden = false;
    } else if (view.status === "refunded" || view.status === "partially_refunded") {
      say("已退款", "Refunded");
    } else {
      say(view.status, "");
    }
    return view.final;
  }

  async function poll() {
    const r = await api("GET", "/api/v1/orders/" + encodeURIComponent(order.order_id), null, order.order_token);
    let delay = 2000;
    if (r.ok) {
      if (render(r.data)) return;
      delay = r.data.poll_after_ms || delay;
    } else if (r.data && r.data.error) {
      showError(r.data.error, r.retryAfter);
      delay = (parseInt(r.retryAfter, 10) || 5) * 1000;
    }
    timer = setTimeout(poll, delay);
  }

  // A learner who paid before (this browser keeps the buyer token) gets the license back at once.
  async function restore() {
    const token = window.localStorage.getItem(TOKEN);
    if (!token) return false;
    const r = await api("GET", "/api/v1/me/licenses", null, token);
    if (r.status === 401) window.localStorage.removeItem(TOKEN);
    if (!r.ok || !r.data) return false;
    const mine = r.data.licenses.filter((l) => l.course_id === root.dataset.course && l.state === "active");
    if (!mine.length) return false;
    showLicense(mine[mine.length - 1]);
    say("你已购买本课程", "You already own this course");
    return true;
  }

  $("start").addEventListener("submit", async (event) => {
    event.preventDefault();
    hideProblems();
    if ($("pay")) $("pay").disabled = true;
    if ($("pay-alipay")) $("pay-alipay").disabled = true;
    say("正在下单…", "Placing the order…");
    const body = { course_id: root.dataset.course };
    if (event.submitter && event.submitter.value === "alipay") body.method = "alipay";
    const email = $("email").value.trim();
    if (email) body.email = email;
    const code = $("code").value.trim();
    if (code) body.code = code;
    const saved = window.localStorage.getItem(TOKEN);
    if (saved) body.buyer_token = saved;
    let r = await api("POST", "/api/v1/orders", body);
    if (r.status === 401 && saved) {  // a token from another server: start afresh
      window.localStorage.removeItem(TOKEN);
      delete body.buyer_token;
      r = await api("POST", "/api/v1/orders", body);
    }
    if ($("pay")) $("pay").disabled = false;
    if ($("pay-alipay")) $("pay-alipay").disabled = false;
    if (!r.ok) {
      say("", "");
      const err = (r.data && r.data.error) || { code: "internal_error" };
      if (err.code === "already_licensed" && !(await restore()) && r.data.license) {
        showLicense(r.data.license);
      }
      showError(err, r.retryAfter);
      return;
    }
    order = r.data;
    mailedTo = email;
    window.localStorage.setItem(TOKEN, order.buyer_token);
    showEmailNotice(order.email_notice);
    if (order.status === "pending") showQr(order);  // a code that makes it free: the license at once
    else showBreakdown(order);
    render(order);
    if (order.final) return;
    timer = setTimeout(poll, order.poll_after_ms || 1000);
  });

  $("cancel").addEventListener("click", async () => {
    if (!order) return;
    clearTimeout(timer);
    const r = await api("POST", "/api/v1/orders/" + encodeURIComponent(order.order_id) + "/cancel", {}, order.order_token);
    if (r.ok) render(r.data); else showError(r.data.error, r.retryAfter);
    if (!r.ok) timer = setTimeout(poll, 1000);
  });

  $("resend-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const address = $("resend-email").value.trim();
    const r = await api("POST", "/api/v1/licenses/resend", { email: address });
    $("resend-done").hidden = !r.ok;
    if (!r.ok) showError((r.data && r.data.error) || { code: "internal_error" }, r.retryAfter);
    else hideProblems();
  });

  // Sandbox only (the server sets it): show one catalogued error as a learner would meet it.
  if (root.dataset.demoError) {
    const code = root.dataset.demoError;
    showError({ code }, (catalogue[code] || {}).action === "retry_later" ? "30" : null);
  }

  $("copy").addEventListener("click", async () => {
    const text = $("license").value;
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      $("license").select();
      document.execCommand("copy");
    }
    say("已复制", "Copied");
  });

  // In the buy button's overlay on the creator's site: Escape here closes it there too (buy-button.js).
  if (window.parent !== window) {
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") window.parent.postMessage({ lbpay: "close" }, "*");
    });
  }

  restore();
})();
