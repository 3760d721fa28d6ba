//! Log output of every subcommand that logs: text for people (default) or one JSON object
//! per line for log pipelines (`--log-format json`), on stderr, filtered by `FERRY_LOG`.

use std::io::IsTerminal as _;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; span fields (`workspace`, `resource`, ...) before the message.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, the event's fields at the
    /// top level, and the enclosing span's fields under `span` (`workspace`, `resource`,
    /// `namespace`, `object` for a line about one object).
    Json,
}

/// Installs the process-wide logger, filtered by `FERRY_LOG` (default `default_filter`).
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_env("FERRY_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let ansi = std::io::stderr().is_terminal();
    // Fails only if a logger is installed already; the first one stays.
    let _ = subscriber(format, filter, std::io::stderr, ansi).try_init();
}

/// The logger, writing to `writer`.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_ansi(false)
                // Fields at the top level, where pipelines index them.
                .flatten_event(true)
                // The object's span (`workspace`, `resource`, `namespace`, `name`) under
                // `span`; the list of every enclosing span would repeat it.
                .with_current_span(true)
                .with_span_list(false)
                // The event's module path would be a second `target` key next to the
                // target-cluster field many lines carry.
                .with_target(false)
                .finish(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use ferry_core::identity::UpstreamKey;
    use serde_json::Value;

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = subscriber(
            format,
            EnvFilter::new("info"),
            move || writer.clone(),
            false,
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(export = "kubernetes", "outside any object");
            let key = UpstreamKey {
                cluster: "2x8vfqmz3d9ykcq1".into(),
                namespace: "demo".into(),
                name: "web".into(),
            };
            let span =
                ferry_sync::reconcile::object_span("deployments.apps", &key, Some("root:team-a"));
            let _inside = span.enter();
            tracing::info!(target = "cluster-1", "applied");
            tracing::warn!(
                error = "quoted \"text\"\nand a line break",
                "reconcile failed"
            );
        });
        let bytes = captured.0.lock().expect("buffer").clone();
        String::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn json_logs_are_one_object_per_line_naming_the_object_of_the_reconcile_span() {
        let text = logged(LogFormat::Json);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines.iter().all(Value::is_object), "{text}");
        assert_eq!(lines[0]["message"], "outside any object");
        assert_eq!(lines[0]["export"], "kubernetes");
        assert_eq!(lines[0]["level"], "INFO");
        for line in &lines[1..] {
            let span = &line["span"];
            assert_eq!(span["workspace"], "2x8vfqmz3d9ykcq1", "{line}");
            assert_eq!(span["path"], "root:team-a", "{line}");
            assert_eq!(span["resource"], "deployments.apps", "{line}");
            assert_eq!(span["namespace"], "demo", "{line}");
            assert_eq!(span["object"], "web", "{line}");
            assert_eq!(span["name"], "reconcile", "{line}");
        }
        assert_eq!(lines[1]["target"], "cluster-1");
        assert_eq!(lines[2]["error"], "quoted \"text\"\nand a line break");
        assert_eq!(lines[2]["level"], "WARN");
    }

    #[test]
    fn text_logs_show_the_object_before_the_message() {
        let text = logged(LogFormat::Text);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.contains(
                "reconcile{workspace=2x8vfqmz3d9ykcq1 path=root:team-a \
                 resource=deployments.apps namespace=demo object=web}"
            ),
            "{text}"
        );
        assert!(text.lines().all(|l| !l.starts_with('{')), "{text}");
    }
}
