// The console's few behaviours: confirm before a form that moves money or access, and a back link.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  // One click, one request: a second press while the first is in flight is ignored.
  if (form.dataset.sent === "1") {
    event.preventDefault();
    return;
  }
  if (form.method.toLowerCase() === "post") {
    form.dataset.sent = "1";
  }
});

document.addEventListener("click", (event) => {
  const link = event.target.closest("a.back");
  if (link && window.history.length > 1) {
    event.preventDefault();
    window.history.back();
  }
});
