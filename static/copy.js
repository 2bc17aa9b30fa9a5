// "Copy link" and "Copy button snippet" on the console's buy button page: copy the named field's text.
"use strict";
(function () {
  document.addEventListener("click", async (event) => {
    const button = event.target.closest && event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    try {
      await navigator.clipboard.writeText(source.value);
    } catch (e) {
      source.select();
      document.execCommand("copy");
    }
    const said = button.parentElement.querySelector(".copied") || button.closest("section").querySelector(".copied");
    if (said) said.textContent = "已复制 Copied";
    button.dataset.copied = "yes";
  });
})();
