//! Validated ids: users, groups (and chatrooms), messages.

use crate::error::FieldError;

/// Longest user, group or room id.
pub const MAX_ID_LEN: usize = 64;

/// The one rule for user, group and room ids: 1-64 characters of `[A-Za-z0-9_.-]`.
fn check_id(field: &str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(FieldError::new(field, "must be at most 64 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(FieldError::new(field, "must contain only [A-Za-z0-9_.-]"));
    }
    Ok(())
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks `value` against the id rule; `field` names it in the error.
            pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
                check_id(field, value)?;
                Ok(Self(value.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_id!(
    /// A user id: 1-64 characters of `[A-Za-z0-9_.-]`.
    UserId
);
text_id!(
    /// A group's or chatroom's id (the same rule as a user id, a different namespace).
    GroupId
);

/// Longest conversation mark.
pub const MAX_MARK_LEN: usize = 32;

/// A user's label on a conversation ("work", "family"): 1-32 characters of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mark(String);

impl Mark {
    /// Checks `value` against the mark rule; `field` names it in the error.
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        if value.is_empty() {
            return Err(FieldError::new(field, "is required"));
        }
        if value.len() > MAX_MARK_LEN {
            return Err(FieldError::new(field, "must be at most 32 characters"));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(FieldError::new(field, "must contain only [A-Za-z0-9_.-]"));
        }
        Ok(Self(value.to_owned()))
    }

    /// The mark as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message id: a positive 64-bit number, written as a decimal string in the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId(pub i64);

impl MsgId {
    /// Parses the decimal form.
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        if value.is_empty() {
            return Err(FieldError::new(field, "is required"));
        }
        match value.parse::<i64>() {
            Ok(n) if n > 0 && value.bytes().all(|b| b.is_ascii_digit()) => Ok(Self(n)),
            _ => Err(FieldError::new(
                field,
                "must be a positive decimal 64-bit message id",
            )),
        }
    }
}

impl std::fmt::Display for MsgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_follow_the_rule() {
        assert!(UserId::parse("f", "alice_B-1.x").is_ok());
        assert_eq!(UserId::parse("f", "").unwrap_err().rule, "is required");
        assert!(UserId::parse("f", &"a".repeat(65)).is_err());
        assert!(UserId::parse("f", &"a".repeat(64)).is_ok());
        assert!(UserId::parse("f", "a:b").is_err());
        assert!(UserId::parse("f", "émile").is_err());
        assert!(GroupId::parse("f", "a:b").is_err());
    }

    #[test]
    fn msg_ids_are_positive_decimals() {
        assert_eq!(MsgId::parse("f", "42").unwrap(), MsgId(42));
        for bad in ["", "0", "-1", "+5", "1e3", "abc", "99999999999999999999"] {
            assert!(MsgId::parse("f", bad).is_err(), "{bad}");
        }
    }
}
