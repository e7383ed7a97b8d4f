//! Which group messages one user may see: the windows of every group they
//! were ever in, as a SQL condition that every read able to return a group
//! message (history, search, stars, media, the chat list, export) adds to
//! its filter. The rule itself, and the reads of groups, are described in
//! [`crate::group_history`].

use diesel::dsl::sql;
use diesel::sql_types::Bool;
use protocol::groups::GroupId;
use std::collections::HashMap;

use crate::groups::{recipient_of, Window};
use crate::{Store, StoreError};

/// The group messages one user may see: their windows in every group they
/// were ever in.
#[derive(Debug, Clone, Default)]
pub struct Visible {
    windows: HashMap<GroupId, Vec<Window>>,
}

impl Visible {
    /// No group message at all.
    pub fn none() -> Visible {
        Visible::default()
    }

    /// The windows of the groups `windows` names.
    pub fn of(windows: HashMap<GroupId, Vec<Window>>) -> Visible {
        Visible { windows }
    }

    /// Only `group`'s messages (of those visible).
    pub fn only(mut self, group: GroupId) -> Visible {
        self.windows.retain(|&g, _| g == group);
        self
    }

    /// The groups with at least one window.
    pub fn groups(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.windows.keys().copied()
    }

    /// A SQL condition true for exactly the visible group messages, on the
    /// columns `owner` (a recipient, `#17`) and `id`. Only integers and
    /// group names made from them are written into it, never client input.
    pub fn sql(&self, owner: &str, id: &str) -> String {
        let mut clauses: Vec<String> = Vec::new();
        let mut groups: Vec<&GroupId> = self.windows.keys().collect();
        groups.sort();
        for group in groups {
            clauses.push(format!(
                "({owner} = '{}' AND {})",
                recipient_of(*group),
                self.windows_sql(*group, id)
            ));
        }
        any_of(clauses)
    }

    /// A SQL condition on the column `id` true for exactly the ids of
    /// `group`'s messages that are visible.
    pub fn windows_sql(&self, group: GroupId, id: &str) -> String {
        let clauses = self.windows.get(&group).into_iter().flatten().map(|window| {
            let upper = window
                .through_message
                .map(|through| format!(" AND {id} <= {through}"))
                .unwrap_or_default();
            format!("({id} > {}{upper})", window.after_message)
        });
        any_of(clauses.collect())
    }

    /// [`Visible::sql`] as a diesel condition.
    pub(crate) fn condition(&self, owner: &str, id: &str) -> diesel::expression::SqlLiteral<Bool> {
        sql::<Bool>(&self.sql(owner, id))
    }
}

/// `clauses` joined by OR; false when there are none.
fn any_of(clauses: Vec<String>) -> String {
    if clauses.is_empty() {
        // Portable FALSE (SQLite before 3.23 has no FALSE literal).
        "1 = 0".to_owned()
    } else {
        format!("({})", clauses.join(" OR "))
    }
}

impl Store {
    /// The group messages `user` may see.
    pub fn visible_to(&self, user: &str) -> Result<Visible, StoreError> {
        Ok(Visible::of(self.every_window_of(user)?))
    }
}
