//! Live MQTT sessions: the seed's UserSessions.
//!
//! One row per connection, inserted when the guard reports a CONNACK and
//! deleted when it reports the connection gone. A node that restarts after a
//! crash never got to report its disconnects, so it clears its own rows at
//! start ([`Store::clear_node_sessions`]).

use diesel::prelude::*;

use crate::schema::sessions;
use crate::{Store, StoreError};

/// One live connection.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Session {
    /// Unique per connection across the cluster: `{node}:{counter}`.
    pub connection_id: String,
    pub user_name: String,
    pub client_id: String,
    /// Which server process holds the socket.
    pub node: String,
    /// Unix milliseconds.
    pub connected_at: i64,
}

impl Store {
    /// Records a new connection.
    pub fn open_session(&self, session: &Session) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        on_backend!(&mut *conn, c => diesel::insert_into(sessions::table)
            .values((
                sessions::connection_id.eq(&session.connection_id),
                sessions::user_name.eq(&session.user_name),
                sessions::client_id.eq(&session.client_id),
                sessions::node.eq(&session.node),
                sessions::connected_at.eq(session.connected_at),
            ))
            .execute(c))?;
        Ok(())
    }

    /// Forgets a connection that has gone.
    pub fn close_session(&self, connection_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        on_backend!(&mut *conn, c => diesel::delete(
            sessions::table.filter(sessions::connection_id.eq(connection_id)),
        )
        .execute(c))?;
        Ok(())
    }

    /// Deletes every session row of `node`; returns how many there were.
    pub fn clear_node_sessions(&self, node: &str) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let deleted = on_backend!(&mut *conn, c => diesel::delete(
            sessions::table.filter(sessions::node.eq(node)),
        )
        .execute(c))?;
        Ok(deleted)
    }

    /// The live connections of a user, oldest first.
    pub fn user_sessions(&self, user_name: &str) -> Result<Vec<Session>, StoreError> {
        let mut conn = self.conn()?;
        let rows = on_backend!(&mut *conn, c => sessions::table
            .filter(sessions::user_name.eq(user_name))
            .order(sessions::connected_at.asc())
            .select((sessions::connection_id, sessions::user_name, sessions::client_id, sessions::node, sessions::connected_at))
            .load::<Session>(c))?;
        Ok(rows)
    }
}
