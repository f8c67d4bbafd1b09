//! Who takes part in a conversation, and removing a conversation from lists: one-way for a
//! user, or purged for everyone.

use crate::error::Result;
use crate::history::view;
use crate::{Store, sql};
use roaming_domain::{Conversation, UserId};

impl Store {
    /// Removes `conversation` from `user`'s list on every device of theirs (FOR_ME), hiding
    /// the messages stored so far from them as well when `delete_messages` is set. Others keep
    /// everything. Idempotent.
    ///
    /// "So far" is the conversation's `last_seq` as committed when the statement runs: a
    /// message still being appended commits with a higher seq and stays visible, which is
    /// right, since no reader could have seen it before the removal.
    pub async fn remove_conversation_for(
        &self,
        user: &UserId,
        conversation: &Conversation,
        delete_messages: bool,
    ) -> Result<()> {
        with_conn!(self, |client| {
            view(&**client, user, conversation).await?;
            client
                .execute(
                    sql::REMOVE_FOR_ME,
                    &[&conversation.key(), &user.as_str(), &delete_messages],
                )
                .await?;
            Ok(())
        })
    }

    /// Purges `conversation` for everyone (FOR_EVERYONE): it leaves every participant's list
    /// until a newer message arrives, and with `delete_messages` every message stored so far
    /// is hidden from everybody and its body and attributes are erased from the database.
    /// Idempotent; a conversation that does not exist is left so.
    pub async fn purge_conversation(
        &self,
        conversation: &Conversation,
        delete_messages: bool,
    ) -> Result<()> {
        with_conn!(self, |client| {
            client
                .execute(sql::PURGE, &[&conversation.key(), &delete_messages])
                .await?;
            Ok(())
        })
    }

    /// Makes `users` members of a GROUP or CHATROOM (creating it on first use). A user who
    /// comes back keeps the one-way removals made before leaving. PEER conversations have no
    /// membership: `Error::Invalid` naming `conversation.type`.
    pub async fn add_members(&self, conversation: &Conversation, users: &[UserId]) -> Result<()> {
        conversation.require_group("conversation.type")?;
        let kind = conversation.kind().as_i16();
        let key = conversation.key();
        let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
        with_conn!(self, |client| {
            let tx = client.transaction().await?;
            tx.execute(sql::CREATE_CONVERSATION, &[&key, &kind]).await?;
            // Several rows are written: the conversation's row lock comes first (the schema
            // doc's "Lock order"), so this cannot deadlock with an append of its senders.
            tx.execute(sql::LOCK, &[&key]).await?;
            tx.execute(sql::ADD_PARTICIPANTS, &[&key, &ids, &kind])
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Ends `users`' membership of a GROUP or CHATROOM: at once they can neither fetch,
    /// append to nor list it. PEER conversations: as [`Store::add_members`].
    pub async fn remove_members(
        &self,
        conversation: &Conversation,
        users: &[UserId],
    ) -> Result<()> {
        conversation.require_group("conversation.type")?;
        let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
        with_conn!(self, |client| {
            client
                .execute(sql::REMOVE_MEMBERS, &[&conversation.key(), &ids])
                .await?;
            Ok(())
        })
    }
}
