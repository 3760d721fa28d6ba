// Structured logging through the host's `log` import: `log.info('placed', { target: 'eu-1' })`.
// The host keeps 32 lines of 2 KiB per call. What the runtime writes to standard output or
// standard error also becomes log lines of the plugin, after the call, under the same
// budget (info, or warn for standard error), without levels or fields.
import { log as witLog } from 'ferry:sync/log@0.2.0';

function emit(level, message, fields = {}) {
  const pairs = Object.keys(fields).sort().map((k) => [String(k), String(fields[k])]);
  witLog(level, String(message), pairs);
}

export const trace = (message, fields) => emit('trace', message, fields);
export const debug = (message, fields) => emit('debug', message, fields);
export const info = (message, fields) => emit('info', message, fields);
export const warn = (message, fields) => emit('warn', message, fields);
export const error = (message, fields) => emit('error', message, fields);
