// Errors a hook throws: each becomes one case of the WIT `plugin-error` variant, with its
// message shown to the user. Any other thrown value becomes `failed`, naming its type (an
// escaped exception would trap and lose its message).

export class PluginError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }

  // The WIT variant value: `{ tag: 'invalid-input', val: 'message' }`.
  toWit() {
    return { tag: this.kind, val: this.message };
  }
}

export class InvalidConfig extends PluginError {
  constructor(message) { super('invalid-config', message); }
}

export class InvalidInput extends PluginError {
  constructor(message) { super('invalid-input', message); }
}

export class Unsupported extends PluginError {
  constructor(message) { super('unsupported', message); }
}

export class Failed extends PluginError {
  constructor(message) { super('failed', message); }
}

// Any thrown value as a `plugin-error`.
export function toPluginError(error) {
  if (error instanceof PluginError) return error.toWit();
  const name = error && error.name ? error.name : typeof error;
  const message = error && error.message !== undefined ? error.message : String(error);
  return { tag: 'failed', val: `${name}: ${message}` };
}
