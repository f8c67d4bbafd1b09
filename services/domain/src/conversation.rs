//! Conversations as the server stores them, independent of who looks at them.

use crate::error::FieldError;
use crate::ids::{GroupId, UserId};

/// The kind of a conversation; the numbers are the contract's enum values and the schema's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationKind {
    /// One-on-one.
    Peer = 1,
    /// Group.
    Group = 2,
    /// Chatroom.
    Chatroom = 3,
}

impl ConversationKind {
    /// From the contract's enum number; 0 and unknown values are errors.
    pub fn from_i32(field: &str, value: i32) -> Result<Self, FieldError> {
        match value {
            1 => Ok(Self::Peer),
            2 => Ok(Self::Group),
            3 => Ok(Self::Chatroom),
            0 => Err(FieldError::new(
                field,
                "is required (CONVERSATION_TYPE_UNSPECIFIED)",
            )),
            other => Err(FieldError::new(
                field,
                format!("unknown conversation type {other}"),
            )),
        }
    }

    /// From the schema's `kind` value.
    pub fn from_i16(value: i16) -> Option<Self> {
        Self::from_i32("kind", value.into()).ok()
    }

    /// The schema's `kind` value.
    pub fn as_i16(self) -> i16 {
        self as i16
    }

    /// GROUP and CHATROOM pass; PEER conversations have no membership to manage, and `field`
    /// (e.g. `conversation.type`) names the refusal.
    pub fn require_group(self, field: &str) -> Result<(), FieldError> {
        match self {
            Self::Group | Self::Chatroom => Ok(()),
            Self::Peer => Err(not_a_group(field)),
        }
    }
}

fn not_a_group(field: &str) -> FieldError {
    FieldError::new(
        field,
        "must be CONVERSATION_TYPE_GROUP or CONVERSATION_TYPE_CHATROOM",
    )
}

/// A conversation as the server stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Conversation {
    /// A one-on-one conversation; `low <= high` so both participants name the same one.
    Peer {
        /// The participant whose id sorts first.
        low: UserId,
        /// The participant whose id sorts last (equal to `low` for notes to self).
        high: UserId,
    },
    /// A group, by id.
    Group(GroupId),
    /// A chatroom, by id.
    Chatroom(GroupId),
}

impl Conversation {
    /// The conversation `viewer` names `(kind, id)`; `field` (e.g. `conversation.id`) names
    /// the id in the error.
    pub fn parse(
        field: &str,
        kind: ConversationKind,
        id: &str,
        viewer: &UserId,
    ) -> Result<Self, FieldError> {
        Ok(match kind {
            ConversationKind::Peer => Self::peer(viewer.clone(), UserId::parse(field, id)?),
            ConversationKind::Group => Self::Group(GroupId::parse(field, id)?),
            ConversationKind::Chatroom => Self::Chatroom(GroupId::parse(field, id)?),
        })
    }

    /// The PEER conversation of `a` and `b` (in either order).
    pub fn peer(a: UserId, b: UserId) -> Self {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        Self::Peer { low, high }
    }

    /// The GROUP or CHATROOM `(kind, id)`, named without a viewer (a group's id is the same
    /// for everyone); PEER is refused as [`ConversationKind::require_group`] says.
    pub fn parse_group(
        kind_field: &str,
        kind: ConversationKind,
        id_field: &str,
        id: &str,
    ) -> Result<Self, FieldError> {
        kind.require_group(kind_field)?;
        let id = GroupId::parse(id_field, id)?;
        Ok(match kind {
            ConversationKind::Chatroom => Self::Chatroom(id),
            _ => Self::Group(id),
        })
    }

    /// The group or room id of a GROUP or CHATROOM; as [`ConversationKind::require_group`]
    /// for PEER.
    pub fn require_group(&self, field: &str) -> Result<&GroupId, FieldError> {
        match self {
            Self::Group(id) | Self::Chatroom(id) => Ok(id),
            Self::Peer { .. } => Err(not_a_group(field)),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> ConversationKind {
        match self {
            Self::Peer { .. } => ConversationKind::Peer,
            Self::Group(_) => ConversationKind::Group,
            Self::Chatroom(_) => ConversationKind::Chatroom,
        }
    }

    /// The storage key, the distribution column of every table: `p:<low>:<high>`,
    /// `g:<id>` or `r:<id>`. Ids cannot contain `:`, so keys never collide.
    pub fn key(&self) -> String {
        match self {
            Self::Peer { low, high } => format!("p:{low}:{high}"),
            Self::Group(id) => format!("g:{id}"),
            Self::Chatroom(id) => format!("r:{id}"),
        }
    }

    /// Parses a storage key back (for rows read from the database).
    pub fn from_key(key: &str) -> Option<Self> {
        let (tag, rest) = key.split_once(':')?;
        match tag {
            "p" => {
                let (low, high) = rest.split_once(':')?;
                Some(Self::Peer {
                    low: UserId::parse("key", low).ok()?,
                    high: UserId::parse("key", high).ok()?,
                })
            }
            "g" => Some(Self::Group(GroupId::parse("key", rest).ok()?)),
            "r" => Some(Self::Chatroom(GroupId::parse("key", rest).ok()?)),
            _ => None,
        }
    }

    /// The id `viewer` uses for this conversation (PEER: the other participant).
    pub fn id_seen_by(&self, viewer: &UserId) -> &str {
        match self {
            Self::Peer { low, high } => {
                if low == viewer {
                    high.as_str()
                } else {
                    low.as_str()
                }
            }
            Self::Group(id) | Self::Chatroom(id) => id.as_str(),
        }
    }

    /// Everyone who takes part without being added (PEER: both participants).
    pub fn implicit_participants(&self) -> Vec<&UserId> {
        match self {
            Self::Peer { low, high } if low == high => vec![low],
            Self::Peer { low, high } => vec![low, high],
            Self::Group(_) | Self::Chatroom(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> UserId {
        UserId::parse("u", s).unwrap()
    }

    #[test]
    fn both_peers_name_the_same_conversation() {
        let a = Conversation::parse("c", ConversationKind::Peer, "bob", &uid("alice")).unwrap();
        let b = Conversation::parse("c", ConversationKind::Peer, "alice", &uid("bob")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.key(), "p:alice:bob");
        assert_eq!(a.id_seen_by(&uid("alice")), "bob");
        assert_eq!(a.id_seen_by(&uid("bob")), "alice");
        assert_eq!(Conversation::from_key(&a.key()), Some(a));
    }

    #[test]
    fn groups_and_rooms_with_one_id_are_different_conversations() {
        let id = GroupId::parse("g", "x").unwrap();
        let g = Conversation::Group(id.clone());
        let r = Conversation::Chatroom(id);
        assert_ne!(g.key(), r.key());
        assert_eq!(Conversation::from_key(&r.key()), Some(r));
    }

    #[test]
    fn a_peer_conversation_has_no_group_form() {
        let err = Conversation::parse_group("t", ConversationKind::Peer, "i", "x").unwrap_err();
        assert_eq!(err.field, "t");
        let peer = Conversation::peer(uid("a"), uid("b"));
        assert_eq!(peer.require_group("t").unwrap_err(), err);
    }
}
