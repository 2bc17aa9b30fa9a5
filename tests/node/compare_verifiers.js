// Run the extension client's verifyLicense (clients/extension/index.js) and the kit's checkLicense
// (clients/vscode/src/license.ts, compiled to KIT_LICENSE_JS) on the same licenses; print both verdicts.
//   node compare_verifiers.js < {"pem": "...", "kid": "...", "cases": [{"key", "courseId", "now"}]}
'use strict';

const extension = require(process.env.EXTENSION_JS);
const kit = require(process.env.KIT_LICENSE_JS);

let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const { pem, kid, cases } = JSON.parse(input);
  const keyring = kit.parseKeyring({ keys: [{ kid, pem, active: true }] });
  const verdicts = cases.map(({ key, courseId, now }) => {
    const at = new Date(now);
    const ext = extension.verifyLicense(key, pem, { courseId, now: at });
    const extWord = !ext.valid ? (/^for course /.test(ext.reason) ? 'wrong_course' : 'invalid')
      : (ext.expired ? 'expired' : 'valid');
    const kitWord = kit.checkLicense(key, keyring, { courseId, now: at }).status;
    return { extension: extWord, kit: kitWord, extensionReason: ext.reason };
  });
  process.stdout.write(JSON.stringify(verdicts));
});
