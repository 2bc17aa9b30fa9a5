// A webview script shipped as is, never compiled.
(function () {
  const vscode = acquireVsCodeApi();
  document.addEventListener('click', () => vscode.postMessage({ command: 'clicked' }));
}());
