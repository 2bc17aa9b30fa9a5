#!/bin/sh
# Put the one Node API client (clients/extension/index.js) beside the kit as payClient.js: the kit is
# compiled with it, never a copy kept in git. The `@ts-check` line goes: the extension compiles with
# TypeScript 4.9 and no DOM library, which cannot check that file, only read its JSDoc types.
# usage: client.sh SOURCE_INDEX_JS DEST_PAYCLIENT_JS
set -eu
sed '/^\/\/ @ts-check$/d' "$1" > "$2.tmp"
mv "$2.tmp" "$2"
