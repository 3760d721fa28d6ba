//! Kubernetes label selector strings (`region=eu,tier!=gpu,env in (a,b),!legacy,zone`), the
//! syntax `kubectl -l` accepts. The empty selector matches everything.

use std::fmt;

#[derive(Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed selector: every requirement must hold. Configuration reads it from its text.
#[derive(Debug, PartialEq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Selector(Vec<Requirement>);

impl TryFrom<String> for Selector {
    type Error = ParseError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

/// Why a selector string is invalid.
#[derive(Debug, PartialEq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Selector {
    /// Parses a selector string.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut requirements = Vec::new();
        for term in split_terms(text)? {
            let term = term.trim();
            if term.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(ParseError(format!("empty requirement in {text:?}")));
            }
            requirements.push(parse_term(term)?);
        }
        Ok(Self(requirements))
    }

    /// Whether a set of labels (looked up through `label`) satisfies every requirement.
    pub fn matches<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::DoesNotExist(k) => label(k).is_none(),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Result<Vec<&str>, ParseError> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(ParseError(format!("unbalanced parentheses in {text:?}")));
        }
    }
    if depth != 0 {
        return Err(ParseError(format!("unbalanced parentheses in {text:?}")));
    }
    terms.push(&text[start..]);
    Ok(terms)
}

fn parse_term(term: &str) -> Result<Requirement, ParseError> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key_of(key.trim())?));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(key_of(k)?, value_of(v)?));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(key_of(k)?, value_of(v)?));
    }
    let mut words = term.splitn(2, char::is_whitespace);
    let key = key_of(words.next().unwrap_or_default())?;
    let Some(rest) = words.next().map(str::trim) else {
        return Ok(Requirement::Exists(key));
    };
    let (negated, set) = if let Some(set) = rest.strip_prefix("notin") {
        (true, set)
    } else if let Some(set) = rest.strip_prefix("in") {
        (false, set)
    } else {
        return Err(ParseError(format!("expected `in` or `notin` in {term:?}")));
    };
    let values = set
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| ParseError(format!("expected a (value, ...) set in {term:?}")))?
        .split(',')
        .map(value_of)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if negated {
        Requirement::NotIn(key, values)
    } else {
        Requirement::In(key, values)
    })
}

fn key_of(text: &str) -> Result<String, ParseError> {
    let key = text.trim();
    let valid = !key.is_empty()
        && key.len() <= 317 // optional 253-character prefix, '/', 63-character name
        && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(ParseError(format!("invalid label key {key:?}")))
    }
}

fn value_of(text: &str) -> Result<String, ParseError> {
    let value = text.trim();
    let valid = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ParseError(format!("invalid label value {value:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |k| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
    }

    #[test]
    fn every_operator_matches_like_kubectl() {
        let eu = [("region", "eu"), ("tier", "gold")];
        for (text, expected) in [
            ("", true),
            ("region=eu", true),
            ("region==eu", true),
            ("region!=eu", false),
            ("region in (eu, us)", true),
            ("region notin (eu)", false),
            ("tier", true),
            ("!tier", false),
            ("region=eu,tier=silver", false),
            ("zone notin (a)", true),
        ] {
            let selector = Selector::parse(text).expect(text);
            assert_eq!(selector.matches(labels(&eu)), expected, "{text}");
        }
    }

    #[test]
    fn malformed_selectors_are_rejected() {
        for text in [
            "region in eu",
            "a=b,,c",
            "(",
            "region in (eu",
            "re gion=x",
            "a=b c",
        ] {
            assert!(Selector::parse(text).is_err(), "{text}");
        }
    }
}
