// A developer tool beside src/: never part of the build.
'use strict';
const fs = require('fs');
const name = JSON.parse(fs.readFileSync('package.json', 'utf8')).name;
process.stdout.write(`${name}\n`);
