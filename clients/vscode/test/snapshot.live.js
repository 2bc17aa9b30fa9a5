// What the fake VS Code holds after a learner bought a course and opened a paid file: every row of
// "My courses" as the kit's TreeItems describe it, and the file's bytes. tests/test_vscode_kit.py draws
// it as an HTML picture of VS Code (it is not VS Code's own rendering) for docs/screenshots/.
// usage: LBPAY_BASE_URL=… node test/snapshot.live.js OUT.json
'use strict';

const fs = require('node:fs');
const { kit, vscode, treeViews, fakeContext } = require('./harness.js');

async function main(out) {
  const BASE = process.env.LBPAY_BASE_URL;
  const pay = new kit.PayClient({ baseUrl: BASE });
  const keyring = kit.keyringFromServer(await pay.licenseKeys());
  const api = kit.registerWeChatPay(fakeContext(), { baseUrl: BASE, courseIds: ['cpp-primer-5th', 'rust-monthly'], keyring });
  const tree = treeViews.at(-1);
  const order = await pay.createOrder({ courseId: 'cpp-primer-5th' });
  const waiting = pay.waitForLicense(order);
  await fetch(`${BASE}/sandbox/control/orders/${order.out_trade_no}/pay`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"result":"success"}' });
  const done = await waiting;
  const activated = await api.enterLicenseKey(done.license.key);
  if (!activated.ok) throw new Error(JSON.stringify(activated));
  const rows = (await tree.rows()).map(({ level, node, item }) => ({
    level, id: node.id, label: item.label, description: item.description ?? null, icon: item.iconPath ? item.iconPath.id : null,
    contextValue: item.contextValue ?? null, folder: item.collapsibleState !== 0,
    command: item.command ? item.command.command : null }));
  const uri = vscode.Uri.parse('learningbuddy:/cpp-primer-5th/ch01/hello.cpp');
  const bytes = await vscode.workspace.fs.readFile(uri);
  fs.writeFileSync(out, JSON.stringify({ view: { id: tree.id, title: kit.COURSES_VIEW_TITLE }, rows,
    file: { uri: uri.toString(), text: Buffer.from(bytes).toString('utf8') } }, null, 1));
  api.dispose();
}

main(process.argv[2]).catch((err) => { console.error(err); process.exit(1); });
