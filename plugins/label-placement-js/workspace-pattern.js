// Workspace path patterns: `:`-separated names, `*` inside a name matches any characters of
// one name, a `**` name matches any number of names (none included). A port of
// plugins/label-placement/src/workspace_pattern.rs.

const NAME = /^[a-z0-9\-*]+$/;

export class PatternError extends Error {}

export class WorkspacePattern {
  constructor(text) {
    const invalid = (why) => new PatternError(`workspace pattern ${JSON.stringify(text)}: ${why}`);
    this.text = text;
    this.segments = text.split(':').map((segment) => {
      if (segment === '') throw invalid("empty name between ':'");
      if (segment === '**') return null; // any depth
      if (segment.includes('**')) throw invalid('`**` must be a whole name');
      if (!NAME.test(segment)) {
        throw invalid("names are lower-case letters, digits and '-' (with '*' as a wildcard)");
      }
      return segment;
    });
  }

  matches(path) {
    return matchesFrom(this.segments, path.split(':'));
  }
}

function matchesFrom(segments, names) {
  if (segments.length === 0) return names.length === 0;
  const [first, ...rest] = segments;
  if (first === null) {
    for (let skip = 0; skip <= names.length; skip++) if (matchesFrom(rest, names.slice(skip))) return true;
    return false;
  }
  return names.length > 0 && glob(first, names[0]) && matchesFrom(rest, names.slice(1));
}

function glob(pattern, name) {
  if (pattern === '') return name === '';
  if (pattern[0] === '*') {
    for (let skip = 0; skip <= name.length; skip++) if (glob(pattern.slice(1), name.slice(skip))) return true;
    return false;
  }
  return name.length > 0 && name[0] === pattern[0] && glob(pattern.slice(1), name.slice(1));
}
