// The names a host extension and its package.json share with the kit. No `vscode` import here, so that
// apply.sh (or any build script) can read them with plain Node: require('./out/contributes.js').

export const BUY_COMMAND = 'lbpay.buyWithWeChatPay';
export const BUY_TITLE = 'Buy with WeChat Pay · 微信支付购买';
export const PURCHASES_COMMAND = 'lbpay.myPurchases';
export const PURCHASES_TITLE = 'My purchases · 我的购买';
export const ENTER_KEY_COMMAND = 'lbpay.enterLicenseKey';
export const ENTER_KEY_TITLE = 'Enter license key · 输入许可证密钥';
export const OPEN_COURSE_COMMAND = 'lbpay.openCourse';
export const OPEN_COURSE_TITLE = 'Open course · 打开课程';
export const REFRESH_COURSES_COMMAND = 'lbpay.refreshCourses';
export const REFRESH_COURSES_TITLE = 'Refresh · 刷新';
export const COURSES_VIEW = 'lbpay.courses';
export const COURSES_VIEW_TITLE = 'My courses · 我的课程';
/** The read-only file system of course files: `learningbuddy:/<course id>/<path in the course>`. */
export const CONTENT_SCHEME = 'learningbuddy';
/** The path of the link the license mail carries: vscode://<publisher>.<name>/activate?key=<url-encoded key>. */
export const ACTIVATE_PATH = '/activate';

/** What a tree item's `contextValue` is, for the menus below. */
export const TREE_CONTEXT = {
  course: 'lbpay.course',
  lockedCourse: 'lbpay.course.locked',
  folder: 'lbpay.folder',
  file: 'lbpay.file',
  locked: 'lbpay.locked',
} as const;

/**
 * The `contributes` entries the kit needs in the host's package.json: merge each list into the host's own
 * (commands, views under `viewsContainer`, menus). `viewsContainer` is the activity-bar container the view
 * goes into (the host's own, e.g. "learningPrimerBuddy", or one of the kit's).
 */
export function kitContributes(viewsContainer: string): {
  commands: { command: string; title: string; icon?: string }[];
  views: Record<string, { id: string; name: string }[]>;
  menus: Record<string, { command: string; when: string; group?: string }[]>;
  activationEvents: string[];
} {
  const inView = `view == ${COURSES_VIEW}`;
  return {
    commands: [
      { command: BUY_COMMAND, title: BUY_TITLE, icon: '$(credit-card)' },
      { command: PURCHASES_COMMAND, title: PURCHASES_TITLE },
      { command: ENTER_KEY_COMMAND, title: ENTER_KEY_TITLE, icon: '$(key)' },
      { command: OPEN_COURSE_COMMAND, title: OPEN_COURSE_TITLE, icon: '$(book)' },
      { command: REFRESH_COURSES_COMMAND, title: REFRESH_COURSES_TITLE, icon: '$(refresh)' },
    ],
    views: { [viewsContainer]: [{ id: COURSES_VIEW, name: COURSES_VIEW_TITLE }] },
    menus: {
      'view/title': [
        { command: REFRESH_COURSES_COMMAND, when: inView, group: 'navigation' },
        { command: ENTER_KEY_COMMAND, when: inView, group: 'navigation' },
      ],
      'view/item/context': [
        { command: BUY_COMMAND, when: `${inView} && viewItem =~ /^lbpay\\.(locked|course\\.locked)$/`, group: 'inline' },
        { command: OPEN_COURSE_COMMAND, when: `${inView} && viewItem =~ /^lbpay\\.course/`, group: 'inline' },
      ],
    },
    activationEvents: [`onView:${COURSES_VIEW}`, `onFileSystem:${CONTENT_SCHEME}`, 'onUri',
      `onCommand:${ENTER_KEY_COMMAND}`, `onCommand:${BUY_COMMAND}`],
  };
}
