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

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

impl std::error::Error for FieldError {}
