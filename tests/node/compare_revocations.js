// Run the extension client's and the kit's revocation checks on one signed list and some license keys.
//   node compare_revocations.js < {"pem", "kid", "list", "now", "keys": [{"key", "id"}]}
// Prints {"extension": {"ok", "reason", "revoked": [bool per key]}, "kit": {...}}.
'use strict';

const extension = require(process.env.EXTENSION_JS);
const kit = require(process.env.KIT_LICENSE_JS);

let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const { pem, kid, list, now, keys } = JSON.parse(input);
  const at = new Date(now);
  const ext = extension.verifyRevocations(list, pem, { now: at });
  const keyring = kit.parseKeyring({ keys: [{ kid, pem, active: true }] });
  const checked = kit.verifyRevocations(list, keyring, { now: at });
  process.stdout.write(JSON.stringify({
    extension: { ok: ext.valid, reason: ext.reason,
      revoked: keys.map(({ key, id }) => ext.valid && extension.isRevoked(ext, key, id)) },
    kit: { ok: checked.ok, reason: checked.ok ? 'ok' : checked.reason,
      revoked: keys.map(({ key }) => checked.ok
        && kit.verifyLicense(key, keyring, { now: at, revocations: checked.list }).status === 'revoked') },
  }));
});
