// The buy button for a creator's own site. The snippet (console: "Buy button") is
//   <a href="https://pay.example.com/buy/COURSE" data-lbpay-buy>购买 Buy</a>
//   <script src="https://pay.example.com/static/buy-button.js" defer></script>
// A click opens the purchase page in an overlay (an iframe of /buy/COURSE/embed, which the server lets
// only the creator's listed origins frame); a middle or modified click, or a page without scripts,
// follows the plain link. Styles are set through the DOM, so the host page's CSP needs no inline styles.
(function () {
  "use strict";
  var open = null;

  function close() {
    if (!open) return;
    open.shade.remove();
    document.removeEventListener("keydown", onKey);
    if (open.link && open.link.focus) open.link.focus();
    open = null;
  }

  function onKey(event) {
    if (event.key === "Escape") close();
  }

  function style(element, rules) {
    for (var name in rules) element.style[name] = rules[name];
    return element;
  }

  function overlay(link) {
    var url = new URL(link.href, document.baseURI);
    url.pathname = url.pathname.replace(/\/+$/, "") + "/embed";
    var shade = style(document.createElement("div"), {
      position: "fixed", inset: "0", background: "rgba(0,0,0,0.55)", zIndex: "2147483000",
      display: "flex", alignItems: "center", justifyContent: "center", padding: "12px", boxSizing: "border-box",
    });
    shade.setAttribute("data-lbpay-overlay", "");
    shade.setAttribute("role", "dialog");
    shade.setAttribute("aria-modal", "true");
    shade.setAttribute("aria-label", link.textContent.trim() || "购买 Buy");
    var box = style(document.createElement("div"), {
      position: "relative", width: "100%", maxWidth: "520px", height: "100%", maxHeight: "820px",
      background: "#fff", borderRadius: "12px", overflow: "hidden", boxShadow: "0 10px 40px rgba(0,0,0,0.35)",
    });
    var frame = style(document.createElement("iframe"), { width: "100%", height: "100%", border: "0", display: "block" });
    frame.src = url.href;
    frame.title = "微信支付购买 · Buy with WeChat Pay";
    frame.setAttribute("allow", "clipboard-write");
    var shut = style(document.createElement("button"), {
      position: "absolute", top: "6px", right: "8px", width: "36px", height: "36px", border: "0",
      borderRadius: "18px", background: "rgba(0,0,0,0.6)", color: "#fff", fontSize: "20px", lineHeight: "36px",
      cursor: "pointer", padding: "0",
    });
    shut.type = "button";
    shut.textContent = "×";
    shut.setAttribute("aria-label", "关闭 Close");
    shut.setAttribute("data-lbpay-close", "");
    shut.addEventListener("click", close);
    shade.addEventListener("click", function (event) { if (event.target === shade) close(); });
    box.appendChild(frame);
    box.appendChild(shut);
    shade.appendChild(box);
    document.body.appendChild(shade);
    document.addEventListener("keydown", onKey);
    open = { shade: shade, link: link, frame: frame };
    shut.focus();
  }

  // Escape pressed inside the frame: the purchase page asks to close (only our own frame is listened to).
  window.addEventListener("message", function (event) {
    if (open && event.source === open.frame.contentWindow && event.data && event.data.lbpay === "close") close();
  });

  document.addEventListener("click", function (event) {
    var link = event.target && event.target.closest ? event.target.closest("a[data-lbpay-buy]") : null;
    if (!link || event.defaultPrevented || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey
        || event.altKey) return;
    event.preventDefault();
    close();
    overlay(link);
  });
})();
