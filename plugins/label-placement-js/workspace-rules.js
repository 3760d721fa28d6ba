// Workspace rules bound where a workspace's objects may go; the first matching rule wins. A
// port of plugins/label-placement/src/workspace_rules.rs.
import { InvalidConfig } from 'ferry-plugin';
import { Selector } from './selector.js';
import { WorkspacePattern } from './workspace-pattern.js';

export const FREE = null;

export function parseRule(raw, index) {
  const where = `\`workspaces[${index}]\``;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new InvalidConfig(`${where} must be a mapping`);
  const unknown = Object.keys(raw).filter((k) => !['workspace', 'workspaceLabels', 'targets'].includes(k));
  if (unknown.length) throw new InvalidConfig(`${where}: unknown field \`${unknown.sort()[0]}\``);
  if (raw.targets === undefined) throw new InvalidConfig(`${where}: missing field \`targets\``);
  let rule;
  try {
    rule = {
      workspace: raw.workspace == null ? null : new WorkspacePattern(raw.workspace),
      workspaceLabels: raw.workspaceLabels == null ? null : Selector.parse(raw.workspaceLabels),
      targets: Selector.parse(raw.targets),
    };
  } catch (e) {
    throw new InvalidConfig(`${where}: ${e.message}`);
  }
  if (!rule.workspace && !rule.workspaceLabels) {
    throw new InvalidConfig(`${where} needs \`workspace\` or \`workspaceLabels\``);
  }
  return rule;
}

function ruleMatches(rule, path, label) {
  return (!rule.workspace || rule.workspace.matches(path)) && (!rule.workspaceLabels || rule.workspaceLabels.matches(label));
}

// The selector the object's workspace is bound to, FREE when no rule applies. Throws when the
// path is unknown and there is no `unknownWorkspace` bound.
export function bound(rules, unknown, path, label) {
  if (rules.length === 0) return FREE;
  if (path === null) {
    if (!unknown) {
      throw new Error(
        'the workspace path is unknown (the tenant has not accepted the permission claim on ' +
          'logicalclusters, or Ferry has not read it yet), so no `workspaces` rule can be ' +
          'judged; set `unknownWorkspace` to place such objects',
      );
    }
    return unknown;
  }
  const rule = rules.find((r) => ruleMatches(r, path, label));
  return rule ? rule.targets : FREE;
}
