// The Learning Buddy Pay kit for a VS Code extension; see INTEGRATION.md.
export { registerWeChatPay, BUY_COMMAND, BUY_TITLE, PURCHASES_COMMAND, PURCHASES_TITLE } from './wechatPay';
export type { WeChatPay, WeChatPayOptions, WeChatPayPanel } from './wechatPay';
export {
  checkLicense, verifyLicense, verifyRevocations, loadKeyring, parseKeyring, keyringFromServer, keyId,
} from './license';
export type { Keyring, KeyringEntry, LicenseCheck, LicensePayload, LicenseStatus, RevocationList } from './license';
export { RevocationStore } from './revocations';
export { Purchases } from './purchases';
export { SERVER_ERRORS, KIT_ERRORS, ACTION_TEXT, describeError } from './errors';
export { pageHtml } from './webview';
export { PayClient, PayApiError } from './payClient';
