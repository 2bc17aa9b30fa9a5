#!/bin/sh
# Put the WeChat Pay kit into a checkout of the Learning Buddy extension (learning-primer-buddy).
#
# usage: clients/vscode/apply.sh [--server URL] [--course ID] EXTENSION_DIR [KEYS_DIR]
#        clients/vscode/apply.sh --print-patch EXTENSION_DIR
#   EXTENSION_DIR  the extension's folder (its package.json, tsconfig.json and src/)
#   KEYS_DIR       what `lbpay keys export KEYS_DIR` wrote (licence-keys/public-key.txt and keyring.json)
#   --server URL   the Learning Buddy Pay server (https://...); kept from the last run when not given
#   --course ID    the course the extension sells; kept from the last run when not given
#   --print-patch  change nothing; print, as a unified diff to review and apply, the edits INTEGRATION.md
#                  asks of the extension's own code (`... --print-patch EXT | git -C EXT apply`)
#
# Does the mechanical part, the same on every run (a second run changes nothing more): the kit as
# src/lbpay/, src/lbpayWiring.ts, the kit's commands and view in package.json, tsconfig.json that
# compiles src/ only, the exported keys. Prints what remains (INTEGRATION.md explains each step).
set -eu

KIT=$(cd "$(dirname "$0")" && pwd)
SERVER=
COURSE=
PRINT_PATCH=
while [ $# -gt 0 ]; do
  case "$1" in
    --server) SERVER=${2:?--server needs a URL}; shift 2 ;;
    --course) COURSE=${2:?--course needs a course id}; shift 2 ;;
    --print-patch) PRINT_PATCH=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    --*) echo "apply.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
EXT=${1:?usage: apply.sh [--server URL] [--course ID] EXTENSION_DIR [KEYS_DIR] | apply.sh --print-patch EXTENSION_DIR}
KEYS=${2:-}
[ -f "$EXT/package.json" ] && [ -f "$EXT/tsconfig.json" ] && [ -d "$EXT/src" ] || {
  echo "apply.sh: $EXT has no package.json, tsconfig.json and src/" >&2; exit 2; }
command -v node >/dev/null || { echo "apply.sh: node is needed to edit package.json" >&2; exit 2; }

if [ -n "$PRINT_PATCH" ]; then
  exec node "$KIT/scripts/extension-patch.js" "$EXT"
fi

# 1. The kit's sources and the one API client, as src/lbpay/ (replaced whole: nothing stale stays).
rm -rf "$EXT/src/lbpay"
mkdir -p "$EXT/src/lbpay"
cp "$KIT"/src/*.ts "$EXT/src/lbpay/"
sh "$KIT/scripts/client.sh" "$KIT/../extension/index.js" "$EXT/src/lbpay/payClient.js"

# 2. package.json (commands, "My courses", onUri/onFileSystem, the keyring in `files`), tsconfig.json
#    (allowJs for payClient.js, `include` src/ so no other .js of the folder is compiled) and src/lbpayWiring.ts.
CONFIG=$(node "$KIT/scripts/apply-config.js" "$KIT" "$EXT" "$SERVER" "$COURSE")

# 3. Our public keys replace the extension's pair (whose private half is public in its repository).
if [ -n "$KEYS" ]; then
  for f in public-key.txt keyring.json; do
    [ -f "$KEYS/licence-keys/$f" ] || { echo "apply.sh: $KEYS/licence-keys/$f is missing (run lbpay keys export)" >&2; exit 2; }
  done
  mkdir -p "$EXT/licence-keys"
  cp "$KEYS/licence-keys/public-key.txt" "$KEYS/licence-keys/keyring.json" "$EXT/licence-keys/"
fi
rm -f "$EXT/licence-keys/private-key.txt"

value() { printf '%s' "$CONFIG" | node -e "process.stdout.write(String(JSON.parse(require('fs').readFileSync(0, 'utf8'))['$1']))"; }
cat <<DONE
Applied the WeChat Pay kit to $EXT:
  src/lbpay/            the kit (index.ts, wechatPay.ts, license.ts, ...) and payClient.js
  src/lbpayWiring.ts    server $(value server), course $(value course)
  package.json          the kit's commands, "My courses · 我的课程", onUri and onFileSystem
  tsconfig.json         allowJs, include src/ only
  licence-keys/         ${KEYS:+public-key.txt and keyring.json from $KEYS; }private-key.txt removed
Still by hand (clients/vscode/INTEGRATION.md):
  5. Review and apply the changes to your own code (the one call in activate(), trimmed keys, the facts a
     license names kept, no offline fallback after the server said no, stored licenses re-checked):
       $0 --print-patch $EXT | git -C $EXT apply
  6. "Purchase License" page: a button that runs lbpay.buyWithWeChatPay (optional).
  7. git rm licence-keys/private-key.txt and rotate: that key signed nothing of ours, trust nothing it signed.
  8. Build and check: npm ci && npx tsc -p . && npx tsc -p .; then npx jest (the tests that passed
     before pass) and npx @vscode/vsce ls
DONE
[ -n "$KEYS" ] || [ -f "$EXT/licence-keys/keyring.json" ] || \
  echo "  Keys: none yet, so buying says \"not configured\": run 'lbpay keys export DIR' on the server, then apply.sh again with DIR."
[ "$(value unconfigured)" = false ] || \
  echo "  Server: none yet, so buying says \"not configured\": run apply.sh again with --server https://<your server>."
