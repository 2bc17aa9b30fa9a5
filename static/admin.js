// The console's few behaviours: confirm (naming the amount) before a form that moves money or access,
// one request per click, and a back link. htmx (static/vendor/) does the in-place updates.
"use strict";

// Capture phase: the question comes before htmx (listening on the form itself) sends anything.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const template = form.getAttribute("data-confirm");
  const amount = form.elements.namedItem("amount");
  const question = template && template.split("{amount}").join(amount ? amount.value : "");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    event.stopPropagation();
    return;
  }
  // Confirmed here: the server need not ask again (it asks only a browser without JavaScript).
  const ask = form.elements.namedItem("ask");
  if (question && ask) ask.value = "";
  // One click, one request: a second press while the first is in flight is ignored.
  if (form.dataset.sent === "1") {
    event.preventDefault();
    event.stopPropagation();
    return;
  }
  if (form.method.toLowerCase() === "post") {
    form.dataset.sent = "1";
  }
}, true);

// A panel htmx replaced brings fresh forms; a form htmx sent but kept may be sent again.
document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.target.closest && event.target.closest("form");
  if (form) delete form.dataset.sent;
});

document.addEventListener("click", (event) => {
  const link = event.target.closest("a.back");
  if (link && window.history.length > 1) {
    event.preventDefault();
    window.history.back();
  }
});

// "Copy" buttons (hidden without JavaScript, where the field can still be selected and copied by hand).
document.querySelectorAll("button[data-copy]").forEach((button) => {
  button.hidden = false;
  button.addEventListener("click", async () => {
    const field = document.querySelector(button.getAttribute("data-copy"));
    const said = document.getElementById("copied");
    if (!field) return;
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
      if (said) said.textContent = "已复制 · Copied";
    } catch (_) {
      if (said) said.textContent = "已选中，请按 Ctrl+C 复制 · Selected: press Ctrl+C to copy";
    }
  });
});
