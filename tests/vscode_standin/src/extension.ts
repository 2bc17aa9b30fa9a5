// A stand-in extension written for our tests, in the real extension's shape: a public key in licence-keys/,
// licenses in global state through CourseContentProtectionManager, one command of its own.
import * as vscode from 'vscode';
import * as fs from 'fs';
import * as path from 'path';
import { CourseContentProtectionManager } from './courseContentProtectionManager';

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    const publicKey = fs.readFileSync(path.join(context.extensionPath, 'licence-keys', 'public-key.txt'), 'utf8');
    const protectionManager = new CourseContentProtectionManager(context);
    context.subscriptions.push(vscode.commands.registerCommand('standin.openLicenseManager', async () => {
        const key = await vscode.window.showInputBox({ prompt: 'License key' });
        if (key) await protectionManager.addLicense(key);
        return { publicKey: publicKey.length, licenses: protectionManager.getValidLicenses().length };
    }));
}

export function deactivate(): void {}
