//! The groups of `--pattern groups`: the bench's users split into groups
//! of `--group-size`, each created over the HTTP API (`POST /v1/groups`,
//! by its first member) before any load starts, so every member's inbox
//! already belongs to its group when the first message is sent.

use anyhow::Context;
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
        users.len() % size == 0,
        "--users ({}) must be a multiple of --group-size ({size}): one group per {size} users",
        users.len()
    );
    let mut plan = Plan {
        groups: Vec::new(),
        group_of: vec![0; users.len()],
    };
    for (number, chunk) in (0..users.len()).collect::<Vec<_>>().chunks(size).enumerate() {
        let (creator, token) = &users[chunk[0]];
        let members: Vec<&str> = chunk[1..].iter().map(|&i| users[i].0.as_str()).collect();
        let body = serde_json::json!({ "name": format!("bench {number}"), "members": members });
        let (status, answer) =
            http_request(http, "POST", "/v1/groups", Some(&body.to_string()), Some(token))?;
        anyhow::ensure!(
            status == 201,
            "{creator} creating group {number} of {size}: HTTP {status} {answer}"
        );
        let id = serde_json::from_str::<serde_json::Value>(&answer)?["id"]
            .as_i64()
            .with_context(|| format!("creating group {number}: no id in {answer}"))?;
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
