// The Learning Buddy Pay kit for a VS Code extension; see INTEGRATION.md.
export { registerWeChatPay } from './wechatPay';
export type { WeChatPay, WeChatPayOptions, WeChatPayPanel } from './wechatPay';
export {
  BUY_COMMAND, BUY_TITLE, PURCHASES_COMMAND, PURCHASES_TITLE, ENTER_KEY_COMMAND, ENTER_KEY_TITLE, OPEN_COURSE_COMMAND,
  OPEN_COURSE_TITLE, REFRESH_COURSES_COMMAND, REFRESH_COURSES_TITLE, COURSES_VIEW, COURSES_VIEW_TITLE, CONTENT_SCHEME,
  ACTIVATE_PATH, TREE_CONTEXT, kitContributes,
} from './contributes';
export {
  checkLicense, verifyLicense, verifyRevocations, loadKeyring, parseKeyring, keyringFromServer, keyId, keyDigest, isRevoked,
} from './license';
export type { Keyring, KeyringEntry, LicenseCheck, LicensePayload, LicenseStatus, RevocationList } from './license';
export { RevocationStore } from './revocations';
export { Purchases } from './purchases';
export { LicenseStore, LICENSES_SECRET } from './licenseStore';
export type { HeldLicense } from './licenseStore';
export { Activator, ACTIVATION_WORDS, activationUri, cleanKey, keyFromUri } from './activation';
export type { ActivationCode, ActivationResult } from './activation';
export { ContentFileSystem, contentUri, parseContentUri, isFree } from './contentFs';
export { CoursesTree } from './coursesTree';
export type { CourseNode } from './coursesTree';
export { ProviderClient, ProviderError, CONTENT_ERRORS, contentMessage } from './provider';
export { SERVER_ERRORS, KIT_ERRORS, ACTION_TEXT, describeError } from './errors';
export { pageHtml, PAGE_CSS } from './webview';
export { PayClient, PayApiError } from './payClient';
