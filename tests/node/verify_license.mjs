// Verify a license exactly as the Learning Buddy extension does (learning-primer-buddy,
// src/courseContentProtectionManager.ts, its local check), so tests prove what the shipped
// extension accepts, flaws included: the text is used as given (no trimming), it must split
// into exactly two parts on "|", the signature is SHA256withRSA over the DATA string, and the
// license counts as expired only when `new Date(expiresAt) < new Date()` (so a license without
// expiresAt never expires there).
//
// usage: node verify_license.mjs <license-file> <public-key-pem-file>
// prints {"valid":bool,"expired":bool,"payload":{...}|null}; exits 0 only when the extension
// would accept the license, 1 otherwise, 2 on bad usage.
import crypto from 'node:crypto';
import fs from 'node:fs';

const [licenseFile, publicKeyFile] = process.argv.slice(2);
if (!licenseFile || !publicKeyFile) {
  process.stderr.write('usage: node verify_license.mjs <license-file> <public-key-pem-file>\n');
  process.exit(2);
}

const license = fs.readFileSync(licenseFile, 'utf8');
const publicKeyPem = fs.readFileSync(publicKeyFile, 'utf8');

let valid = false;
let expired = false;
let payload = null;
try {
  const parts = license.split('|');
  if (parts.length === 2) {
    const [data, signature] = parts;
    const verifier = crypto.createVerify('SHA256');
    verifier.update(data);
    verifier.end();
    if (verifier.verify(publicKeyPem, signature, 'base64')) {
      payload = JSON.parse(Buffer.from(data, 'base64').toString('utf8'));
      valid = true;
      expired = new Date(payload.expiresAt) < new Date();
    }
  }
} catch (err) {
  valid = false;
  payload = null;
  process.stderr.write(`verify failed: ${err.message}\n`);
}

process.stdout.write(JSON.stringify({ valid, expired, payload }) + '\n');
process.exit(valid && !expired ? 0 : 1);
