// The purchase page: place an order, show its QR code, poll until the license arrives.
"use strict";

(function () {
  const root = document.getElementById("buy");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const catalogue = JSON.parse($("error-catalogue").textContent);
  const ACTIONS = {
    retry: ["请重试。", "Please try again."],
    retry_later: ["请稍后重试。", "Please try again later."],
    new_order: ["请重新下单。", "Please place a new order."],
    contact_support: ["请联系客服并提供订单号。", "Contact support and give your order id."],
    fix_request: ["请检查输入。", "Please check what you entered."],
    none: ["", ""],
  };
  let order = null;
  let timer = null;

  function say(zh, en) {
    $("status").textContent = en ? zh + " · " + en : zh;
  }

  function showError(err, retryAfter) {
    const known = catalogue[err.code] || {};
    $("error-zh").textContent = err.message_zh || known.zh || "出错了";
    $("error-en").textContent = err.message_en || known.en || "Something went wrong";
    const action = ACTIONS[err.action || known.action] || ACTIONS.none;
    let hint = action[0] + " " + action[1];
    if (retryAfter) hint += " (" + retryAfter + " s)";
    if (order) hint += " · " + order.order_id;
    $("error-action").textContent = hint.trim();
    $("error").hidden = false;
    $("error").dataset.code = err.code || "";
  }

  function clearError() {
    $("error").hidden = true;
    $("error").dataset.code = "";
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

  function showQr(view) {
    $("qr").innerHTML = view.qr_svg;  // our own server-made SVG
    shownCodeUrl = view.code_url;
    $("qr").dataset.codeUrl = view.code_url || "";
    $("order-id").textContent = view.order_id;
    const link = $("sandbox-pay");
    if (link && view.code_url) {
      const pr = new URL(view.code_url.replace("weixin://", "https://")).searchParams.get("pr");
      link.href = "/sandbox/pay/" + encodeURIComponent(pr);
    }
    $("qr-box").hidden = false;
    $("start").hidden = true;
  }

  function showLicense(license) {
    $("license").value = license.key;
    $("license-expiry").textContent = license.plan === "one_time"
      ? "永久 · Lifetime"
      : new Date(license.expires_at).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai" });
    $("license-box").hidden = false;
    $("qr-box").hidden = true;
  }

  function render(view) {
    if (view.error) showError(view.error); else clearError();
    if (view.status === "fulfilled" && view.license) {
      say("支付成功", "Paid");
      showLicense(view.license);
    } else if (view.status === "pending") {
      say("等待支付…", "Waiting for payment…");
      // A code_url lives 2 hours; the server replaces it before then and the page shows the new one.
      if (view.qr_svg && view.code_url && view.code_url !== shownCodeUrl) showQr(view);
    } else if (view.status === "closed") {
      say("订单已关闭", "Order closed");
      $("qr-box").hidden = true;
      $("start").hidden = false;  // the error asks for a new order: offer the button again
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

  $("start").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    $("pay").disabled = true;
    say("正在下单…", "Placing the order…");
    const body = { course_id: root.dataset.course };
    const email = $("email").value.trim();
    if (email) body.email = email;
    const saved = window.localStorage.getItem("lbpay.buyer_token");
    if (saved) body.buyer_token = saved;
    let r = await api("POST", "/api/v1/orders", body);
    if (r.status === 401 && saved) {  // a token from another server: start afresh
      window.localStorage.removeItem("lbpay.buyer_token");
      delete body.buyer_token;
      r = await api("POST", "/api/v1/orders", body);
    }
    $("pay").disabled = false;
    if (!r.ok) {
      say("", "");
      showError((r.data && r.data.error) || { code: "internal_error" }, r.retryAfter);
      return;
    }
    order = r.data;
    window.localStorage.setItem("lbpay.buyer_token", order.buyer_token);
    showQr(order);
    render(order);
    timer = setTimeout(poll, order.poll_after_ms || 1000);
  });

  $("cancel").addEventListener("click", async () => {
    if (!order) return;
    clearTimeout(timer);
    const r = await api("POST", "/api/v1/orders/" + encodeURIComponent(order.order_id) + "/cancel", {}, order.order_token);
    if (r.ok) render(r.data); else showError(r.data.error, r.retryAfter);
    if (!r.ok) timer = setTimeout(poll, 1000);
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
})();
