//! Workspace path patterns: kcp paths are `:`-separated names (`root:org-eu:team-a`). In a
//! pattern, `*` inside a segment matches any characters of one name (`team-*`, or `*` for
//! any one name), and a `**` segment matches any number of names, none included:
//! `root:org-eu:*` is every direct child of `root:org-eu`, `root:org-eu:**` is `root:org-eu`
//! and every workspace below it.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    /// `**`: zero or more whole names.
    AnyDepth,
    /// One name, `*` matching any run of characters.
    Name(String),
}

/// A parsed workspace path pattern. Configuration reads it from its text.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct WorkspacePattern {
    text: String,
    segments: Vec<Segment>,
}

/// Why a pattern is invalid.
#[derive(Debug, PartialEq)]
pub struct PatternError(String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl WorkspacePattern {
    /// Parses a pattern such as `root:org-eu:*`.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let invalid = |why: &str| PatternError(format!("workspace pattern {text:?}: {why}"));
        let segments = text
            .split(':')
            .map(|segment| match segment {
                "" => Err(invalid("empty name between ':'")),
                "**" => Ok(Segment::AnyDepth),
                s if s.contains("**") => Err(invalid("`**` must be a whole name")),
                s if s
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-*".contains(c)) =>
                {
                    Ok(Segment::Name(s.to_owned()))
                }
                _ => Err(invalid(
                    "names are lower-case letters, digits and '-' (with '*' as a wildcard)",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// Whether workspace `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        let names: Vec<&str> = path.split(':').collect();
        matches_from(&self.segments, &names)
    }
}

impl TryFrom<String> for WorkspacePattern {
    type Error = PatternError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl fmt::Display for WorkspacePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn matches_from(segments: &[Segment], names: &[&str]) -> bool {
    match segments.split_first() {
        None => names.is_empty(),
        Some((Segment::AnyDepth, rest)) => {
            (0..=names.len()).any(|skip| matches_from(rest, &names[skip..]))
        }
        Some((Segment::Name(pattern), rest)) => match names.split_first() {
            Some((name, names)) => {
                glob(pattern.as_bytes(), name.as_bytes()) && matches_from(rest, names)
            }
            None => false,
        },
    }
}

/// `*`-only glob over one name.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
        Some((c, rest)) => name.first() == Some(c) && glob(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        WorkspacePattern::parse(pattern)
            .expect(pattern)
            .matches(path)
    }

    #[test]
    fn a_star_is_exactly_one_name() {
        assert!(matches("root:org-eu:*", "root:org-eu:team-a"));
        assert!(!matches("root:org-eu:*", "root:org-eu"));
        assert!(!matches("root:org-eu:*", "root:org-eu:team-a:dev"));
        assert!(!matches("root:org-eu:*", "root:org-us:team-a"));
    }

    #[test]
    fn a_double_star_is_the_workspace_itself_and_everything_below() {
        assert!(matches("root:org-eu:**", "root:org-eu"));
        assert!(matches("root:org-eu:**", "root:org-eu:team-a"));
        assert!(matches("root:org-eu:**", "root:org-eu:team-a:dev"));
        assert!(!matches("root:org-eu:**", "root:org-eu-2"));
        assert!(!matches("root:org-eu:**", "root"));
        assert!(matches("root:**:dev", "root:org-eu:team-a:dev"));
        assert!(matches("root:**:dev", "root:dev"));
    }

    #[test]
    fn a_star_inside_a_name_matches_part_of_it() {
        assert!(matches("root:org-*", "root:org-eu"));
        assert!(matches("root:*-eu:team-*", "root:org-eu:team-a"));
        assert!(!matches("root:org-*", "root:team-eu"));
        assert!(matches("root:org-eu", "root:org-eu"));
        assert!(!matches("root:org-eu", "root:org-eu:team-a"));
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_reason() {
        for (text, why) in [
            ("root::a", "empty name"),
            ("root:a**", "whole name"),
            ("root:Org", "lower-case"),
            ("root/org", "lower-case"),
            ("", "empty name"),
        ] {
            let err = WorkspacePattern::parse(text).expect_err(text);
            assert!(err.to_string().contains(why), "{text}: {err}");
        }
    }
}
