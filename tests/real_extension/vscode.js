// A headless `vscode` module for running a whole compiled extension in Node: what learning-primer-buddy and
// the kit call, recorded so a drive can read the messages shown, answer input boxes, press buttons, open
// `learningbuddy:` files through the registered file system and follow an activation link.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const commands = new Map();
const fileSystems = new Map();
const contentProviders = new Map();
const uriHandlers = [];
const panels = [];
const treeViews = new Map();
const shown = [];   // every message: { level, text, items }
const opened = [];  // every document shown: { uri, text }
const answers = { input: [], pick: new Map() };

class Disposable {
  constructor(fn = () => {}) { this.fn = fn; }
  static from(...items) { return new Disposable(() => items.forEach((i) => i && i.dispose && i.dispose())); }
  dispose() { const fn = this.fn; this.fn = () => {}; fn(); }
}

class EventEmitter {
  constructor() {
    this.listeners = [];
    this.event = (listener) => {
      this.listeners.push(listener);
      return new Disposable(() => { this.listeners = this.listeners.filter((l) => l !== listener); });
    };
  }
  fire(value) { for (const l of this.listeners.slice()) l(value); }
  dispose() { this.listeners = []; }
}

function decode(text) {
  try { return decodeURIComponent(text); } catch { return text; }
}

class Uri {
  constructor(scheme, authority, p, query, fragment) {
    Object.assign(this, { scheme, authority: authority || '', path: p || '/', query: query || '', fragment: fragment || '' });
  }
  /** As VS Code parses: each component percent-decoded once. */
  static parse(text) {
    const m = /^([A-Za-z][A-Za-z0-9+.-]*):(?:\/\/([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$/.exec(text);
    if (!m) throw new Error(`not a URI: ${text}`);
    return new Uri(m[1], decode(m[2] || ''), decode(m[3] || ''), decode(m[4] || ''), decode(m[5] || ''));
  }
  static file(p) { return new Uri('file', '', path.resolve(p)); }
  static from({ scheme, authority, path: p, query, fragment }) { return new Uri(scheme, authority, p, query, fragment); }
  static joinPath(base, ...parts) { return base.with({ path: path.posix.join(base.path, ...parts) }); }
  get fsPath() { return this.path; }
  with(change) {
    return new Uri(change.scheme ?? this.scheme, change.authority ?? this.authority, change.path ?? this.path,
      change.query ?? this.query, change.fragment ?? this.fragment);
  }
  toString() {
    return `${this.scheme}:${this.authority || this.scheme === 'file' ? `//${this.authority}` : ''}${this.path}`
      + `${this.query ? `?${this.query}` : ''}${this.fragment ? `#${this.fragment}` : ''}`;
  }
  toJSON() { return this.toString(); }
}

class FileSystemError extends Error {
  constructor(message, code = 'Unknown') { super(String(message)); this.code = code; this.name = `FileSystemError (${code})`; }
  static FileNotFound(m) { return new FileSystemError(m ?? 'file not found', 'FileNotFound'); }
  static FileExists(m) { return new FileSystemError(m ?? 'file exists', 'FileExists'); }
  static FileNotADirectory(m) { return new FileSystemError(m ?? 'not a directory', 'FileNotADirectory'); }
  static FileIsADirectory(m) { return new FileSystemError(m ?? 'is a directory', 'FileIsADirectory'); }
  static NoPermissions(m) { return new FileSystemError(m ?? 'no permissions', 'NoPermissions'); }
  static Unavailable(m) { return new FileSystemError(m ?? 'unavailable', 'Unavailable'); }
}

class TreeItem {
  constructor(labelOrUri, collapsibleState = 0) {
    if (typeof labelOrUri === 'string' || (labelOrUri && labelOrUri.label)) this.label = labelOrUri; else this.resourceUri = labelOrUri;
    this.collapsibleState = collapsibleState;
  }
}

class ThemeIcon {
  constructor(id, color) { this.id = id; this.color = color; }
}
ThemeIcon.File = new ThemeIcon('file');
ThemeIcon.Folder = new ThemeIcon('folder');

class ThemeColor {
  constructor(id) { this.id = id; }
}

/** A webview panel whose page is the drive: it reads what the extension posts and clicks back. */
class Panel {
  constructor(viewType, title, column, options) {
    Object.assign(this, { viewType, title, column, options, disposed: false });
    this.posted = [];
    this.waiters = [];
    this.messages = new EventEmitter();
    this.disposal = new EventEmitter();
    const panel = this;
    this.webview = {
      html: '', cspSource: 'vscode-webview://headless', options: {},
      asWebviewUri: (uri) => uri,
      onDidReceiveMessage: (listener) => panel.messages.event(listener),
      postMessage: async (message) => {
        panel.posted.push(structuredClone(message));
        panel.waiters = panel.waiters.filter((w) => !w(message));
        return true;
      },
    };
    this.onDidChangeViewState = new EventEmitter().event;
  }
  onDidDispose(listener) { return this.disposal.event(listener); }
  reveal() {}
  dispose() { if (!this.disposed) { this.disposed = true; this.disposal.fire(); } }
  click(message) { this.messages.fire(message); }
  waitFor(predicate, what, timeoutMs = 60000) {
    const seen = this.posted.find(predicate);
    if (seen) return Promise.resolve(structuredClone(seen));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the panel never showed ${what}; last: ${JSON.stringify(this.posted.at(-1)).slice(0, 600)}`)), timeoutMs);
      this.waiters.push((m) => (predicate(m) ? (clearTimeout(timer), resolve(structuredClone(m)), true) : false));
    });
  }
}

function message(level) {
  return async (text, ...items) => {
    const buttons = items.filter((i) => typeof i === 'string' || (i && i.title));
    shown.push({ level, text: String(text), items: buttons.map((b) => (typeof b === 'string' ? b : b.title)) });
    for (const [pattern, answer] of answers.pick) if (pattern.test(String(text))) return answer;
    return undefined;
  };
}

/** The file system a URI belongs to: a registered provider, or the disk for file: URIs. */
async function readFile(uri) {
  const provider = fileSystems.get(uri.scheme);
  if (provider) return provider.readFile(uri);
  if (uri.scheme === 'file') return new Uint8Array(fs.readFileSync(uri.fsPath));
  const text = contentProviders.get(uri.scheme);
  if (text) return Buffer.from(await text.provideTextDocumentContent(uri, {}), 'utf8');
  throw FileSystemError.Unavailable(`no file system for ${uri.scheme}:`);
}

async function openTextDocument(arg) {
  if (arg && arg.scheme) {
    const bytes = await readFile(arg);
    return { uri: arg, getText: () => Buffer.from(bytes).toString('utf8'), bytes, languageId: path.extname(arg.path).slice(1) };
  }
  const content = (arg && arg.content) || '';
  return { uri: Uri.parse(`untitled:/${opened.length}`), getText: () => content, languageId: (arg && arg.language) || 'plaintext' };
}

const statusBarItems = [];
const vscode = {
  version: '1.105.0',
  Disposable, EventEmitter, Uri, FileSystemError, TreeItem, ThemeIcon, ThemeColor,
  TreeItemCollapsibleState: { None: 0, Collapsed: 1, Expanded: 2 },
  StatusBarAlignment: { Left: 1, Right: 2 },
  ViewColumn: { Active: -1, Beside: -2, One: 1, Two: 2, Three: 3 },
  FileType: { Unknown: 0, File: 1, Directory: 2, SymbolicLink: 64 },
  FilePermission: { Readonly: 1 },
  FileChangeType: { Changed: 1, Created: 2, Deleted: 3 },
  ProgressLocation: { SourceControl: 1, Window: 10, Notification: 15 },
  ConfigurationTarget: { Global: 1, Workspace: 2, WorkspaceFolder: 3 },
  commands: {
    registerCommand(id, handler) {
      if (commands.has(id)) throw new Error(`command '${id}' already exists`);
      commands.set(id, handler);
      return new Disposable(() => commands.delete(id));
    },
    async executeCommand(id, ...args) {
      if (id === 'vscode.open') {
        const document = await openTextDocument(args[0]);
        opened.push({ uri: args[0].toString(), text: document.getText() });
        return undefined;
      }
      if (id.endsWith('.focus') || id === 'setContext') return undefined;
      const handler = commands.get(id);
      if (!handler) throw new Error(`command '${id}' not found`);
      return handler(...args);
    },
    async getCommands() { return [...commands.keys()]; },
  },
  window: {
    showInformationMessage: message('info'),
    showWarningMessage: message('warning'),
    showErrorMessage: message('error'),
    async showInputBox(options) {
      shown.push({ level: 'input', text: (options && (options.prompt || options.title)) || '', items: [] });
      return answers.input.shift();
    },
    async showQuickPick() { return undefined; },
    async showOpenDialog() { return undefined; },
    async showTextDocument(document) {
      opened.push({ uri: document.uri.toString(), text: document.getText() });
      return { document };
    },
    activeTextEditor: undefined,
    createWebviewPanel(...args) {
      const panel = new Panel(...args);
      panels.push(panel);
      return panel;
    },
    createTreeView(id, options) {
      if (treeViews.has(id)) throw new Error(`tree view ${id} already exists`);
      const view = { id, ...options, onDidChangeSelection: new EventEmitter().event, onDidChangeVisibility: new EventEmitter().event,
        onDidExpandElement: new EventEmitter().event, onDidCollapseElement: new EventEmitter().event,
        reveal: async () => {}, dispose: () => treeViews.delete(id), visible: true, selection: [] };
      treeViews.set(id, view);
      return view;
    },
    registerTreeDataProvider(id, treeDataProvider) { return vscode.window.createTreeView(id, { treeDataProvider }); },
    registerWebviewViewProvider() { return new Disposable(); },
    registerUriHandler(handler) {
      uriHandlers.push(handler);
      return new Disposable(() => uriHandlers.splice(uriHandlers.indexOf(handler), 1));
    },
    createStatusBarItem(alignment, priority) {
      const item = { alignment, priority, text: '', tooltip: '', command: '', show() {}, hide() {}, dispose() {} };
      statusBarItems.push(item);
      return item;
    },
    createOutputChannel(name) {
      return { name, append() {}, appendLine() {}, show() {}, clear() {}, dispose() {} };
    },
    async withProgress(_options, task) { return task({ report() {} }, { isCancellationRequested: false, onCancellationRequested: () => new Disposable() }); },
  },
  workspace: {
    registerFileSystemProvider(scheme, provider) {
      if (fileSystems.has(scheme)) throw new Error(`a provider for ${scheme}: is already registered`);
      fileSystems.set(scheme, provider);
      return new Disposable(() => fileSystems.delete(scheme));
    },
    registerTextDocumentContentProvider(scheme, provider) {
      contentProviders.set(scheme, provider);
      return new Disposable(() => contentProviders.delete(scheme));
    },
    openTextDocument,
    fs: {
      readFile,
      async stat(uri) {
        const provider = fileSystems.get(uri.scheme);
        if (provider) return provider.stat(uri);
        const st = fs.statSync(uri.fsPath);
        return { type: st.isDirectory() ? 2 : 1, ctime: st.ctimeMs, mtime: st.mtimeMs, size: st.size };
      },
      async readDirectory(uri) { return fileSystems.get(uri.scheme).readDirectory(uri); },
      async writeFile(uri, bytes) { fs.mkdirSync(path.dirname(uri.fsPath), { recursive: true }); fs.writeFileSync(uri.fsPath, bytes); },
      async createDirectory(uri) { fs.mkdirSync(uri.fsPath, { recursive: true }); },
    },
    getConfiguration() { return { get: (_k, fallback) => fallback, update: async () => {}, has: () => false }; },
    workspaceFolders: undefined,
    onDidChangeConfiguration: new EventEmitter().event,
  },
  env: {
    uriScheme: 'vscode', language: 'en', appName: 'Visual Studio Code (headless)', machineId: 'headless',
    clipboard: { text: '', async writeText(t) { this.text = t; }, async readText() { return this.text; } },
    async openExternal() { return true; },
    asExternalUri: async (uri) => uri,
  },
  extensions: { all: [], getExtension: () => undefined },
};

/**
 * An ExtensionContext as VS Code gives one: global state kept as JSON (what VS Code writes to disk), secret
 * storage, and a global storage folder. Everything lives in `machine`, a folder: a new folder is a new machine.
 */
function extensionContext(extensionPath, machine, extensionId) {
  fs.mkdirSync(machine, { recursive: true });
  const stateFile = path.join(machine, 'globalState.json');
  const secretFile = path.join(machine, 'secrets.json');
  const read = (file) => (fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : {});
  const secretsChanged = new EventEmitter();
  return {
    extensionPath,
    extensionUri: Uri.file(extensionPath),
    extension: { id: extensionId, extensionPath, packageJSON: JSON.parse(fs.readFileSync(path.join(extensionPath, 'package.json'), 'utf8')) },
    globalStorageUri: Uri.file(path.join(machine, 'globalStorage')),
    globalStoragePath: path.join(machine, 'globalStorage'),
    storageUri: undefined,
    logUri: Uri.file(path.join(machine, 'logs')),
    extensionMode: 1,
    subscriptions: [],
    asAbsolutePath: (relative) => path.join(extensionPath, relative),
    globalState: {
      get: (key, fallback) => { const all = read(stateFile); return key in all ? all[key] : fallback; },
      async update(key, value) {
        const all = read(stateFile);
        if (value === undefined) delete all[key]; else all[key] = JSON.parse(JSON.stringify(value));
        fs.writeFileSync(stateFile, JSON.stringify(all, null, 1));
      },
      keys: () => Object.keys(read(stateFile)),
      setKeysForSync() {},
    },
    workspaceState: { get: (_k, fallback) => fallback, update: async () => {}, keys: () => [] },
    secrets: {
      get: async (key) => read(secretFile)[key],
      async store(key, value) { const all = read(secretFile); all[key] = value; fs.writeFileSync(secretFile, JSON.stringify(all)); secretsChanged.fire({ key }); },
      async delete(key) { const all = read(secretFile); delete all[key]; fs.writeFileSync(secretFile, JSON.stringify(all)); secretsChanged.fire({ key }); },
      onDidChange: secretsChanged.event,
    },
  };
}

/** Forget everything registered (between two "machines" in one process). */
function reset() {
  for (const map of [commands, fileSystems, contentProviders, treeViews]) map.clear();
  uriHandlers.length = 0;
  panels.length = 0;
}

/** Put this module in place of `vscode` for every require that follows. */
function install() {
  const Module = require('node:module');
  const load = Module._load;
  Module._load = function (request, parent, isMain) {
    if (request === 'vscode') return vscode;
    return load.call(this, request, parent, isMain);
  };
}

module.exports = { vscode, install, reset, extensionContext, commands, fileSystems, uriHandlers, panels, treeViews, shown, opened, answers, Uri };
