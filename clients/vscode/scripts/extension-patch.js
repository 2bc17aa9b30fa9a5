#!/usr/bin/env node
// The changes INTEGRATION.md asks of the extension's own code, as one unified diff for its maintainer to
// review and apply (`git apply` or `patch -p1` in the extension's folder). Nothing here is written to the
// extension: each edit finds its place by a line of the extension's interface (a signature, an import, a
// property) and says so when it cannot; an edit already made is left out, so a second run prints nothing.
//
// usage: node extension-patch.js EXTENSION_DIR      (prints the diff on stdout, problems on stderr)
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const MARK = 'Learning Buddy Pay';

/** A file's text as lines, editable by anchors; `nl` is kept as the file had it. */
class Lines {
  constructor(text) {
    this.nl = text.includes('\r\n') ? '\r\n' : '\n';
    this.lines = text.split(/\r?\n/);
  }
  text() { return this.lines.join(this.nl); }
  /** Index of the first line from `from` that `test` (RegExp or string) matches; throws with `what` if none. */
  find(test, what, from = 0) {
    for (let i = from; i < this.lines.length; i += 1) {
      const line = this.lines[i];
      if (typeof test === 'string' ? line.includes(test) : test.test(line)) return i;
    }
    throw new Error(`cannot find ${what}`);
  }
  indent(i) { return /^\s*/.exec(this.lines[i])[0]; }
  insert(at, ...added) { this.lines.splice(at, 0, ...added); }
  /** The index of the line closing the block that opens on line `start` (braces counted outside strings). */
  blockEnd(start, what) {
    let depth = 0;
    let opened = false;
    for (let i = start; i < this.lines.length; i += 1) {
      const code = this.lines[i].replace(/'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`|\/\/.*$/g, '');
      for (const ch of code) {
        if (ch === '{') { depth += 1; opened = true; }
        if (ch === '}') depth -= 1;
      }
      if (opened && depth === 0) return i;
    }
    throw new Error(`cannot find the end of ${what}`);
  }
}

/** The edits, one list per file of the extension (paths as in terminail/learning-buddy, learning-primer-buddy/). */
const EDITS = {
  'src/extension.ts': [
    function wiringCall(f) {
      if (f.lines.some((l) => l.includes('wireLearningBuddyPay('))) return false;
      const lastImport = f.lines.reduce((at, l, i) => (/^import .* from '.*';\s*$/.test(l) ? i : at), -1);
      if (lastImport < 0) throw new Error('cannot find the imports');
      f.insert(lastImport + 1, "import { wireLearningBuddyPay } from './lbpayWiring';");
      const at = f.find(/=\s*new CourseContentProtectionManager\(context\);/, 'where activate() creates CourseContentProtectionManager');
      const name = /(?:const|let)\s+(\w+)\s*=/.exec(f.lines[at])[1];
      const ind = f.indent(at);
      f.insert(at + 1,
        `${ind}// ${MARK}: buy with WeChat Pay, "My courses", the course files, the mail's activation link.`,
        `${ind}wireLearningBuddyPay(context, ${name});`);
      return true;
    },
  ],

  'src/license/types.ts': [
    function keepFacts(f) {
      if (f.lines.some((l) => l.includes(MARK))) return false;
      const start = f.find(/interface LicenseInfo\b/, 'interface LicenseInfo');
      const at = f.find(/^\s*contentPermissions\??:/, 'LicenseInfo.contentPermissions', start);
      const ind = f.indent(at);
      f.insert(at + 1,
        `${ind}// ${MARK}: what the license says of itself, so that access is decided per course.`,
        `${ind}courseId?: string;`,
        `${ind}plan?: string;`,
        `${ind}kid?: string;`,
        `${ind}typ?: string;`,
        `${ind}orderId?: string;`);
      return true;
    },
  ],

  'src/courseContentProviderClient.ts': [
    function ourServer(f) {
      if (f.lines.some((l) => l.includes('PROVIDER_URL'))) return false;
      const imp = f.find(/^import \* as https from 'https';/, "import * as https from 'https'");
      f.insert(imp + 1, "import * as http from 'http';", "import { PROVIDER_URL } from './lbpayWiring';");
      const at = f.find(/^\s*this\.providerBaseUrl\s*=\s*.*;\s*$/, 'the providerBaseUrl assignment');
      const ind = f.indent(at);
      f.lines.splice(at, 1,
        `${ind}// ${MARK}: the course server's /provider (LBPAY_SERVER in src/lbpayWiring.ts).`,
        `${ind}this.providerBaseUrl = PROVIDER_URL;`);
      const req = f.find(/^\s*const req = https\.request\(/, 'the https.request in makeRequest');
      const rind = f.indent(req);
      f.lines.splice(req, 1,
        `${rind}// ${MARK}: plain http only for a server on this machine (a test's); https for any other.`,
        `${rind}const local = urlObj.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(urlObj.hostname);`,
        `${rind}const send = (local ? http.request : https.request) as typeof https.request;`,
        f.lines[req].replace('https.request(', 'send('));
      return true;
    },
    function keyInHeader(f) {
      if (f.lines.some((l) => l.includes('/licenses`'))) return false;
      const method = f.find(/public async verifyLicense\(/, 'CourseContentProviderClient.verifyLicense');
      const url = f.find(/\/licenses\/\$\{licenseKey\}`/, 'the /licenses/${licenseKey} URL', method);
      const ind = f.indent(url);
      f.lines.splice(url, 1,
        `${ind}// ${MARK}: the key goes in a header, never in a URL (a URL ends up in request logs).`,
        f.lines[url].replace('/licenses/${licenseKey}`', '/licenses`'));
      const course = f.find(/'X-Course-Id':\s*courseId,/, 'the X-Course-Id header of verifyLicense', url);
      f.insert(course, `${f.indent(course)}'Authorization': \`Bearer \${licenseKey}\`,`);
      // The server's own answer is kept apart from "could not ask": only the second may fall back offline.
      let answered = 0;
      for (let i = method; i <= f.blockEnd(method, 'verifyLicense'); i += 1) {
        const line = f.lines[i];
        if (/return \{ valid: false, error: 'License not found' \}/.test(line)) {
          f.lines[i] = line.replace('valid: false,', 'valid: false, status: 404,');
          answered += 1;
        } else if (/return \{ valid: false, error: `Verification failed: \$\{response\.status\}/.test(line)) {
          f.lines[i] = line.replace('valid: false,', 'valid: false, status: response.status,');
          answered += 1;
        }
      }
      if (answered !== 2) throw new Error('cannot find the two refusals of verifyLicense');
      return true;
    },
  ],

  'src/courseContentProtectionManager.ts': [
    function imports(f) {
      if (f.lines.some((l) => l.includes("from './lbpayWiring'"))) return false;
      const at = f.find(/^import \{ LicenseInfo \} from '\.\/license\/types';/, 'the LicenseInfo import');
      f.insert(at + 1, "import { checkLicenseOffline, licenseFacts, shareWithKit } from './lbpayWiring';");
      return true;
    },
    function addLicense(f) {
      if (f.lines.some((l) => l.includes('licenseKey = licenseKey.trim();'))) return false;
      const at = f.find(/public async addLicense\(licenseKey: string\): Promise<boolean> \{/, 'addLicense(licenseKey: string)');
      const ind = f.indent(at) + '    ';
      f.lines[at] = f.lines[at].replace('addLicense(licenseKey: string)', 'addLicense(licenseKey: string, courseId?: string)');
      f.insert(at + 1,
        `${ind}// ${MARK}: a key pasted with a space or a line break around it is the same key.`,
        `${ind}licenseKey = licenseKey.trim();`);
      const ask = f.find(/this\.courseContentProvider\.verifyLicense\(licenseKey\)/, 'the call of verifyLicense', at);
      f.lines[ask] = f.lines[ask].replace('verifyLicense(licenseKey)', 'verifyLicense(licenseKey, courseId)');
      const perms = f.find(/^\s*contentPermissions: licenseData\.content_permissions \|\| \['all_chapters'\]\s*$/,
        'the contentPermissions of the verified license', at);
      const pind = f.indent(perms);
      f.lines[perms] = f.lines[perms].replace(/\s*$/, ',');
      f.insert(perms + 1, `${pind}// ${MARK}: keep the course, plan, signing key, kind and order the license names.`,
        `${pind}...licenseFacts(licenseKey, licenseData),`);
      const valid = f.find(/if \(verificationResult\.valid\)/, 'the check of verificationResult.valid', at);
      const failed = f.find(/^\s*\} else \{\s*$/, 'the branch for a refused license', valid);
      const find = f.indent(failed) + '    ';
      f.insert(failed + 1,
        `${find}// ${MARK}: the server answered no (wrong course, revoked, unknown key), and that is final;`,
        `${find}// only a server that cannot be reached leaves the decision to the offline check below.`,
        `${find}if (verificationResult.status) {`,
        `${find}    return false;`,
        `${find}}`);
      // Every license it keeps opens the kit's files too (a key pasted in the extension's own page).
      let kept = 0;
      for (let i = at; i <= f.blockEnd(at, 'addLicense'); i += 1) {
        if (/^\s*this\.saveLicenses\(\);\s*$/.test(f.lines[i])) {
          f.insert(i + 1, `${f.indent(i)}void shareWithKit(licenseInfo.key); // ${MARK}: its files open with this key too`);
          kept += 1;
          i += 1;
        }
      }
      if (kept === 0) throw new Error('cannot find where addLicense saves a license');
      let calls = 0;
      for (let i = at; i <= f.blockEnd(at, 'addLicense'); i += 1) {
        if (f.lines[i].includes('this.verifyLicenseLocally(licenseKey)')) {
          f.lines[i] = f.lines[i].replace('verifyLicenseLocally(licenseKey)', 'verifyLicenseLocally(licenseKey, courseId)');
          calls += 1;
        }
      }
      if (calls === 0) throw new Error('cannot find the offline fallback of addLicense');
      return true;
    },
    function offlineCheck(f) {
      if (f.lines.some((l) => l.includes('checkLicenseOffline(licenseKey'))) return false;
      const at = f.find(/private async verifyLicenseLocally\(licenseKey: string\): Promise<LicenseInfo \| null> \{/,
        'verifyLicenseLocally(licenseKey: string)');
      const end = f.blockEnd(at, 'verifyLicenseLocally');
      const ind = f.indent(at);
      const body = ind + '    ';
      f.lines.splice(at, end - at + 1,
        f.lines[at].replace('verifyLicenseLocally(licenseKey: string)', 'verifyLicenseLocally(licenseKey: string, courseId?: string)'),
        `${body}// ${MARK}: the kit's offline check (the key chosen by kid, typ "license", course, expiry and the`,
        `${body}// signed revocation list) in place of one that took any signature of the shipped public key.`,
        `${body}const check = await checkLicenseOffline(licenseKey, courseId);`,
        `${body}if (!check || !check.ok || !check.payload) {`,
        `${body}    console.log('License refused offline:', check ? check.reason : 'Learning Buddy Pay is not configured');`,
        `${body}    return null;`,
        `${body}}`,
        `${body}const payload = check.payload;`,
        `${body}return {`,
        `${body}    id: payload.id,`,
        `${body}    key: licenseKey,`,
        `${body}    createdAt: new Date(String(payload.createdAt)),`,
        `${body}    expiresAt: new Date(payload.expiresAt),`,
        `${body}    contentPermissions: Array.isArray(payload.contentPermissions) ? payload.contentPermissions : ['all_chapters'],`,
        `${body}    ...licenseFacts(licenseKey),`,
        `${body}};`,
        `${ind}}`);
      return true;
    },
    function recheck(f) {
      if (f.lines.some((l) => l.includes('recheckStoredLicenses('))) return false;
      const method = f.find(/public removeLicense\(/, 'removeLicense');
      let at = method;
      while (at > 0 && !/^\s*\/\*\*/.test(f.lines[at])) at -= 1;
      if (method - at > 8) at = method;
      const ind = f.indent(method);
      const b = ind + '    ';
      f.insert(at,
        `${ind}/**`,
        `${ind} * ${MARK}: check every stored license again (at start-up) and drop those that no longer verify:`,
        `${ind} * expired, revoked, or not signed by the shipped keys. Kept while the kit cannot tell (not configured).`,
        `${ind} * @returns The ids of the licenses dropped`,
        `${ind} */`,
        `${ind}public async recheckStoredLicenses(): Promise<string[]> {`,
        `${b}const dropped: string[] = [];`,
        `${b}for (const license of Array.from(this.validLicenses.values())) {`,
        `${b}    const check = await checkLicenseOffline(license.key, license.courseId);`,
        `${b}    if (check && ['invalid', 'expired', 'revoked', 'wrong_course'].includes(check.status)) {`,
        `${b}        this.validLicenses.delete(license.id);`,
        `${b}        dropped.push(license.id);`,
        `${b}    }`,
        `${b}}`,
        `${b}if (dropped.length > 0) {`,
        `${b}    this.saveLicenses();`,
        `${b}}`,
        `${b}return dropped;`,
        `${ind}}`,
        '');
      return true;
    },
  ],
};

function main() {
  const ext = process.argv[2];
  if (!ext || !fs.existsSync(path.join(ext, 'package.json'))) {
    process.stderr.write('usage: extension-patch.js EXTENSION_DIR (the folder with package.json and src/)\n');
    process.exit(2);
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'lbpay-patch-'));
  const problems = [];
  let diff = '';
  try {
    for (const [file, edits] of Object.entries(EDITS)) {
      const full = path.join(ext, file);
      if (!fs.existsSync(full)) {
        problems.push(`${file}: missing, so its changes are left to you (INTEGRATION.md, step 5)`);
        continue;
      }
      const before = fs.readFileSync(full, 'utf8');
      const lines = new Lines(before);
      for (const edit of edits) {
        const saved = lines.lines.slice();
        try {
          edit(lines);
        } catch (err) {
          lines.lines = saved;
          problems.push(`${file}: ${edit.name}: ${err.message}; make this change by hand (INTEGRATION.md, step 5)`);
        }
      }
      const after = lines.text();
      if (after === before) continue;
      const a = path.join(work, 'a');
      const b = path.join(work, 'b');
      fs.mkdirSync(a, { recursive: true });
      fs.mkdirSync(b, { recursive: true });
      fs.writeFileSync(path.join(a, 'f'), before);
      fs.writeFileSync(path.join(b, 'f'), after);
      const done = spawnSync('diff', ['-u', '--label', `a/${file}`, '--label', `b/${file}`, path.join(a, 'f'), path.join(b, 'f')],
        { encoding: 'utf8' });
      if (done.status !== 1) throw new Error(`diff exited ${done.status}: ${done.stderr}`);
      diff += done.stdout;
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write(diff);
  for (const problem of problems) process.stderr.write(`apply.sh --print-patch: ${problem}\n`);
  process.exit(problems.length ? 1 : 0);
}

main();
