// A small stand-in for the `vscode` module: only what the kit touches, recording what it does.
'use strict';

const commands = new Map();
const panels = [];

class Emitter {
  constructor() { this.listeners = []; }
  event = (listener) => { this.listeners.push(listener); return { dispose: () => {} }; };
  fire(value) { for (const l of this.listeners) l(value); }
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

const vscode = {
  ViewColumn: { One: 1, Two: 2, Active: -1 },
  commands: {
    registerCommand(id, handler) {
      if (commands.has(id)) throw new Error(`command ${id} already registered`);
      commands.set(id, handler);
      return { dispose: () => commands.delete(id) };
    },
    async executeCommand(id, ...args) {
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
  },
};

/** An ExtensionContext with in-memory secret storage and global state. */
function fakeContext(extensionPath = '/nonexistent') {
  const secrets = new Map();
  const state = new Map();
  return {
    extensionPath,
    subscriptions: [],
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

module.exports = { vscode, commands, panels, fakeContext };
