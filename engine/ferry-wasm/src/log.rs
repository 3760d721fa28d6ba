//! The host side of the `log` import: guest log lines become `tracing` events attributed to
//! the plugin and hook, with a per-call budget so a plugin cannot flood the host's logs.

use ferry_core::Hook;

/// Severity of a guest log line, the same in every contract version.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Lines kept per call; the rest are counted and reported once.
const MAX_LINES: u32 = 32;
/// Bytes kept per message.
const MAX_MESSAGE: usize = 2048;

pub(crate) struct LogSink {
    plugin: String,
    hook: Hook,
    lines: u32,
    dropped: u32,
}

impl LogSink {
    pub(crate) fn new(plugin: &str, hook: Hook) -> Self {
        Self {
            plugin: plugin.to_owned(),
            hook,
            lines: 0,
            dropped: 0,
        }
    }

    pub(crate) fn emit(&mut self, level: Level, message: &str, fields: &[(String, String)]) {
        if self.lines >= MAX_LINES {
            self.dropped += 1;
            return;
        }
        self.lines += 1;
        let mut end = message.len().min(MAX_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let message = &message[..end];
        let (plugin, hook) = (self.plugin.as_str(), self.hook.wit_name());
        match level {
            Level::Trace => tracing::trace!(plugin, hook, ?fields, "{message}"),
            Level::Debug => tracing::debug!(plugin, hook, ?fields, "{message}"),
            Level::Info => tracing::info!(plugin, hook, ?fields, "{message}"),
            Level::Warn => tracing::warn!(plugin, hook, ?fields, "{message}"),
            Level::Error => tracing::error!(plugin, hook, ?fields, "{message}"),
        }
    }

    /// What the guest wrote to a standard stream (deterministic WASI, `wasi.rs`), as log
    /// lines under the same per-call budget: each non-blank line one event with the field
    /// `stream`, stdout at info and stderr at warn.
    pub(crate) fn emit_stream(&mut self, stream: &str, output: &crate::wasi::Output) {
        let level = if stream == "stderr" {
            Level::Warn
        } else {
            Level::Info
        };
        let fields = [("stream".to_owned(), stream.to_owned())];
        let text = String::from_utf8_lossy(&output.bytes);
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            self.emit(level, line, &fields);
        }
        if output.dropped > 0 {
            tracing::warn!(
                plugin = self.plugin.as_str(),
                hook = self.hook.wit_name(),
                stream,
                dropped = output.dropped,
                "plugin output over the per-call budget was dropped (bytes)"
            );
        }
    }

    pub(crate) fn finish(&self) {
        if self.dropped > 0 {
            tracing::warn!(
                plugin = self.plugin.as_str(),
                hook = self.hook.wit_name(),
                dropped = self.dropped,
                "plugin log lines over the per-call budget were dropped"
            );
        }
    }
}
