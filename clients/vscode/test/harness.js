// Load the compiled kit with the fake `vscode` module in place of VS Code's.
'use strict';

const Module = require('node:module');
const path = require('node:path');
const fake = require('./fake-vscode.js');

const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (request === 'vscode') return fake.vscode;
  return load.call(this, request, parent, isMain);
};

const kit = require(path.join(__dirname, '..', 'out', 'index.js'));

module.exports = { kit, ...fake };
