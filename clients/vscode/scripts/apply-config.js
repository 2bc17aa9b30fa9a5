#!/usr/bin/env node
// apply.sh's edits of the extension's package.json, tsconfig.json and src/lbpayWiring.ts. Every edit checks
// before it changes, so a second run changes nothing more.
//
// usage: node apply-config.js KIT_DIR EXTENSION_DIR SERVER COURSE   (SERVER and COURSE may be empty: keep)
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const [kitDir, ext, serverArg, courseArg] = process.argv.slice(2);
const done = [];

/** contributes.ts of the kit, read as JavaScript with the TypeScript the kit or the extension installed. */
function kitContributes() {
  const source = fs.readFileSync(path.join(kitDir, 'src', 'contributes.ts'), 'utf8');
  let ts;
  for (const dir of [kitDir, ext]) {
    try {
      ts = require(require.resolve('typescript', { paths: [dir] }));
      break;
    } catch { /* the next one */ }
  }
  if (!ts) throw new Error('TypeScript is needed to read the kit\'s contributes.ts: run npm ci in the extension first');
  const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020 } });
  const module = { exports: {} };
  new Function('module', 'exports', 'require', js.outputText)(module, module.exports, require);
  return module.exports;
}

function editJson(file, change) {
  const full = path.join(ext, file);
  const before = fs.readFileSync(full, 'utf8');
  const json = JSON.parse(before);
  change(json);
  const after = JSON.stringify(json, null, 2) + '\n';
  if (after !== before) {
    fs.writeFileSync(full, after);
    done.push(file);
  }
}

/** Add each entry that `same` finds no equal of. */
function merge(list, entries, same) {
  for (const entry of entries) if (!list.some((e) => same(e, entry))) list.push(entry);
}

const kit = kitContributes();
editJson('package.json', (pkg) => {
  const contributes = pkg.contributes = pkg.contributes || {};
  // "My courses" goes into the extension's own activity-bar container, or the Explorer when it has none.
  const containers = (contributes.viewsContainers && contributes.viewsContainers.activitybar) || [];
  const wanted = kit.kitContributes(containers.length ? containers[0].id : 'explorer');
  merge(contributes.commands = contributes.commands || [], wanted.commands, (a, b) => a.command === b.command);
  contributes.views = contributes.views || {};
  for (const [container, views] of Object.entries(wanted.views)) {
    merge(contributes.views[container] = contributes.views[container] || [], views, (a, b) => a.id === b.id);
  }
  contributes.menus = contributes.menus || {};
  // Not view/title: the extension's own tests hold every view/title entry to be for its view. The tree's
  // refresh and "Enter license key" stay in the command palette.
  for (const [where, items] of Object.entries(wanted.menus).filter(([where]) => where !== 'view/title')) {
    merge(contributes.menus[where] = contributes.menus[where] || [], items, (a, b) => a.command === b.command && a.when === b.when);
  }
  // VS Code derives the events of commands and views; onUri and onFileSystem it does not.
  merge(pkg.activationEvents = pkg.activationEvents || [], wanted.activationEvents.filter((e) => !e.startsWith('onCommand:')
    && !e.startsWith('onView:')), (a, b) => a === b);
  if (Array.isArray(pkg.files)) merge(pkg.files, ['licence-keys/keyring.json'], (a, b) => a === b);
  // The kit adds no runtime dependency; an empty list is only noise for vsce.
  if (pkg.dependencies && Object.keys(pkg.dependencies).length === 0) delete pkg.dependencies;
});

editJson('tsconfig.json', (tsconfig) => {
  const options = tsconfig.compilerOptions = tsconfig.compilerOptions || {};
  // The kit's API client is JavaScript (src/lbpay/payClient.js).
  options.allowJs = true;
  // Without `include`, tsc takes every .js of the folder (build scripts, jest.config.js, media/, its own out/).
  if (!tsconfig.include && !tsconfig.files) tsconfig.include = [options.rootDir || 'src'];
});

// src/lbpayWiring.ts from the kit's template, keeping the two constants the extension set.
const wiringFile = path.join(ext, 'src', 'lbpayWiring.ts');
const template = fs.readFileSync(path.join(kitDir, 'scripts', 'lbpayWiring.ts'), 'utf8');
const constant = (text, name) => {
  const found = new RegExp(`^export const ${name} = '([^'\\\\]*)';$`, 'm').exec(text);
  return found ? found[1] : null;
};
const held = fs.existsSync(wiringFile) ? fs.readFileSync(wiringFile, 'utf8') : '';
const server = serverArg || constant(held, 'LBPAY_SERVER') || constant(template, 'LBPAY_SERVER');
const course = courseArg || constant(held, 'COURSE_ID') || constant(template, 'COURSE_ID');
if (!/^(https:\/\/[A-Za-z0-9.-]+(:\d+)?|http:\/\/(127\.0\.0\.1|localhost)(:\d+)?)(\/[A-Za-z0-9._~/-]*[^/])?$/.test(server)) {
  throw new Error(`--server ${server}: an https:// address without a trailing slash (http:// only for 127.0.0.1 or localhost)`);
}
if (!/^[a-z0-9][a-z0-9_-]{0,63}$/.test(course)) throw new Error(`--course ${course}: a course id as lbpay courses list shows it`);
const wiring = template
  .replace(/^export const LBPAY_SERVER = '[^']*';$/m, `export const LBPAY_SERVER = '${server}';`)
  .replace(/^export const COURSE_ID = '[^']*';$/m, `export const COURSE_ID = '${course}';`);
if (wiring !== held) {
  fs.writeFileSync(wiringFile, wiring);
  done.push('src/lbpayWiring.ts');
}
process.stdout.write(JSON.stringify({ changed: done, server, course, unconfigured: server.endsWith('.invalid') }) + '\n');
