#!/bin/sh
# Put the WeChat Pay kit into a checkout of the Learning Buddy extension (learning-primer-buddy).
#
# usage: clients/vscode/apply.sh EXTENSION_DIR [KEYS_DIR]
#   EXTENSION_DIR  the extension's folder (its package.json, tsconfig.json and src/)
#   KEYS_DIR       what `lbpay keys export KEYS_DIR` wrote (licence-keys/public-key.txt and keyring.json)
#
# Does the mechanical part: copies the kit into src/lbpay/, adds its two commands to package.json,
# lets tsc take the kit's JavaScript client (allowJs), ships the exported keys and drops the
# extension's committed private key. Prints what remains by hand (INTEGRATION.md explains each step).
set -eu

KIT=$(cd "$(dirname "$0")" && pwd)
EXT=${1:?usage: apply.sh EXTENSION_DIR [KEYS_DIR]}
KEYS=${2:-}
[ -f "$EXT/package.json" ] && [ -d "$EXT/src" ] || { echo "apply.sh: $EXT has no package.json and src/" >&2; exit 2; }
command -v node >/dev/null || { echo "apply.sh: node is needed to edit package.json" >&2; exit 2; }

# 1. The kit's sources and the one API client, as src/lbpay/.
mkdir -p "$EXT/src/lbpay"
cp "$KIT"/src/*.ts "$EXT/src/lbpay/"
sh "$KIT/scripts/client.sh" "$KIT/../extension/index.js" "$EXT/src/lbpay/payClient.js"

# 2. package.json: the commands, and the keyring in the published files; tsconfig.json: allowJs.
node - "$EXT" <<'NODE'
const fs = require('fs');
const path = require('path');
const dir = process.argv[2];
const edit = (file, change) => {
  const full = path.join(dir, file);
  const json = JSON.parse(fs.readFileSync(full, 'utf8'));
  change(json);
  fs.writeFileSync(full, JSON.stringify(json, null, 2) + '\n');
};
edit('package.json', (pkg) => {
  pkg.contributes = pkg.contributes || {};
  const commands = pkg.contributes.commands = pkg.contributes.commands || [];
  for (const [command, title, icon] of [
    ['lbpay.buyWithWeChatPay', 'Buy with WeChat Pay · 微信支付购买', '$(credit-card)'],
    ['lbpay.myPurchases', 'My purchases · 我的购买', '$(history)'],
  ]) {
    if (!commands.some((c) => c.command === command)) commands.push({ command, title, icon });
  }
  if (Array.isArray(pkg.files) && !pkg.files.includes('licence-keys/keyring.json')) pkg.files.push('licence-keys/keyring.json');
  if (pkg.dependencies && Object.keys(pkg.dependencies).length === 0) delete pkg.dependencies;
});
edit('tsconfig.json', (ts) => {
  ts.compilerOptions = ts.compilerOptions || {};
  ts.compilerOptions.allowJs = true;
});
NODE

# 3. Our public keys replace the extension's pair (whose private half is public in its repository).
if [ -n "$KEYS" ]; then
  for f in public-key.txt keyring.json; do
    [ -f "$KEYS/licence-keys/$f" ] || { echo "apply.sh: $KEYS/licence-keys/$f is missing (run lbpay keys export)" >&2; exit 2; }
  done
  mkdir -p "$EXT/licence-keys"
  cp "$KEYS/licence-keys/public-key.txt" "$KEYS/licence-keys/keyring.json" "$EXT/licence-keys/"
fi
rm -f "$EXT/licence-keys/private-key.txt"

cat <<DONE
Applied the WeChat Pay kit to $EXT:
  src/lbpay/            the kit (index.ts, wechatPay.ts, license.ts, ...) and payClient.js
  package.json          commands lbpay.buyWithWeChatPay and lbpay.myPurchases
  tsconfig.json         allowJs (tsc compiles src/lbpay/payClient.js into out/)
  licence-keys/         ${KEYS:+public-key.txt and keyring.json from $KEYS; }private-key.txt removed
Still by hand (clients/vscode/INTEGRATION.md, steps 4-9):
  4. activate(): call registerWeChatPay(...) with your server, course and onLicense (step 4).
  5. "Purchase License" page: a button that runs lbpay.buyWithWeChatPay (step 5).
  6. addLicense(): trim the key and keep courseId, kid and typ of the payload (step 6).
  7. Every license check: verifyLicense with the keyring and the revocation list (step 7).
  8. courseContentProviderClient.ts: point providerBaseUrl at https://<your server>/provider (step 8).
  9. git rm licence-keys/private-key.txt and rotate: that key signed nothing of ours, trust nothing it signed.
${KEYS:+}$( [ -n "$KEYS" ] || echo "  Keys: run 'lbpay keys export DIR' on the server, then apply.sh again with DIR." )
DONE
