//! The request-shape limits; every one is a server setting whose default is defined here.

/// The request-shape limits: breaking one is `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message body in bytes.
    pub max_body_bytes: usize,
    /// Most attributes on one message.
    pub max_attributes: usize,
    /// Largest attribute key or value in bytes.
    pub max_attribute_bytes: usize,
    /// Most messages in one AppendMessages call.
    pub max_append_batch: usize,
    /// Largest history page.
    pub max_page_size: u32,
    /// Most pages in one FetchHistory stream.
    pub max_pages: u32,
    /// Most ids in one RemoveMessages call.
    pub max_removal_ids: usize,
    /// Most users in one membership call.
    pub max_members_per_call: usize,
    /// Most senders in a history filter.
    pub max_sender_filter: usize,
    /// Largest conversation-list page.
    pub max_conversation_page: u32,
    /// Encoded size a history or list page stays below (it ends early, with its cursor,
    /// rather than pass it; one message or entry always fits): under the 4 MiB that gRPC
    /// clients accept by default.
    pub max_page_bytes: usize,
}

impl Limits {
    /// The defaults (the server settings' defaults refer to these).
    pub const DEFAULT: Limits = Limits {
        max_body_bytes: 64 * 1024,
        max_attributes: 32,
        max_attribute_bytes: 1024,
        max_append_batch: 100,
        max_page_size: 50,
        max_pages: 100,
        max_removal_ids: 50,
        max_members_per_call: 100,
        max_sender_filter: 20,
        max_conversation_page: 50,
        max_page_bytes: 3 * 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
