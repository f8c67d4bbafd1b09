//! Roaming's gRPC contracts: generated messages, clients and servers, plus the encoded
//! descriptor set that server reflection serves.

/// Shared types: `ConversationRef`, `Message` and their enums.
pub mod common {
    /// Version 1 of `roaming.common`.
    pub mod v1 {
        tonic::include_proto!("roaming.common.v1");
    }
}

/// The history service contract.
pub mod history {
    /// Version 1 of `roaming.history`.
    pub mod v1 {
        tonic::include_proto!("roaming.history.v1");
    }
}

/// The conversation service contract.
pub mod conversation {
    /// Version 1 of `roaming.conversation`.
    pub mod v1 {
        tonic::include_proto!("roaming.conversation.v1");
    }
}

/// The encoded `FileDescriptorSet` of every Roaming proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/roaming_descriptor.bin"));

#[cfg(test)]
mod tests {
    use prost::Message as _;

    #[test]
    fn file_descriptor_set_is_valid_and_names_every_service() {
        let fds = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let services: Vec<String> = fds
            .file
            .iter()
            .flat_map(|f| {
                let pkg = f.package().to_owned();
                f.service.iter().map(move |s| format!("{pkg}.{}", s.name()))
            })
            .collect();
        assert!(services.contains(&"roaming.history.v1.HistoryService".to_owned()));
        assert!(services.contains(&"roaming.conversation.v1.ConversationService".to_owned()));
    }
}
