// Ferry's guest SDK for JavaScript plugins (contract ferry:sync@0.2.0, world `plugin`).
//
//   import { definePlugin, InvalidInput, log } from 'ferry-plugin';
//   export const { config, placement, transform, status, dependencies } = definePlugin({
//     place(config, context, object, targets) {
//       return targets.filter((t) => t.label('region') === 'eu').map((t) => t.name);
//     },
//   });
//
// Objects arrive parsed (plain objects) and go back as objects; the configuration arrives
// parsed (`null` when none). Hooks a plugin does not define answer `unsupported`. Build with
// `ferry plugin build <dir>` (componentize-js); see docs/plugins.md.

import { InvalidConfig, InvalidInput, PluginError, Unsupported, toPluginError } from './errors.js';
import { SKIP, toContext, toTarget } from './model.js';
import * as log from './log.js';

export { Failed, InvalidConfig, InvalidInput, PluginError, Unsupported } from './errors.js';
export { SKIP, optional, required } from './model.js';
export { log };

function parse(text, what) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InvalidInput(`${what} is not JSON: ${e.message}`);
  }
}

// Runs a hook; every failure crosses as a `plugin-error`. componentize-js turns a thrown
// value into the `err` case of the hook's result: the value itself, or its `payload`
// when it has one, so the thrown object is both.
function guarded(run) {
  try {
    return run();
  } catch (e) {
    const wit = toPluginError(e);
    throw Object.assign(new Error(wit.val), { payload: wit, tag: wit.tag, val: wit.val });
  }
}

function defaultValidate(config) {
  if (config !== null) throw new InvalidConfig('this plugin takes no configuration');
}

// The default `transformAll`: `transform` per target, each on its own copy; an error there
// fails that target only, except `Unsupported`, which answers for all.
function perTarget(plugin) {
  return (config, context, object, targets) => {
    if (!plugin.transform) throw new Unsupported('this plugin does not transform objects');
    const outcomes = {};
    for (const target of targets) {
      try {
        const result = plugin.transform(config, context, structuredClone(object), target);
        outcomes[target.name] = result === null || result === undefined ? SKIP : result;
      } catch (e) {
        if (e instanceof Unsupported || !(e instanceof PluginError)) throw e;
        outcomes[target.name] = e;
      }
    }
    return outcomes;
  };
}

// The five exported interfaces for `plugin`, an object with any of `validate`, `place`,
// `transform`, `transformAll`, `aggregateStatus` and `dependencies`.
export function definePlugin(plugin) {
  const validate = plugin.validate || defaultValidate;
  const transformAll = plugin.transformAll || perTarget(plugin);
  let current = null;
  const unsupported = (what) => () => {
    throw new Unsupported(`this plugin does not ${what}`);
  };
  const place = plugin.place || unsupported('place objects');
  const aggregateStatus = plugin.aggregateStatus || unsupported('aggregate status');
  const dependencies = plugin.dependencies || unsupported('list dependencies');

  return {
    config: {
      configure(text) {
        guarded(() => {
          let parsed;
          try {
            parsed = JSON.parse(text);
          } catch (e) {
            throw new InvalidConfig(`configuration is not JSON: ${e.message}`);
          }
          validate(parsed);
          current = parsed;
        });
      },
    },
    placement: {
      place(context, object, targets) {
        return guarded(() =>
          place(current, toContext(context), parse(object, 'the object'), targets.map(toTarget)).map(String),
        );
      },
    },
    transform: {
      transform(context, object, targets) {
        return guarded(() => {
          const answers = transformAll(
            current,
            toContext(context),
            parse(object, 'the object'),
            targets.map(toTarget),
          );
          return Object.entries(answers).map(([target, answer]) => {
            if (answer === SKIP) return { target, outcome: { tag: 'skip' } };
            if (answer instanceof PluginError) return { target, outcome: { tag: 'failed', val: answer.toWit() } };
            return { target, outcome: { tag: 'apply', val: JSON.stringify(answer) } };
          });
        });
      },
    },
    status: {
      aggregateStatus(context, object, downstream) {
        return guarded(() => {
          const copies = downstream.map((d) => ({
            target: toTarget(d.target),
            object: d.object === undefined || d.object === null ? null : parse(d.object, 'a downstream copy'),
          }));
          const status = aggregateStatus(current, toContext(context), parse(object, 'the object'), copies);
          return status === null || status === undefined ? undefined : JSON.stringify(status);
        });
      },
    },
    dependencies: {
      dependencies(context, object) {
        return guarded(() =>
          dependencies(current, toContext(context), parse(object, 'the object')).map((r) => ({
            group: r.group,
            resource: r.resource,
            name: r.name,
            optional: Boolean(r.optional),
          })),
        );
      },
    },
  };
}
