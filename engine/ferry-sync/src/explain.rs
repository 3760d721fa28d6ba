//! How an error reaches a person: one line, the way kubectl prints it, never a Rust debug dump.
//!
//! Failures end up in `kubectl describe` (as Events on the tenant's object) and in Ferry's logs.
//! Both used to show `kube::Error`'s own text, which embeds `Status { status: Some(Failure), … }`.
//! Everything that turns an error into words goes through this module, so there is one format:
//!
//! - The server answered with an error: `<Reason>: <message>`, e.g.
//!   `Invalid: Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be
//!   greater than or equal to 0` (kubectl: `Error from server (Invalid): <message>`). Causes are
//!   added after the message only when the message does not already say them. Without a reason
//!   (a proxy's plain-text or HTML answer) the reason is the one client-go infers from the HTTP
//!   code, or `HTTP <code>` when there is none.
//! - The server did not answer: what happened, in words (`connection refused`,
//!   `timed out connecting`, `TLS handshake failed: …`), else the error chain.
//! - Anything else: each error of the chain once, joined with `: `.

use std::error::Error;
use std::io;

use kube::core::Status;

/// The reason kube puts on a [`Status`] it made up from an error body that was not a Status (a
/// proxy's HTML page, `404 page not found`): not the server's word, so never shown.
const KUBE_UNPARSED_REASON: &str = "Failed to parse error data";

/// One line for a Kubernetes client error, for Events and logs.
///
/// Why not `err.to_string()`: kube's text for an API error ends with the `Status` struct's debug
/// dump, and its transport errors read `ServiceError: client error (Connect)` without saying
/// that the connection was refused. A tenant reads these in `kubectl describe`, so they are
/// worded the way kubectl words them (see the module documentation for the format).
pub fn api_error(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status_line(status),
        kube::Error::HyperError(inner) => transport(inner),
        kube::Error::Service(inner) => transport(inner.as_ref()),
        other => plain(other),
    }
}

/// One line for any error and its `source()` chain: the one place that turns an error into a
/// message, used for logs and Events.
///
/// Why a function and not `Display`: most errors print their own text only, so the cause (the
/// `connection refused` under `watch failed`) would be lost; others already embed their
/// source's text, so printing every level would repeat it. Here each level is shown once: a
/// source whose text its parent already contains is not repeated, and Kubernetes client errors
/// anywhere in the chain are worded by [`api_error`] even when a parent embedded kube's raw text.
pub fn chain(err: &(dyn Error + 'static)) -> String {
    render(err)
}

/// One level and everything below it.
fn render(err: &(dyn Error + 'static)) -> String {
    if let Some(kube) = err.downcast_ref::<kube::Error>() {
        return api_error(kube);
    }
    // `#[source] Box<Status>` (kube's `Error::Api`, the watcher's `WatchError`) hands out the box.
    if let Some(status) = err.downcast_ref::<Box<Status>>() {
        return status_line(status);
    }
    // A `Status` held directly, by an error type that does not box it.
    if let Some(status) = err.downcast_ref::<Status>() {
        return status_line(status);
    }
    plain(err)
}

/// This level's own text, followed by what its sources add.
fn plain(err: &(dyn Error + 'static)) -> String {
    let own = one_line(&err.to_string());
    match err.source() {
        None => own,
        Some(source) => merge(own, &one_line(&source.to_string()), render(source)),
    }
}

/// A parent's text joined with its source's: `raw` is the source's own text (what a parent
/// that embeds its source shows), `worded` the source as this module words it.
fn merge(own: String, raw: &str, worded: String) -> String {
    if worded.is_empty() || own.contains(&worded) {
        return own;
    }
    if own.is_empty() || worded == own || worded.starts_with(&format!("{own}: ")) {
        return worded;
    }
    if !raw.is_empty() && own.contains(raw) {
        // The parent printed its source itself (`failed to list: {0}`): keep the parent's
        // sentence, with the source worded in place of kube's debug text.
        return own.replacen(raw, &worded, 1);
    }
    format!("{own}: {worded}")
}

/// `<Reason>: <message>[: <causes the message does not say>]`.
fn status_line(status: &Status) -> String {
    let label = status_label(status);
    let mut message = status_message(status);
    let causes = unsaid_causes(status, &message);
    if !causes.is_empty() {
        message = if message.is_empty() {
            causes.join("; ")
        } else {
            format!("{message}: {}", causes.join("; "))
        };
    }
    if message.is_empty() {
        message = fallback_message(status.code);
    }
    match label {
        Some(label) => format!("{label}: {message}"),
        None => message,
    }
}

/// The server's reason (`Invalid`, `Forbidden`, …); without one, the Kubernetes reason of the
/// HTTP code, or `HTTP <code>`. The code is not shown beside a reason: the reason implies it,
/// and kubectl does not show it either.
fn status_label(status: &Status) -> Option<String> {
    let reason = status.reason.trim();
    if !reason.is_empty() && reason != KUBE_UNPARSED_REASON {
        return Some(one_line(reason));
    }
    if status.code == 0 {
        return None;
    }
    Some(match reason_for_code(status.code) {
        Some(reason) => reason.to_string(),
        None => format!("HTTP {}", status.code),
    })
}

/// The reason a response without a Status gets, as client-go infers it
/// (`NewGenericServerResponse`), so a reason reads the same whether the server or a proxy in
/// front of it refused. Unlike client-go, a 5xx other than 500, 503 and 504 (a proxy's 502)
/// keeps its code instead of becoming `InternalError`: the code says more.
fn reason_for_code(code: u16) -> Option<&'static str> {
    Some(match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Gone",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => return None,
    })
}

/// client-go's words for an error response that says nothing, so an empty message still reads
/// like kubectl.
fn fallback_message(code: u16) -> String {
    match code {
        0 => "the server returned an error without a code, reason or message".to_string(),
        400 => "the server rejected our request for an unknown reason".to_string(),
        401 => "the server has asked for the client to provide credentials".to_string(),
        404 => "the server could not find the requested resource".to_string(),
        405 => "the server does not allow this method on the requested resource".to_string(),
        409 => "the server reported a conflict".to_string(),
        422 => "the server rejected our request due to an error in our request".to_string(),
        429 => "the server has received too many requests and has asked us to try again later"
            .to_string(),
        503 => "the server is currently unable to handle the request".to_string(),
        504 => "the server was unable to return a response in the time allotted, but may still \
                be processing the request"
            .to_string(),
        code => {
            format!(
                "the server responded with the status code {code} but did not return more information"
            )
        }
    }
}

/// The server's message on one line. An HTML error page (from a proxy or load balancer) is
/// reduced to its title, or its text when it has none.
fn status_message(status: &Status) -> String {
    let message = status.message.trim();
    if !looks_like_html(message) {
        return one_line(message);
    }
    match html_title(message) {
        Some(title) if !title.is_empty() => title,
        _ => one_line(&strip_tags(message)),
    }
}

/// Whether an error body is an HTML page rather than a message.
fn looks_like_html(text: &str) -> bool {
    let start: String = text
        .chars()
        .take(15)
        .collect::<String>()
        .to_ascii_lowercase();
    start.starts_with("<!doctype html") || start.starts_with("<html")
}

/// The text of the first `<title>` element.
fn html_title(html: &str) -> Option<String> {
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `html`.
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    Some(one_line(&strip_tags(html.get(start..end)?)))
}

/// `text` without anything between `<` and `>`.
fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// The causes worth adding after `message`, each as `field: message`.
///
/// kube-apiserver builds an Invalid message from its causes (`… is invalid: field: message`, or
/// `[a, b]` for several), so they are usually said already and repeating them would double the
/// line. A cause counts as said when the message contains `field: message`, or both its field
/// and its message, or, for a server-side apply conflict (whose summary lists every field under
/// its manager), its field.
fn unsaid_causes(status: &Status, message: &str) -> Vec<String> {
    let Some(details) = &status.details else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for cause in &details.causes {
        let field = one_line(&cause.field);
        let text = match one_line(&cause.message) {
            text if text.is_empty() => one_line(&cause.reason),
            text => text,
        };
        let line = match (field.is_empty(), text.is_empty()) {
            (true, true) => continue,
            (true, false) => text.clone(),
            (false, true) => field.clone(),
            (false, false) => format!("{field}: {text}"),
        };
        let said = message.contains(&line)
            || (!field.is_empty()
                && message.contains(&field)
                && (message.contains(&text) || cause.reason == "FieldManagerConflict"));
        if !said && !out.contains(&line) {
            out.push(line);
        }
    }
    out
}

/// Where a request was when the transport failed, from hyper-util's `client error (<kind>)`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Opening the connection (TCP, TLS).
    Connect,
    /// Sending the request or waiting for its response.
    Request,
    /// Not known.
    Unknown,
}

/// The server did not answer: say what happened in words.
fn transport(err: &(dyn Error + 'static)) -> String {
    // hyper-util's legacy client error prints only its kind (`client error (Connect)`); the
    // kind tells the phase, the source what went wrong.
    let phase = match one_line(&err.to_string()).as_str() {
        "client error (Connect)" => Phase::Connect,
        "client error (SendRequest)" => Phase::Request,
        _ => Phase::Unknown,
    };
    let rest = if phase == Phase::Unknown {
        Some(err)
    } else {
        err.source()
    };
    let Some(rest) = rest else {
        return match phase {
            Phase::Connect => "cannot connect".to_string(),
            _ => "the connection failed".to_string(),
        };
    };
    if let Some(words) = transport_words(rest, phase) {
        return words;
    }
    let text = render(rest);
    match phase {
        Phase::Connect => format!("cannot connect: {text}"),
        _ => text,
    }
}

/// The first I/O error of the chain that has a plain-words meaning.
fn transport_words(err: &(dyn Error + 'static), phase: Phase) -> Option<String> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            // hyper-rustls wraps every TLS failure as `io::Error::other(<io::Error>)`; nothing
            // else on the connect path wraps one I/O error in another.
            if let Some(inner) = io.get_ref().and_then(|e| e.downcast_ref::<io::Error>()) {
                let what =
                    io_words(inner, Phase::Unknown).unwrap_or_else(|| one_line(&inner.to_string()));
                return Some(format!("TLS handshake failed: {what}"));
            }
            if let Some(words) = io_words(io, phase) {
                return Some(words);
            }
        }
        next = err.source();
    }
    None
}

/// Words for the I/O failures a person can act on.
fn io_words(err: &io::Error, phase: Phase) -> Option<String> {
    let words = match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset by peer",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => {
            "the server closed the connection"
        }
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::TimedOut => match phase {
            Phase::Connect => "timed out connecting",
            Phase::Request => "timed out waiting for a response",
            Phase::Unknown => "timed out",
        },
        _ => return None,
    };
    Some(words.to_string())
}

/// `text` with every run of whitespace (newlines included) made one space: an Event message
/// and a log field are one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// A status the way kube builds it from an error response body.
    fn from_body(json: &str) -> kube::Error {
        kube::Error::Api(Box::new(
            serde_json::from_str::<Status>(json).expect("a Status body"),
        ))
    }

    /// A status the way kube builds it when the body is not a Status (see kube-client's
    /// `handle_api_errors`).
    fn from_plain_body(code: u16, body: &str) -> kube::Error {
        kube::Error::Api(Box::new(
            Status::failure(body.trim(), KUBE_UNPARSED_REASON).with_code(code),
        ))
    }

    /// Never a debug dump, always one line.
    fn assert_readable(text: &str) {
        for dump in [
            "Status {",
            "Some(",
            "ErrorResponse",
            "Box<",
            "Custom {",
            "kind:",
        ] {
            assert!(!text.contains(dump), "debug text {dump:?} in {text:?}");
        }
        assert!(
            !text.contains('\n') && !text.contains('\r'),
            "more than one line: {text:?}"
        );
    }

    fn explained(err: &kube::Error) -> String {
        let text = api_error(err);
        assert_readable(&text);
        // The same error anywhere in a chain reads the same.
        assert_eq!(chain(err), text);
        text
    }

    /// An error with a fixed text and an optional source, like most library errors.
    #[derive(Debug)]
    struct Layer {
        text: String,
        source: Option<Box<dyn Error + Send + Sync>>,
    }

    impl Layer {
        fn new(text: &str, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
            Layer {
                text: text.to_string(),
                source: Some(source.into()),
            }
        }
    }

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.text)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.source.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    /// A transport failure shaped like kube's: `Error::Service` over hyper-util's
    /// `client error (<kind>)` over the connector's error.
    fn service(kind: &str, source: impl Into<Box<dyn Error + Send + Sync>>) -> kube::Error {
        kube::Error::Service(Box::new(Layer::new(
            &format!("client error ({kind})"),
            source,
        )))
    }

    #[test]
    fn an_invalid_deployment_reads_as_the_servers_message_without_repeating_its_causes() {
        // As kube-apiserver answers a server-side apply of a Deployment with replicas -1 and no
        // image: the message already lists both causes.
        let err = from_body(
            r#"{
              "kind": "Status",
              "apiVersion": "v1",
              "metadata": {},
              "status": "Failure",
              "message": "Deployment.apps \"web\" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.template.spec.containers[0].image: Required value]",
              "reason": "Invalid",
              "details": {
                "name": "web",
                "group": "apps",
                "kind": "Deployment",
                "causes": [
                  {
                    "reason": "FieldValueInvalid",
                    "message": "Invalid value: -1: must be greater than or equal to 0",
                    "field": "spec.replicas"
                  },
                  {
                    "reason": "FieldValueRequired",
                    "message": "Required value",
                    "field": "spec.template.spec.containers[0].image"
                  }
                ]
              },
              "code": 422
            }"#,
        );
        assert_eq!(
            explained(&err),
            "Invalid: Deployment.apps \"web\" is invalid: [spec.replicas: Invalid value: -1: must \
             be greater than or equal to 0, spec.template.spec.containers[0].image: Required value]"
        );
    }

    #[test]
    fn a_single_invalid_field_reads_like_kubectl() {
        let err = from_body(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].image: Required value",
                "reason":"Invalid",
                "details":{"name":"web","group":"apps","kind":"Deployment","causes":[
                  {"reason":"FieldValueRequired","message":"Required value","field":"spec.template.spec.containers[0].image"}]},
                "code":422}"#,
        );
        assert_eq!(
            explained(&err),
            "Invalid: Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].image: \
             Required value"
        );
    }

    #[test]
    fn causes_the_message_leaves_out_follow_it() {
        // An aggregated API server or webhook may put the details only in the causes; one of
        // them is said already and one is listed twice.
        let err = from_body(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"Widget.example.com \"w\" is invalid: spec.size: Invalid value: 0: must be positive",
                "reason":"Invalid",
                "details":{"name":"w","group":"example.com","kind":"Widget","causes":[
                  {"reason":"FieldValueInvalid","message":"Invalid value: 0: must be positive","field":"spec.size"},
                  {"reason":"FieldValueNotSupported","message":"Unsupported value: \"mauve\"","field":"spec.color"},
                  {"reason":"FieldValueNotSupported","message":"Unsupported value: \"mauve\"","field":"spec.color"},
                  {"reason":"FieldValueForbidden"}]},
                "code":422}"#,
        );
        assert_eq!(
            explained(&err),
            "Invalid: Widget.example.com \"w\" is invalid: spec.size: Invalid value: 0: must be \
             positive: spec.color: Unsupported value: \"mauve\"; FieldValueForbidden"
        );
    }

    #[test]
    fn a_forbidden_write_names_who_was_refused_what() {
        let err = from_body(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"deployments.apps \"web\" is forbidden: User \"system:serviceaccount:ferry-system:ferry\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"ferry-x\"",
                "reason":"Forbidden",
                "details":{"name":"web","group":"apps","kind":"deployments"},
                "code":403}"#,
        );
        assert_eq!(
            explained(&err),
            "Forbidden: deployments.apps \"web\" is forbidden: User \
             \"system:serviceaccount:ferry-system:ferry\" cannot patch resource \"deployments\" \
             in API group \"apps\" in the namespace \"ferry-x\""
        );
    }

    #[test]
    fn an_existing_object_reads_already_exists() {
        let err = from_body(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"namespaces \"ferry-x\" already exists","reason":"AlreadyExists",
                "details":{"name":"ferry-x","kind":"namespaces"},"code":409}"#,
        );
        assert_eq!(
            explained(&err),
            "AlreadyExists: namespaces \"ferry-x\" already exists"
        );
    }

    #[test]
    fn a_missing_object_reads_not_found() {
        let err = from_body(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"deployments.apps \"web\" not found","reason":"NotFound",
                "details":{"name":"web","group":"apps","kind":"deployments"},"code":404}"#,
        );
        assert_eq!(
            explained(&err),
            "NotFound: deployments.apps \"web\" not found"
        );
    }

    #[test]
    fn a_missing_api_reads_not_found_with_the_servers_plain_text() {
        // A resource whose CRD is not installed on the target: the path does not exist and
        // the server answers in plain text, not with a Status.
        let err = from_plain_body(404, "404 page not found\n");
        assert_eq!(explained(&err), "NotFound: 404 page not found");
    }

    #[test]
    fn a_failed_uid_precondition_reads_conflict_with_the_storage_message() {
        // A delete with a UID precondition of an object that was replaced meanwhile.
        let err = from_body(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"Operation cannot be fulfilled on deployments.apps \"web\": StorageError: invalid object, Code: 4, Key: /registry/deployments/ferry-x/web, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: 6f1c2d4e-0000-4000-8000-000000000001, UID in object meta: 2b7d9a10-0000-4000-8000-000000000002",
                "reason":"Conflict",
                "details":{"name":"web","group":"apps","kind":"deployments"},
                "code":409}"#,
        );
        assert_eq!(
            explained(&err),
            "Conflict: Operation cannot be fulfilled on deployments.apps \"web\": StorageError: \
             invalid object, Code: 4, Key: /registry/deployments/ferry-x/web, ResourceVersion: \
             0, AdditionalErrorMsg: Precondition failed: UID in precondition: \
             6f1c2d4e-0000-4000-8000-000000000001, UID in object meta: \
             2b7d9a10-0000-4000-8000-000000000002"
        );
    }

    #[test]
    fn a_server_side_apply_conflict_is_said_once_and_on_one_line() {
        let one = from_body(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .metadata.labels.team",
                "reason":"Conflict",
                "details":{"causes":[{"reason":"FieldManagerConflict","message":"conflict with \"kubectl-edit\" using v1","field":".metadata.labels.team"}]},
                "code":409}"#,
        );
        assert_eq!(
            explained(&one),
            "Conflict: Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: \
             .metadata.labels.team"
        );
        let two = from_body(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"Apply failed with 2 conflicts: conflicts with \"kubectl-edit\" using v1:\n- .metadata.labels.team\n- .metadata.labels.tier",
                "reason":"Conflict",
                "details":{"causes":[
                  {"reason":"FieldManagerConflict","message":"conflict with \"kubectl-edit\" using v1","field":".metadata.labels.team"},
                  {"reason":"FieldManagerConflict","message":"conflict with \"kubectl-edit\" using v1","field":".metadata.labels.tier"}]},
                "code":409}"#,
        );
        assert_eq!(
            explained(&two),
            "Conflict: Apply failed with 2 conflicts: conflicts with \"kubectl-edit\" using v1: - \
             .metadata.labels.team - .metadata.labels.tier"
        );
    }

    #[test]
    fn an_internal_error_without_a_message_says_so_in_client_go_words() {
        let status = from_body(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"","code":500}"#,
        );
        let expected = "InternalError: the server responded with the status code 500 but did not \
                        return more information";
        assert_eq!(explained(&status), expected);
        // The same from an empty body, which kube turns into a Status of its own.
        assert_eq!(explained(&from_plain_body(500, "")), expected);
    }

    #[test]
    fn a_proxys_error_page_reads_as_its_code_and_title() {
        let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                    <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n\
                    </body>\r\n</html>\r\n";
        assert_eq!(
            explained(&from_plain_body(502, page)),
            "HTTP 502: 502 Bad Gateway"
        );
        let untitled = "<!DOCTYPE html><html><body><p>upstream\nunavailable</p></body></html>";
        assert_eq!(
            explained(&from_plain_body(503, untitled)),
            "ServiceUnavailable: upstream unavailable"
        );
    }

    #[test]
    fn an_error_body_with_nothing_in_it_still_reads_as_a_sentence() {
        // `{}` parses as a Status with no code, reason or message.
        assert_eq!(
            explained(&from_body("{}")),
            "the server returned an error without a code, reason or message"
        );
    }

    #[test]
    fn a_refused_connection_reads_connection_refused() {
        let err = service(
            "Connect",
            Layer::new(
                "tcp connect error",
                io::Error::from(io::ErrorKind::ConnectionRefused),
            ),
        );
        assert_eq!(explained(&err), "connection refused");
    }

    #[test]
    fn timeouts_say_whether_the_server_was_reached() {
        // hyper-timeout's connect deadline, and a read timeout under hyper's `connection error`.
        let connect = service(
            "Connect",
            io::Error::new(io::ErrorKind::TimedOut, "deadline has elapsed"),
        );
        assert_eq!(explained(&connect), "timed out connecting");
        let read = service(
            "SendRequest",
            Layer::new("connection error", io::Error::from(io::ErrorKind::TimedOut)),
        );
        assert_eq!(explained(&read), "timed out waiting for a response");
    }

    #[test]
    fn a_rejected_certificate_reads_tls_handshake_failed() {
        // hyper-rustls: io::Error::other(<tokio-rustls' InvalidData io::Error over rustls>).
        let rustls = io::Error::new(
            io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        );
        let err = service("Connect", io::Error::other(rustls));
        assert_eq!(
            explained(&err),
            "TLS handshake failed: invalid peer certificate: UnknownIssuer"
        );
        let reset = io::Error::other(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(
            explained(&service("Connect", reset)),
            "TLS handshake failed: connection reset by peer"
        );
    }

    #[test]
    fn other_connect_failures_keep_their_chain_without_repeats() {
        let dns = service(
            "Connect",
            Layer::new(
                "dns error",
                io::Error::other("failed to lookup address information: Name or service not known"),
            ),
        );
        assert_eq!(
            explained(&dns),
            "cannot connect: dns error: failed to lookup address information: Name or service \
             not known"
        );
    }

    #[test]
    fn an_unreadable_response_reads_as_kubes_sentence() {
        let serde = serde_json::from_str::<serde_json::Value>("hello").expect_err("not JSON");
        let err = kube::Error::SerdeError(serde);
        assert_eq!(
            explained(&err),
            "Error deserializing response: expected value at line 1 column 1"
        );
    }

    #[test]
    fn a_nested_chain_says_each_level_once() {
        // The middle level prints its source itself; the top does not.
        let io = io::Error::new(io::ErrorKind::NotFound, "no such file or directory");
        let middle = Layer::new(
            "reading /etc/ferry/cluster-2.kubeconfig: no such file or directory",
            io,
        );
        let top = Layer::new("loading target cluster-2", middle);
        let text = chain(&top);
        assert_readable(&text);
        assert_eq!(
            text,
            "loading target cluster-2: reading /etc/ferry/cluster-2.kubeconfig: no such file or \
             directory"
        );
    }

    #[test]
    fn a_kube_error_inside_another_error_is_worded_even_where_the_parent_embedded_it() {
        // kube-runtime's watcher prints its source with `{0}`, i.e. kube's debug dump.
        let forbidden = from_body(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"deployments.apps is forbidden: User \"ferry\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope",
                "reason":"Forbidden","details":{"group":"apps","kind":"deployments"},"code":403}"#,
        );
        let watch = kube::runtime::watcher::Error::InitialListFailed(forbidden);
        assert!(
            watch.to_string().contains("Status {"),
            "kube's own text changed"
        );
        let text = chain(&watch);
        assert_readable(&text);
        assert_eq!(
            text,
            "failed to perform initial object list: Forbidden: deployments.apps is forbidden: \
             User \"ferry\" cannot list resource \"deployments\" in API group \"apps\" at the \
             cluster scope"
        );
        // A parent that does not print its source gets it appended.
        let refused = service(
            "Connect",
            Layer::new(
                "tcp connect error",
                io::Error::from(io::ErrorKind::ConnectionRefused),
            ),
        );
        let text = chain(&Layer::new("probing cluster-2", refused));
        assert_eq!(text, "probing cluster-2: connection refused");
    }

    #[test]
    fn a_status_inside_a_watch_error_is_worded_like_an_api_error() {
        let gone = serde_json::from_str::<Status>(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"too old resource version: 100 (200)","reason":"Expired","code":410}"#,
        )
        .expect("a Status body");
        let watch = kube::runtime::watcher::Error::WatchError(Box::new(gone));
        let text = chain(&watch);
        assert_readable(&text);
        assert_eq!(
            text,
            "error returned by apiserver during watch: Expired: too old resource version: 100 (200)"
        );
    }

    #[test]
    fn a_refused_copy_reads_as_the_action_then_the_servers_words() {
        // The defect: this Event message used to end in `ApiError: … (Status { … })`.
        let refused = from_body(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "reason":"Invalid",
                "details":{"name":"web","group":"apps","kind":"Deployment","causes":[
                  {"reason":"FieldValueInvalid","message":"Invalid value: -1: must be greater than or equal to 0","field":"spec.replicas"}]},
                "code":422}"#,
        );
        let err = crate::error::SyncError::api(
            "applying apps/v1 Deployment ferry-x/web on cluster-2",
            refused,
        );
        let text = chain(&err);
        assert_readable(&text);
        assert_eq!(
            text,
            "applying apps/v1 Deployment ferry-x/web on cluster-2: Invalid: Deployment.apps \"web\" \
             is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
    }

    #[tokio::test]
    async fn a_real_refused_connection_reads_connection_refused() {
        // A loopback port nobody listens on: kube's real error chain, no server involved.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("http://127.0.0.1:{port}").parse().expect("a URL");
        let client = kube::Client::try_from(kube::Config::new(url)).expect("a client");
        let api: kube::Api<kube::core::DynamicObject> = kube::Api::namespaced_with(
            client,
            "ferry-x",
            &kube::discovery::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
        );
        let err = api.get("web").await.expect_err("nothing listens there");
        assert!(
            err.to_string().starts_with("ServiceError"),
            "kube's own text changed: {err}"
        );
        assert_eq!(explained(&err), "connection refused");
    }
}
