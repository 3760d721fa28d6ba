// Kubernetes label selector strings (`region=eu,tier!=gpu,env in (a,b),!legacy,zone`), the
// syntax `kubectl -l` accepts. The empty selector matches everything. A port of
// plugins/label-placement/src/selector.rs; the golden cases keep the two in step.

const KEY = /^[A-Za-z0-9\-_./]+$/;
const VALUE = /^[A-Za-z0-9\-_.]*$/;

export class SelectorError extends Error {}

export class Selector {
  constructor(requirements) {
    this.requirements = requirements;
  }

  static parse(text) {
    const requirements = [];
    for (const raw of splitTerms(text)) {
      const term = raw.trim();
      if (!term) {
        if (!text.trim()) continue;
        throw new SelectorError(`empty requirement in ${JSON.stringify(text)}`);
      }
      requirements.push(parseTerm(term));
    }
    return new Selector(requirements);
  }

  // Whether the labels looked up through `label(key)` (undefined when absent) satisfy it.
  matches(label) {
    return this.requirements.every(([op, key, values]) => {
      const have = label(key);
      switch (op) {
        case '=': return have === values[0];
        case '!=': return have !== values[0];
        case 'in': return have !== undefined && values.includes(have);
        case 'notin': return have === undefined || !values.includes(have);
        case 'exists': return have !== undefined;
        default: return have === undefined; // '!'
      }
    });
  }
}

function splitTerms(text) {
  const terms = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      terms.push(text.slice(start, i));
      start = i + 1;
    }
    if (depth < 0 || depth > 1) throw new SelectorError(`unbalanced parentheses in ${JSON.stringify(text)}`);
  }
  if (depth !== 0) throw new SelectorError(`unbalanced parentheses in ${JSON.stringify(text)}`);
  terms.push(text.slice(start));
  return terms;
}

function splitOnce(text, separator) {
  const at = text.indexOf(separator);
  return at < 0 ? null : [text.slice(0, at), text.slice(at + separator.length)];
}

function parseTerm(term) {
  if (term.startsWith('!') && !term.startsWith('!=')) return ['!', key(term.slice(1).trim()), []];
  let parts = splitOnce(term, '!=');
  if (parts) return ['!=', key(parts[0]), [value(parts[1])]];
  parts = splitOnce(term, '==') || splitOnce(term, '=');
  if (parts) return ['=', key(parts[0]), [value(parts[1])]];
  const match = /^(\S*)\s+([\s\S]*)$/.exec(term);
  if (!match) return ['exists', key(term), []];
  const k = key(match[1]);
  const rest = match[2].trim();
  let op;
  let set;
  if (rest.startsWith('notin')) [op, set] = ['notin', rest.slice(5)];
  else if (rest.startsWith('in')) [op, set] = ['in', rest.slice(2)];
  else throw new SelectorError(`expected \`in\` or \`notin\` in ${JSON.stringify(term)}`);
  set = set.trim();
  if (!set.startsWith('(') || !set.endsWith(')')) {
    throw new SelectorError(`expected a (value, ...) set in ${JSON.stringify(term)}`);
  }
  return [op, k, set.slice(1, -1).split(',').map(value)];
}

function key(text) {
  const k = text.trim();
  if (!k || k.length > 317 || !KEY.test(k)) throw new SelectorError(`invalid label key ${JSON.stringify(k)}`);
  return k;
}

function value(text) {
  const v = text.trim();
  if (v.length > 63 || !VALUE.test(v)) throw new SelectorError(`invalid label value ${JSON.stringify(v)}`);
  return v;
}
