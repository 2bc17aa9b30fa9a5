// Verify a license the way the Learning Buddy extension does, so tests can prove
// that what the server issues is what the extension accepts.
//
// usage: node verify_license.mjs <license-file> <public-key-pem-file>
// prints {"valid":bool,"expired":bool,"payload":{...}|null}; exits 0 only when
// the signature is valid and the license has not expired, 1 otherwise, 2 on bad usage.
import crypto from 'node:crypto';
import fs from 'node:fs';

const [licenseFile, publicKeyFile] = process.argv.slice(2);
if (!licenseFile || !publicKeyFile) {
  process.stderr.write('usage: node verify_license.mjs <license-file> <public-key-pem-file>\n');
  process.exit(2);
}

const license = fs.readFileSync(licenseFile, 'utf8').trim();
const publicKeyPem = fs.readFileSync(publicKeyFile, 'utf8');

let valid = false;
let expired = false;
let payload = null;
try {
  const [data, signature] = license.split('|');
  // The extension's check: SHA256withRSA over the DATA string, signature in base64.
  valid = crypto.createVerify('SHA256').update(data).verify(publicKeyPem, signature, 'base64');
  if (valid) {
    payload = JSON.parse(Buffer.from(data, 'base64').toString('utf8'));
    // A missing expiresAt means the license never expires.
    if (payload.expiresAt !== undefined) {
      expired = Date.now() >= new Date(payload.expiresAt).getTime();
    }
  }
} catch (err) {
  valid = false;
  process.stderr.write(`verify failed: ${err.message}\n`);
}

process.stdout.write(JSON.stringify({ valid, expired, payload }) + '\n');
process.exit(valid && !expired ? 0 : 1);
