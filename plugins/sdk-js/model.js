// The typed context a hook receives, built from the WIT records, with the lookups a plugin
// needs: `target.label('region')`, `context.workspace.label('tier')`.

function lookup(pairs) {
  const map = new Map(pairs);
  return (key) => (map.has(key) ? map.get(key) : undefined);
}

export function toTarget(t) {
  return { name: t.name, labels: Object.fromEntries(t.labels), label: lookup(t.labels) };
}

export function toContext(c) {
  const w = c.workspace;
  return {
    workspace: {
      logicalCluster: w.logicalCluster,
      path: w.path === undefined ? null : w.path,
      labels: Object.fromEntries(w.labels),
      annotations: Object.fromEntries(w.annotations),
      label: lookup(w.labels),
      annotation: lookup(w.annotations),
    },
    namespace: c.namespace,
    downstreamNamespace: c.downstreamNamespace,
  };
}

// `transformAll` outcome: no copy on this target.
export const SKIP = Object.freeze({ skip: true });

// A `dependencies` reference.
export function required(group, resource, name) {
  return { group, resource, name, optional: false };
}

export function optional(group, resource, name) {
  return { group, resource, name, optional: true };
}
