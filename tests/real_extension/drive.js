// The headless drive of the real extension (learning-primer-buddy with the kit applied and compiled) in a
// fake `vscode`, against our server in sandbox mode: buy, pay, the license kept with its dates, a paid and a
// free file opened through the kit's file system, a wrong-course and a revoked key refused with a message,
// and a new machine restored by the link of the license mail. tests/real_extension/run.py starts it.
//
// env: EXT (the built extension), LBPAY_BASE_URL, MAILDIR (the SMTP server's received mails, one JSON each),
//      CONTENT_DIR (the server's course files), WORK (a folder for the machines), LBPAY_CREATOR and
//      LBPAY_REPO (tests/node/creator.py: revoke a license as the creator does).
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { promisify } = require('node:util');
const execFile = promisify(require('node:child_process').execFile);
const fake = require('./vscode.js');

fake.install();
const { EXT, LBPAY_BASE_URL: BASE, MAILDIR, CONTENT_DIR, WORK } = process.env;
const EXTENSION_ID = 'learning-primer-buddy-dev.learning-primer-buddy';
const COURSE = 'cpp-primer-5th';
const OTHER_COURSE = 'rust-monthly';
const PAID = 'ch07/Sales_data.h';
const BINARY = 'ch07/diagram.png';
const FREE = 'free/README.md';
const EMAIL = `learner-${process.pid}@example.com`;

let step = 0;
const out = (text) => process.stdout.write(`${text}\n`);
const say = (text) => out(`  ${text}`);
const title = (text) => out(`\n[drive ${++step}] ${text}`);

// The extension and the kit log to the console as in VS Code's extension host: kept in a file, shown on failure.
fs.mkdirSync(WORK, { recursive: true });
const consoleLog = path.join(WORK, 'extension-console.log');
for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
  console[level] = (...args) => fs.appendFileSync(consoleLog, `${level}: ${args.map((a) => (typeof a === 'string' ? a : require('node:util').inspect(a, { depth: 4 }))).join(' ')}\n`);
}

// --- the server, as a learner's phone and the creator touch it -------------------------------------------

async function api(method, url, body, headers = {}) {
  const response = await fetch(`${BASE}${url}`, {
    method, headers: { 'Content-Type': 'application/json', ...headers }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: response.status, json, text };
}

/** Pay an order on the sandbox's phone (the WeChat Pay simulator of sandbox mode). */
async function payInSandbox(outTradeNo) {
  const paid = await api('POST', `/sandbox/control/orders/${outTradeNo}/pay`, { result: 'success' });
  assert.ok(paid.status < 300, `sandbox pay: ${paid.status} ${paid.text}`);
}

/** A license bought outside the extension (another learner, another course): its key once fulfilled. */
async function boughtKey(courseId) {
  const placed = await api('POST', '/api/v1/orders', { course_id: courseId });
  assert.equal(placed.status, 201, placed.text);
  await payInSandbox(placed.json.out_trade_no);
  for (let i = 0; i < 150; i += 1) {
    const view = await api('GET', `/api/v1/orders/${placed.json.order_id}`, undefined, { Authorization: `Bearer ${placed.json.order_token}` });
    if (view.json && view.json.status === 'fulfilled' && view.json.license) return { key: view.json.license.key, order: placed.json };
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`order ${placed.json.order_id} was not fulfilled`);
}

async function creator(command, orderId) {
  const [python, ...args] = JSON.parse(process.env.LBPAY_CREATOR);
  const { stdout } = await execFile(python, [...args, command, orderId], { encoding: 'utf8', cwd: process.env.LBPAY_REPO });
  return stdout.trim();
}

/** The next mail to `to` with `needle` in it, among those not seen before `seen`. */
async function mailTo(to, needle, seen) {
  for (let i = 0; i < 900; i += 1) {
    const names = fs.readdirSync(MAILDIR).sort().filter((n) => !seen.has(n));
    for (const name of names) {
      const mail = JSON.parse(fs.readFileSync(path.join(MAILDIR, name), 'utf8'));
      if (mail.to.includes(to) && mail.text.includes(needle)) return mail;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no mail to ${to} with ${needle} within 90 s`);
}

// --- the extension on one machine -------------------------------------------------------------------------

let running = null;

/** Start VS Code on `machine` (a folder: its global state and secrets) and activate the compiled extension. */
async function boot(machine) {
  if (running) {
    for (const d of running.context.subscriptions) { try { d.dispose(); } catch { /* as VS Code: keep going */ } }
    if (running.module.deactivate) await running.module.deactivate();
  }
  fake.reset();
  for (const id of Object.keys(require.cache)) if (id.startsWith(path.join(EXT, 'out') + path.sep)) delete require.cache[id];
  const module = require(path.join(EXT, 'out', 'extension.js'));
  const context = fake.extensionContext(EXT, path.join(WORK, machine), EXTENSION_ID);
  const before = fake.shown.length;
  await module.activate(context);
  running = { module, context, machine };
  const errors = fake.shown.slice(before).filter((m) => m.level === 'error');
  return { context, errors };
}

const stored = (context) => context.globalState.get('validLicenses', []);
/** The extension's own CourseContentProtectionManager, from the modules the running extension loaded. */
const theirManager = (context) => new (require(path.join(EXT, 'out', 'courseContentProtectionManager.js')).CourseContentProtectionManager)(context);
const fileSystem = () => {
  const provider = fake.fileSystems.get('learningbuddy');
  assert.ok(provider, 'the kit registered no learningbuddy: file system');
  return provider;
};
const read = async (file) => Buffer.from(await fileSystem().readFile(fake.Uri.parse(`learningbuddy:/${COURSE}/${file}`)));
const onDisk = (file, course = COURSE) => fs.readFileSync(path.join(CONTENT_DIR, course, ...file.split('/')));
const lastMessage = (since) => fake.shown.slice(since).filter((m) => m.level === 'error' || m.level === 'info').at(-1);

async function enterKey(text) {
  const since = fake.shown.length;
  fake.answers.input.push(text);
  const outcome = await fake.vscode.commands.executeCommand('lbpay.enterLicenseKey');
  return { outcome, message: lastMessage(since) };
}

async function main() {
  title('activate the compiled extension on machine A (empty storage)');
  const a = await boot('machine-a');
  const registered = await fake.vscode.commands.getCommands();
  for (const c of ['learningPrimerBuddy.openCourseCatalog', 'learningPrimerBuddy.openLicenseManager', 'lbpay.buyWithWeChatPay',
    'lbpay.myPurchases', 'lbpay.enterLicenseKey', 'lbpay.openCourse']) assert.ok(registered.includes(c), `${c} is not registered`);
  assert.ok(fake.treeViews.has('learningPrimerBuddyView') && fake.treeViews.has('lbpay.courses'), 'both trees are registered');
  assert.equal(fake.uriHandlers.length, 1, 'one URI handler');
  fileSystem();
  assert.deepEqual(a.errors, [], 'activation showed no error');
  say(`${registered.length} commands (${registered.filter((c) => c.startsWith('lbpay.')).join(', ')}), trees `
    + `${[...fake.treeViews.keys()].join(' + ')}, learningbuddy: file system, URI handler`);

  title('buy in the panel, pay in the WeChat Pay sandbox');
  await fake.vscode.commands.executeCommand('lbpay.buyWithWeChatPay');
  const panel = fake.panels.at(-1);
  assert.ok(panel, 'the buy command opened no panel');
  panel.click({ type: 'ready' });
  const ready = await panel.waitFor((s) => s.phase === 'ready', 'the course and price');
  say(`panel: ${ready.course.title}, ¥${(ready.course.price_fen / 100).toFixed(2)}`);
  panel.click({ type: 'buy', email: EMAIL });
  const waiting = await panel.waitFor((s) => s.phase === 'waiting', 'the QR code');
  assert.match(waiting.order.qr_svg, /^<svg/);
  const token = (await a.context.secrets.get('lbpay.buyerToken'));
  assert.ok(token, 'the buyer token is in secret storage');
  const history = await api('GET', '/api/v1/me/orders', undefined, { Authorization: `Bearer ${token}` });
  const order = history.json.orders.find((o) => o.order_id === waiting.order.order_id);
  say(`order ${order.order_id} (${order.out_trade_no}), QR shown; paying in the sandbox`);
  await payInSandbox(order.out_trade_no);
  const licensed = await panel.waitFor((s) => s.phase === 'licensed', 'the license');
  say(`panel: licensed, license ${licensed.license.id}, expires ${licensed.license.expires_at}`);

  title('the license is stored by the extension with its dates, course, plan, kid and typ');
  let mine = [];
  for (let i = 0; i < 50 && mine.length === 0; i += 1) {
    mine = stored(a.context);
    if (!mine.length) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(mine.length, 1, `validLicenses: ${JSON.stringify(mine)}`);
  const kept = mine[0];
  const key = kept.key;
  const payload = JSON.parse(Buffer.from(key.split('|')[0], 'base64').toString('utf8'));
  assert.equal(kept.id, licensed.license.id);
  assert.ok(!Number.isNaN(Date.parse(kept.createdAt)) && !Number.isNaN(Date.parse(kept.expiresAt)), `dates: ${kept.createdAt} ${kept.expiresAt}`);
  // The server keeps whole seconds; the signed license has milliseconds.
  assert.ok(Math.abs(Date.parse(kept.expiresAt) - Date.parse(payload.expiresAt)) < 1000, `${kept.expiresAt} vs ${payload.expiresAt}`);
  assert.deepEqual([kept.courseId, kept.plan, kept.kid, kept.typ], [COURSE, payload.plan, payload.kid, 'license']);
  say(`validLicenses[0]: ${JSON.stringify({ ...kept, key: `${key.slice(0, 12)}…` })}`);
  const held = JSON.parse((await a.context.secrets.get('lbpay.licenses')) || '{}');
  assert.equal(held[COURSE], key, "the kit's own store holds the same key for the course");

  title('a paid file opens through the kit\'s learningbuddy: file system (text and binary)');
  const paid = await read(PAID);
  assert.ok(paid.equals(onDisk(PAID)), 'the paid text file is the server\'s');
  await fake.vscode.commands.executeCommand('vscode.open', fake.Uri.parse(`learningbuddy:/${COURSE}/${PAID}`));
  assert.equal(fake.opened.at(-1).text, onDisk(PAID).toString('utf8'));
  const binary = await read(BINARY);
  assert.ok(binary.equals(onDisk(BINARY)), 'the paid binary file is the server\'s, byte for byte');
  say(`learningbuddy:/${COURSE}/${PAID}: ${paid.length} bytes, "${paid.toString('utf8').split('\n')[0]}"`);
  say(`learningbuddy:/${COURSE}/${BINARY}: ${binary.length} bytes, identical`);
  const readme = await fake.vscode.commands.executeCommand('lbpay.openCourse', COURSE);
  say(`"Open course" opened ${readme ? readme.toString() : 'nothing'}`);

  title('on machine B (no license) a free file opens, a paid one is refused with a next step');
  const b = await boot('machine-b');
  assert.deepEqual(stored(b.context), []);
  const free = await read(FREE);
  assert.ok(free.equals(onDisk(FREE)), 'the free file is the server\'s');
  say(`learningbuddy:/${COURSE}/${FREE}: ${free.length} bytes without a license`);
  const since = fake.shown.length;
  const refused = await read(PAID).then(() => null, (err) => err);
  assert.ok(refused && refused.code === 'NoPermissions', `a paid file without a license: ${refused}`);
  for (let i = 0; i < 50 && !fake.shown.slice(since).some((m) => m.level === 'error'); i += 1) await new Promise((r) => setTimeout(r, 100));
  const told = fake.shown.slice(since).find((m) => m.level === 'error');
  assert.ok(told, 'the learner was told why');
  say(`refused (${refused.code}); shown: "${told.text}" [${told.items.join(' | ')}]`);

  title('back on machine A: a key for another course is refused with a message');
  await boot('machine-a');
  const other = await boughtKey(OTHER_COURSE);
  const wrong = await enterKey(`  ${other.key}\n`);
  assert.equal(wrong.outcome.code, 'wrong_course');
  assert.equal(wrong.message.level, 'error');
  say(`Enter license key (a ${OTHER_COURSE} key, pasted with spaces): ${wrong.outcome.code}: "${wrong.message.text}"`);
  const probe = fake.extensionContext(EXT, path.join(WORK, 'probe'), EXTENSION_ID);
  const theirs = theirManager(probe);
  assert.equal(await theirs.addLicense(other.key), false, 'the extension\'s own addLicense took a key for another course');
  say('the extension\'s own addLicense: false (the server said wrong_course, and no offline fallback overrules it)');
  assert.equal(await theirs.addLicense(`\n  ${key}  \n`), true, 'the extension\'s own addLicense refused its own key with spaces');
  assert.deepEqual(stored(probe).map((l) => l.key), [key], 'the key is kept trimmed');
  say('the extension\'s own addLicense of the bought key pasted with spaces and line breaks: true, kept trimmed');

  title('a revoked license is refused with a message');
  const refunded = await boughtKey(COURSE);
  say(`creator: ${await creator('revoke', refunded.order.order_id)}`);
  const revoked = await enterKey(refunded.key);
  assert.equal(revoked.outcome.code, 'revoked');
  assert.equal(revoked.message.level, 'error');
  say(`Enter license key (revoked): ${revoked.outcome.code}: "${revoked.message.text}"`);
  assert.equal(await theirs.addLicense(refunded.key), false, 'the extension\'s own addLicense took a revoked key');
  say('the extension\'s own addLicense: false');
  assert.deepEqual(stored(running.context).map((l) => l.id), [kept.id], 'machine A still holds only its own license');

  title('machine C (empty storage): "Already bought?" → e-mail → the mail\'s link restores the license');
  const c = await boot('machine-c');
  assert.deepEqual(stored(c.context), []);
  const link = `vscode://${EXTENSION_ID}/activate?key=`;
  // The purchase's own license mail (the order named the e-mail) came first; the restore asks for another.
  const bought = await mailTo(EMAIL, link, new Set());
  say(`the purchase's mail "${bought.subject}" carries the link; now a restore on a machine without anything`);
  const seen = new Set(fs.readdirSync(MAILDIR));
  await fake.vscode.commands.executeCommand('lbpay.buyWithWeChatPay');
  const restore = fake.panels.at(-1);
  restore.click({ type: 'ready' });
  await restore.waitFor((s) => s.phase === 'ready', 'the course');
  restore.click({ type: 'alreadyBought' });
  await restore.waitFor((s) => s.phase === 'restore', 'the e-mail form');
  restore.click({ type: 'resend', email: EMAIL });
  await restore.waitFor((s) => s.phase === 'restore' && s.restore && s.restore.sent, 'that the mail is on its way');
  const mail = await mailTo(EMAIL, link, seen);
  const href = mail.text.split(/\s+/).find((w) => w.startsWith(link));
  say(`mail "${mail.subject}" to ${mail.to}: ${href.slice(0, link.length + 16)}…`);
  const since2 = fake.shown.length;
  await fake.uriHandlers[0].handleUri(fake.Uri.parse(href));
  const welcome = lastMessage(since2);
  assert.equal(welcome.level, 'info', JSON.stringify(welcome));
  const restored = stored(c.context);
  assert.deepEqual(restored.map((l) => [l.id, l.courseId, l.expiresAt]), [[kept.id, COURSE, kept.expiresAt]]);
  assert.ok(!Number.isNaN(Date.parse(restored[0].createdAt)));
  say(`shown: "${welcome.text}"`);
  say(`validLicenses on machine C: ${restored[0].id} for ${restored[0].courseId}, ${restored[0].createdAt} → ${restored[0].expiresAt}`);
  assert.ok((await read(PAID)).equals(onDisk(PAID)), 'the paid file opens on machine C');
  say(`learningbuddy:/${COURSE}/${PAID} opens on machine C`);

  title('the re-check of stored licenses keeps a good one');
  const again = theirManager(running.context);
  assert.deepEqual(await again.recheckStoredLicenses(), []);
  assert.deepEqual(stored(running.context).map((l) => l.id), [kept.id]);
  say('recheckStoredLicenses() on machine C: nothing dropped (it verifies under the shipped keyring, for its course, not revoked)');

  title('machine E: a key taken in by the extension\'s own addLicense (its License Manager page) opens the kit\'s files');
  await boot('machine-e');
  const pasted = theirManager(running.context);
  assert.equal(await pasted.addLicense(` ${key}\n`), true);
  for (let i = 0; i < 100 && !JSON.parse((await running.context.secrets.get('lbpay.licenses')) || '{}')[COURSE]; i += 1) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok((await read(PAID)).equals(onDisk(PAID)), 'the paid file opens with the key the extension took in');
  say(`addLicense of the pasted key: true; learningbuddy:/${COURSE}/${PAID} opens on machine E`);

  title('a license stored before it was revoked is dropped at the next start');
  const machineD = path.join(WORK, 'machine-d');
  const early = fake.extensionContext(EXT, machineD, EXTENSION_ID);
  await early.globalState.update('validLicenses', [
    { ...kept, id: 'stale', key: refunded.key, courseId: COURSE }, kept]);
  await boot('machine-d');
  let left = stored(running.context);
  for (let i = 0; i < 100 && left.length !== 1; i += 1) {
    await new Promise((r) => setTimeout(r, 100));
    left = stored(running.context);
  }
  assert.deepEqual(left.map((l) => l.id), [kept.id], 'recheckStoredLicenses dropped the revoked one and kept the good one');
  say('validLicenses held the revoked key and a good one; after start-up only the good one is left');

  for (const d of running.context.subscriptions) { try { d.dispose(); } catch { /* done */ } }
  out('\nthe drive passed: buy → pay → stored with dates → paid and free files → wrong course and revoked refused → restored by the mail link → a revoked stored license dropped at start-up');
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`\nTHE DRIVE FAILED at step ${step}: ${err && err.stack ? err.stack : err}\n`);
  process.stderr.write(`last messages shown: ${JSON.stringify(fake.shown.slice(-5), null, 1)}\n`);
  process.exit(1);
});
