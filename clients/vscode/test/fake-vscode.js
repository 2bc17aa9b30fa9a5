// A small stand-in for the `vscode` module: only what the kit touches, recording what it does.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const commands = new Map();
const panels = [];
/** Everything shown to the learner: notifications ({level, message, items}) and input boxes ({options}). */
const shown = [];
/** Answers the learner gives, in order: to input boxes (`inputs`) and to notification buttons (`choices`). */
const answers = { inputs: [], choices: [] };
const fileSystems = new Map();
const treeViews = [];
const uriHandlers = [];
const opened = [];
const clipboard = { text: '' };

class Emitter {
  constructor() { this.listeners = []; }
  event = (listener) => { this.listeners.push(listener); return { dispose: () => { this.listeners = this.listeners.filter((l) => l !== listener); } }; };
  fire(value) { for (const l of [...this.listeners]) l(value); }
  dispose() { this.listeners = []; }
}

class Disposable {
  constructor(fn) { this.fn = fn; }
  dispose() { if (this.fn) this.fn(); this.fn = null; }
}

/** VS Code's Uri as far as the kit uses it: components are kept percent-decoded, as VS Code hands them over. */
class Uri {
  constructor({ scheme = '', authority = '', path: p = '', query = '', fragment = '' }) {
    Object.assign(this, { scheme, authority, path: p, query, fragment });
  }
  static parse(text) {
    const m = /^([a-zA-Z][\w+.-]*):(?:\/\/([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$/.exec(text);
    if (!m) throw new Error(`not a URI: ${text}`);
    const decode = (s) => (s ? decodeURIComponent(s) : '');
    return new Uri({ scheme: m[1], authority: decode(m[2]), path: decode(m[3]), query: decode(m[4]), fragment: decode(m[5]) });
  }
  static from(components) { return new Uri(components); }
  static file(p) { return new Uri({ scheme: 'file', path: p }); }
  static joinPath(base, ...parts) { return base.with({ path: path.posix.join(base.path, ...parts) }); }
  get fsPath() { return this.path; }
  with(change) { return new Uri({ ...this, ...change }); }
  toString() {
    const enc = (s) => encodeURIComponent(s).replace(/%2F/g, '/');
    return `${this.scheme}:${this.authority ? `//${this.authority}` : ''}${enc(this.path)}${this.query ? `?${encodeURIComponent(this.query)}` : ''}`;
  }
}

class FileSystemError extends Error {
  constructor(message, code) { super(message); this.code = code; this.name = `${code} (FileSystemError)`; }
  static FileNotFound(m) { return new FileSystemError(String(m ?? ''), 'FileNotFound'); }
  static FileExists(m) { return new FileSystemError(String(m ?? ''), 'FileExists'); }
  static FileNotADirectory(m) { return new FileSystemError(String(m ?? ''), 'FileNotADirectory'); }
  static FileIsADirectory(m) { return new FileSystemError(String(m ?? ''), 'FileIsADirectory'); }
  static NoPermissions(m) { return new FileSystemError(String(m ?? ''), 'NoPermissions'); }
  static Unavailable(m) { return new FileSystemError(String(m ?? ''), 'Unavailable'); }
}

class ThemeIcon {
  constructor(id) { this.id = id; }
}
ThemeIcon.File = new ThemeIcon('file');
ThemeIcon.Folder = new ThemeIcon('folder');

class TreeItem {
  constructor(label, collapsibleState = 0) { this.label = label; this.collapsibleState = collapsibleState; }
}

/** A webview panel whose page is the test: it reads what the kit posts and posts clicks back. */
class FakePanel {
  constructor(viewType, title, column, options) {
    Object.assign(this, { viewType, title, column, options, disposed: false, revealed: 0 });
    this.posted = [];
    this.waiters = [];
    this.messages = new Emitter();
    this.disposal = new Emitter();
    const panel = this;
    this.webview = {
      html: '', cspSource: 'vscode-webview://fake',
      onDidReceiveMessage: (listener) => panel.messages.event(listener),
      postMessage: async (message) => {
        panel.posted.push(structuredClone(message));
        panel.waiters = panel.waiters.filter((w) => !w(message));
        return true;
      },
    };
  }
  onDidDispose(listener) { return this.disposal.event(listener); }
  reveal() { this.revealed += 1; }
  dispose() { if (!this.disposed) { this.disposed = true; this.disposal.fire(); } }
  /** Act as the page: send a message to the kit. */
  click(message) { this.messages.fire(message); }
  /** The first posted state (already posted or to come) that `predicate` accepts. */
  waitFor(predicate, timeoutMs = 30000) {
    const seen = this.posted.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no such state; last: ${JSON.stringify(this.posted.at(-1))}`)), timeoutMs);
      this.waiters.push((m) => (predicate(m) ? (clearTimeout(timer), resolve(structuredClone(m)), true) : false));
    });
  }
}

/** A tree view: the provider the kit gave, and what it was asked to reveal. */
class FakeTreeView {
  constructor(id, options) {
    Object.assign(this, { id, provider: options.treeDataProvider, revealed: [], disposed: false });
  }
  async reveal(node, options) { this.revealed.push({ node, options }); }
  dispose() { this.disposed = true; }
  /** The tree as VS Code would draw it: every row's TreeItem, children below their parent (to `depth`). */
  async rows(depth = 8, node = undefined, level = 0) {
    const out = [];
    for (const child of await this.provider.getChildren(node)) {
      const item = await this.provider.getTreeItem(child);
      out.push({ level, node: child, item });
      if (item.collapsibleState && level + 1 < depth) out.push(...await this.rows(depth, child, level + 1));
    }
    return out;
  }
}

function notify(level) {
  return async (message, ...items) => {
    const entry = { level, message, items: items.filter((i) => typeof i === 'string') };
    shown.push(entry);
    const choice = answers.choices.length ? answers.choices.shift() : undefined;
    return typeof choice === 'function' ? choice(entry) : choice;
  };
}

/** The file system provider registered for a URI's scheme, as VS Code would route a read. */
function providerFor(uri) {
  const provider = fileSystems.get(uri.scheme);
  if (!provider) throw new Error(`no file system provider for ${uri.scheme}:`);
  return provider;
}

const vscode = {
  ViewColumn: { One: 1, Two: 2, Active: -1 },
  TreeItemCollapsibleState: { None: 0, Collapsed: 1, Expanded: 2 },
  FileType: { Unknown: 0, File: 1, Directory: 2, SymbolicLink: 64 },
  FilePermission: { Readonly: 1 },
  FileChangeType: { Changed: 1, Created: 2, Deleted: 3 },
  EventEmitter: Emitter,
  Disposable, Uri, FileSystemError, ThemeIcon, TreeItem,
  commands: {
    registerCommand(id, handler) {
      if (commands.has(id)) throw new Error(`command ${id} already registered`);
      commands.set(id, handler);
      return { dispose: () => { if (commands.get(id) === handler) commands.delete(id); } };
    },
    async executeCommand(id, ...args) {
      if (id === 'vscode.open') {
        // What VS Code does to open a document: read it through the scheme's provider.
        const [uri] = args;
        const entry = { uri: uri.toString(), bytes: null, error: null };
        opened.push(entry);
        try {
          entry.bytes = await providerFor(uri).readFile(uri);
        } catch (err) {
          entry.error = err;
        }
        return undefined;
      }
      if (id.endsWith('.focus')) return undefined;
      const handler = commands.get(id);
      if (!handler) throw new Error(`command ${id} not found`);
      return handler(...args);
    },
  },
  window: {
    createWebviewPanel(...args) {
      const panel = new FakePanel(...args);
      panels.push(panel);
      return panel;
    },
    createTreeView(id, options) {
      const view = new FakeTreeView(id, options);
      treeViews.push(view);
      return view;
    },
    registerUriHandler(handler) {
      if (uriHandlers.length) throw new Error('a URI handler is already registered for this extension');
      uriHandlers.push(handler);
      return { dispose: () => { if (uriHandlers.includes(handler)) uriHandlers.splice(uriHandlers.indexOf(handler), 1); } };
    },
    async showInputBox(options) {
      shown.push({ level: 'input', options });
      return answers.inputs.length ? answers.inputs.shift() : undefined;
    },
    showErrorMessage: notify('error'),
    showWarningMessage: notify('warning'),
    showInformationMessage: notify('info'),
  },
  workspace: {
    registerFileSystemProvider(scheme, provider, options) {
      if (fileSystems.has(scheme)) throw new Error(`a provider for ${scheme} is already registered`);
      fileSystems.set(scheme, provider);
      provider.__options = options;
      return { dispose: () => { if (fileSystems.get(scheme) === provider) fileSystems.delete(scheme); } };
    },
    fs: {
      readFile: (uri) => providerFor(uri).readFile(uri),
      stat: (uri) => providerFor(uri).stat(uri),
      readDirectory: (uri) => providerFor(uri).readDirectory(uri),
    },
  },
  env: {
    clipboard: { writeText: async (t) => { clipboard.text = t; }, readText: async () => clipboard.text },
  },
};

/** An ExtensionContext with in-memory secret storage and global state, and a global storage folder on disk. */
function fakeContext(extensionPath = '/nonexistent', { storage } = {}) {
  const secrets = new Map();
  const state = new Map();
  const folder = storage ?? fs.mkdtempSync(path.join(os.tmpdir(), 'lbpay-storage-'));
  return {
    extensionPath,
    subscriptions: [],
    globalStorageUri: Uri.file(folder),
    extension: { id: 'learning-primer-buddy-dev.learning-primer-buddy',
      packageJSON: { publisher: 'learning-primer-buddy-dev', name: 'learning-primer-buddy' } },
    secrets: {
      get: async (k) => secrets.get(k),
      store: async (k, v) => { secrets.set(k, v); },
      delete: async (k) => { secrets.delete(k); },
      onDidChange: new Emitter().event,
    },
    globalState: {
      get: (k, fallback) => (state.has(k) ? state.get(k) : fallback),
      update: async (k, v) => { state.set(k, v); },
      keys: () => [...state.keys()],
    },
  };
}

module.exports = { vscode, commands, panels, shown, answers, fileSystems, treeViews, uriHandlers, opened, clipboard, fakeContext };
