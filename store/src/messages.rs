//! Messages: stored once, sealed, deduplicated on
//! (sender, client id), and marked delivered and read only forward.

use diesel::prelude::*;
use protocol::messages::MediaRef;
use std::collections::HashSet;

use crate::db::Tx;
use crate::schema::{message_history, messages, messages_archive, users};
use crate::StoreError;

/// A message to store.
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'a> {
    pub sender: &'a str,
    pub recipient: &'a str,
    /// The sender's own id for it; a second message with it is a resend.
    pub client_id: &'a str,
    pub body: &'a str,
    pub media: Option<&'a MediaRef>,
    pub sent_at: i64,
    /// When expiry deletes it (the chat's disappearing timer).
    pub expires_at: Option<i64>,
}

/// A stored message as a resend finds it: id, recipient, sealed body,
/// sealed media, sent at, expires at.
type FirstStored = (i64, String, Vec<u8>, Option<Vec<u8>>, i64, Option<i64>);

/// What storing a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A new message with this server id.
    New { id: i64 },
    /// The sender already sent this client id: the message as first stored.
    Duplicate {
        id: i64,
        recipient: String,
        body: String,
        media: Option<MediaRef>,
        sent_at: i64,
        expires_at: Option<i64>,
    },
}

impl Tx<'_> {
    /// Which of `names` are registered users.
    pub fn existing_users(&mut self, names: &[&str]) -> Result<HashSet<String>, StoreError> {
        let found: Vec<String> = on_backend!(&mut *self.conn, c => users::table
            .filter(users::name.eq_any(names))
            .select(users::name)
            .load(c))?;
        Ok(found.into_iter().collect())
    }

    /// Stores `message` unless its sender already stored its client id.
    /// The caller has checked that its media, if any, is the sender's.
    pub fn store_message(&mut self, message: &NewMessage<'_>) -> Result<Stored, StoreError> {
        let NewMessage {
            sender,
            recipient,
            client_id,
            body,
            media,
            sent_at,
            expires_at,
        } = *message;
        let sealed = self.sealer()?.seal(body.as_bytes());
        let sealed_media = match media {
            Some(media) => Some(self.sealer()?.seal(&serde_json::to_vec(media).map_err(|e| {
                StoreError::Corrupt(format!("media reference does not serialize: {e}"))
            })?)),
            None => None,
        };
        // A resend can come after its first copy was archived (a device
        // whose user's other devices fetched the ack, a browser retrying an
        // HTTP send); the archive is checked first so it is not stored twice.
        let archived: Option<i64> = on_backend!(&mut *self.conn, c => messages_archive::table
            .filter(messages_archive::sender.eq(sender))
            .filter(messages_archive::client_id.eq(client_id))
            .select(messages_archive::id)
            .first(c)
            .optional())?;
        if archived.is_none() {
            let inserted: Option<i64> = on_backend!(&mut *self.conn, c => diesel::insert_into(messages::table)
                .values((
                    messages::sender.eq(sender),
                    messages::recipient.eq(recipient),
                    messages::client_id.eq(client_id),
                    messages::body.eq(&sealed),
                    messages::media_id.eq(media.map(|m| m.id.as_str())),
                    messages::media.eq(&sealed_media),
                    messages::sent_at.eq(sent_at),
                    messages::expires_at.eq(expires_at),
                ))
                .on_conflict((messages::sender, messages::client_id))
                .do_nothing()
                .returning(messages::id)
                .get_result(c)
                .optional())?;
            if let Some(id) = inserted {
                // Search terms are written later, off the send path, by
                // the indexer (`store::indexer`).
                return Ok(Stored::New { id });
            }
        }
        let (id, recipient, body, media, sent_at, expires_at): FirstStored = on_backend!(&mut *self.conn, c => message_history::table
            .filter(message_history::sender.eq(sender))
            .filter(message_history::client_id.eq(client_id))
            .select((message_history::id, message_history::recipient, message_history::body, message_history::media, message_history::sent_at, message_history::expires_at))
            .first(c))?;
        let body = self.sealer()?.open_string(&body)?;
        let media = open_media(self.sealer()?, media.as_deref())?;
        Ok(Stored::Duplicate {
            id,
            recipient,
            body,
            media,
            sent_at,
            expires_at,
        })
    }

    /// Marks these messages delivered at `at`, where not yet delivered.
    pub fn mark_delivered(&mut self, ids: &[i64], at: i64) -> Result<usize, StoreError> {
        Ok(on_backend!(&mut *self.conn, c => diesel::update(
            messages::table.filter(messages::id.eq_any(ids)).filter(messages::delivered_at.is_null()),
        )
        .set(messages::delivered_at.eq(at))
        .execute(c))?)
    }

    /// Marks every unread message from `sender` to `reader` with id ≤
    /// `up_to` as read, and as delivered too when `implies_delivered` (the
    /// sender will get a read receipt, which says both). Archived messages
    /// are marked too: an old message may be read late. Returns the
    /// highest id that changed, if any did.
    pub fn mark_read(
        &mut self,
        reader: &str,
        sender: &str,
        up_to: i64,
        at: i64,
        implies_delivered: bool,
    ) -> Result<Option<i64>, StoreError> {
        let newest: Option<i64> = on_backend!(&mut *self.conn, c => message_history::table
            .filter(message_history::sender.eq(sender))
            .filter(message_history::recipient.eq(reader))
            .filter(message_history::id.le(up_to))
            .filter(message_history::read_at.is_null())
            .select(diesel::dsl::max(message_history::id))
            .first(c))?;
        if newest.is_none() {
            return Ok(None);
        }
        // The same update on the hot table and on the archive.
        macro_rules! mark {
            ($table:ident) => {{
                let unread = $table::table
                    .filter($table::sender.eq(sender))
                    .filter($table::recipient.eq(reader))
                    .filter($table::id.le(up_to))
                    .filter($table::read_at.is_null());
                if implies_delivered {
                    let delivered = diesel::dsl::sql::<
                        diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
                    >(&format!("COALESCE(delivered_at, {at})"));
                    on_backend!(&mut *self.conn, c => diesel::update(unread)
                        .set(($table::read_at.eq(at), $table::delivered_at.eq(delivered)))
                        .execute(c))?;
                } else {
                    // No read receipt will go out, so delivery is left for
                    // the reader's inbox ack to report.
                    on_backend!(&mut *self.conn, c => diesel::update(unread).set($table::read_at.eq(at)).execute(c))?;
                }
            }};
        }
        mark!(messages);
        mark!(messages_archive);
        Ok(newest)
    }
}

/// Opens a message's sealed media reference.
pub(crate) fn open_media(
    sealer: &crate::Sealer,
    sealed: Option<&[u8]>,
) -> Result<Option<MediaRef>, StoreError> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let json = sealer.open(sealed)?;
    serde_json::from_slice(&json)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("media reference: {e}")))
}
