//! `FieldError`: a request field that broke a rule.

use std::fmt;

/// A request field that broke a rule: `field` is a path such as `messages[3].sender`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the offending field, as named in the contract.
    pub field: String,
    /// The rule it broke, in words.
    pub rule: String,
}

impl FieldError {
    /// A new field error.
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// Longest piece of a caller's value an error message quotes.
pub const QUOTE_CHARS: usize = 32;

/// `value` quoted for an error message: at most [`QUOTE_CHARS`] characters of it, so a huge
/// value never comes back whole in a status message.
pub fn quote(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(QUOTE_CHARS).collect();
    if chars.next().is_some() {
        format!("{:?}…", head)
    } else {
        format!("{head:?}")
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

impl std::error::Error for FieldError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_whatever_the_value() {
        assert_eq!(quote("k"), "\"k\"");
        let long = quote(&"x".repeat(10_000_000));
        assert!(long.len() < 40, "{long}");
        assert!(long.ends_with('…'));
    }
}
