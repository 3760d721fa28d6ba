// `label-placement` in JavaScript: an object goes to the targets whose labels match a
// Kubernetes label selector, from the object's annotation `sync.ferry.dev/placement`, else
// the configured `default`; workspace rules bound where a workspace's objects may go, and
// `count`/`spreadBy` pick a stable subset by rendezvous hashing. The same behaviour and
// golden cases as the Rust plugin (plugins/label-placement, whose docs explain each choice).
import { Failed, InvalidConfig, InvalidInput, definePlugin } from 'ferry-plugin';
import { Selector } from './selector.js';
import { FREE, bound, parseRule } from './workspace-rules.js';

const ANNOTATION = 'sync.ferry.dev/placement';
const KEYS = ['default', 'count', 'spreadBy', 'workspaces', 'unknownWorkspace'];
const MASK = (1n << 64n) - 1n;

function selectorOr(text, what) {
  try {
    return Selector.parse(text);
  } catch (e) {
    throw new InvalidConfig(`\`${what}\` selector: ${e.message}`);
  }
}

// The configuration, parsed and checked.
function settings(raw) {
  raw = raw === null ? {} : raw;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new InvalidConfig('the configuration must be a mapping');
  const unknown = Object.keys(raw).filter((k) => !KEYS.includes(k));
  if (unknown.length) throw new InvalidConfig(`unknown field \`${unknown.sort()[0]}\``);
  const s = { default: raw.default ?? null, count: raw.count ?? null, spreadBy: raw.spreadBy ?? null };
  if (s.default !== null) selectorOr(s.default, 'default');
  if (s.count !== null && (!Number.isInteger(s.count) || s.count < 0)) throw new InvalidConfig('`count` must be a whole number');
  if (s.count === 0) throw new InvalidConfig('`count` must be at least 1');
  if (s.spreadBy !== null && s.count === null) throw new InvalidConfig('`spreadBy` needs `count`');
  s.rules = (raw.workspaces || []).map(parseRule);
  s.unknown = raw.unknownWorkspace == null ? null : selectorOr(raw.unknownWorkspace, 'unknownWorkspace');
  if (s.unknown && s.rules.length === 0) throw new InvalidConfig('`unknownWorkspace` needs `workspaces`');
  return s;
}

// FNV-1a over identity, a zero byte and the target name, then one xorshift-multiply round:
// the same 64-bit weights as the Rust plugin, so both place identically.
function weight(identity, target) {
  let h = 0xcbf29ce484222325n;
  const bytes = [...new TextEncoder().encode(identity), 0, ...new TextEncoder().encode(target)];
  for (const byte of bytes) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & MASK;
  }
  h ^= h >> 33n;
  h = (h * 0xff51afd7ed558ccdn) & MASK;
  return h ^ (h >> 33n);
}

function choose(context, object, candidates, count, spreadBy) {
  const name = (object.metadata && object.metadata.name) || '';
  const identity = `${context.workspace.logicalCluster}/${context.namespace}/${name}`;
  const weighted = candidates.map((t) => ({ t, w: weight(identity, t.name) }));
  weighted.sort((a, b) => (a.w === b.w ? (a.t.name < b.t.name ? -1 : 1) : a.w > b.w ? -1 : 1));
  const sorted = weighted.map((x) => x.t);
  const chosen = [];
  if (spreadBy !== null) {
    const seen = [];
    for (const t of sorted) {
      const v = t.label(spreadBy);
      if (chosen.length < count && !seen.includes(v)) {
        seen.push(v);
        chosen.push(t);
      }
    }
  }
  for (const t of sorted) {
    if (chosen.length < count && !chosen.some((c) => c.name === t.name)) chosen.push(t);
  }
  return chosen.map((t) => t.name).sort();
}

export const { config, placement, transform, status, dependencies } = definePlugin({
  validate(raw) {
    settings(raw);
  },

  place(raw, context, object, targets) {
    const s = settings(raw);
    const text = object.metadata && object.metadata.annotations && object.metadata.annotations[ANNOTATION];
    let annotation = null;
    if (typeof text === 'string') {
      try {
        annotation = Selector.parse(text);
      } catch (e) {
        throw new InvalidInput(`annotation ${ANNOTATION}=${JSON.stringify(text)}: ${e.message}`);
      }
    }
    const workspace = context.workspace;
    let within;
    try {
      within = bound(s.rules, s.unknown, workspace.path, workspace.label);
    } catch (e) {
      throw new Failed(e.message);
    }
    let selectors;
    if (within === FREE) {
      const chosen = annotation || (s.default === null ? null : Selector.parse(s.default));
      // No annotation, rule or default: nowhere, never everywhere.
      if (!chosen) return [];
      selectors = [chosen];
    } else {
      selectors = annotation ? [within, annotation] : [within];
    }
    const matching = targets.filter((t) => selectors.every((sel) => sel.matches(t.label)));
    if (s.count === null) return matching.map((t) => t.name);
    return choose(context, object, matching, s.count, s.spreadBy);
  },
});
