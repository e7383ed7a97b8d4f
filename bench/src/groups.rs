//! The groups of `--pattern groups`: the bench's users split into groups
//! of `--group-size`, each created over the HTTP API (`POST /v1/groups`,
//! by its first member) before any load starts, so every member's inbox
//! already belongs to its group when the first message is sent.

use anyhow::Context;
use protocol::groups::{Group as ServerGroup, NewGroup};
use std::net::SocketAddr;

use super::server::http_request;

/// One group of the run.
#[derive(Debug, Clone)]
pub struct Group {
    /// The server's id for it.
    pub id: i64,
    /// Its members, as indexes into the bench's users.
    pub members: Vec<usize>,
}

/// Which group each user is in, and the groups.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub groups: Vec<Group>,
    /// User index → index into `groups`.
    pub group_of: Vec<usize>,
}

impl Plan {
    /// Members of `group` other than `sender`: who must receive its message.
    pub fn recipients(&self, group: usize, sender: usize) -> impl Iterator<Item = usize> + '_ {
        self.groups[group]
            .members
            .iter()
            .copied()
            .filter(move |&member| member != sender)
    }
}

/// Splits `users` (name, token) into consecutive groups of `size` and
/// creates each on the server at `http`, as its first member.
pub fn create(http: SocketAddr, users: &[(String, String)], size: usize) -> anyhow::Result<Plan> {
    anyhow::ensure!(size >= 2, "--group-size must be at least 2");
    anyhow::ensure!(
        users.len().is_multiple_of(size),
        "--users ({}) must be a multiple of --group-size ({size}): one group per {size} users",
        users.len()
    );
    let mut plan = Plan {
        groups: Vec::new(),
        group_of: vec![0; users.len()],
    };
    for (number, chunk) in (0..users.len()).collect::<Vec<_>>().chunks(size).enumerate() {
        let (creator, token) = &users[chunk[0]];
        let body = serde_json::to_string(&NewGroup {
            id: None,
            name: format!("bench {number}"),
            members: chunk[1..].iter().map(|&i| users[i].0.clone()).collect(),
        })?;
        let (status, answer) = http_request(http, "POST", "/v1/groups", Some(&body), Some(token))?;
        anyhow::ensure!(
            status == 201,
            "{creator} creating group {number} of {size}: HTTP {status} {answer}"
        );
        let created: ServerGroup = serde_json::from_str(&answer)
            .with_context(|| format!("creating group {number}: the answer is no group: {answer}"))?;
        anyhow::ensure!(
            created.members.len() == size,
            "group {number} has {} members, not {size}",
            created.members.len()
        );
        let id = created.id;
        for &member in chunk {
            plan.group_of[member] = plan.groups.len();
        }
        plan.groups.push(Group {
            id,
            members: chunk.to_vec(),
        });
    }
    Ok(plan)
}
