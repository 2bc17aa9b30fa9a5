// A stand-in extension written for our tests: it loads a public key from licence-keys/ and keeps
// pasted licenses in global state, the two things the kit's integration touches.
import * as vscode from 'vscode';
import * as fs from 'fs';
import * as path from 'path';

export function activate(context: vscode.ExtensionContext): void {
  const publicKey = fs.readFileSync(path.join(context.extensionPath, 'licence-keys', 'public-key.txt'), 'utf8');
  context.subscriptions.push(vscode.commands.registerCommand('standin.openLicenseManager', async () => {
    const key = await vscode.window.showInputBox({ prompt: 'License key' });
    if (key) await context.globalState.update('licenses', [key]);
    return publicKey.length;
  }));
}

export function deactivate(): void {}
