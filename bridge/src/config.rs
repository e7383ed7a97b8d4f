//! The `[groups]` section of bluetick's configuration: the limits the
//! bridge holds group changes to (bluetick's `src/config.rs` composes it
//! with the other sections).

use serde::{Deserialize, Serialize};

use crate::groups::GroupRules;

/// The `[groups]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsConfig {
    /// Most members of one group; adding one more is refused with
    /// `group_full`.
    pub max_members: usize,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            max_members: protocol::groups::DEFAULT_MAX_MEMBERS,
        }
    }
}

impl GroupsConfig {
    /// The rules the bridge applies (at least one member: the creator).
    pub fn rules(&self) -> GroupRules {
        GroupRules {
            max_members: self.max_members.max(1),
        }
    }
}
