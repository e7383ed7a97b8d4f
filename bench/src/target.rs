//! Benching a server that is already running (`--target`): a deployment,
//! or a server on another machine. The bench cannot reach its database,
//! so it gets its users over the HTTP API: it logs in the users of a
//! credentials file, or registers fresh ones.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::Path;

use super::server::http_request;

/// The password of users the bench registers itself.
const REGISTERED_PASSWORD: &str = "bench password, not a secret";

/// `count` users with a fresh token each: the first `count` lines of
/// `credentials` (`name:password`), or, without a file, new users named
/// `{prefix}_{i}` registered on the server.
pub fn provision(
    http: SocketAddr,
    credentials: Option<&Path>,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let accounts: Vec<(String, String)> = match credentials {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let accounts: Vec<(String, String)> = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(|line| {
                    line.split_once(':')
                        .map(|(name, password)| (name.to_owned(), password.to_owned()))
                        .with_context(|| format!("{}: a line is not name:password", path.display()))
                })
                .take(count)
                .collect::<anyhow::Result<_>>()?;
            anyhow::ensure!(
                accounts.len() == count,
                "{} has {} accounts; --users asks for {count}",
                path.display(),
                accounts.len()
            );
            accounts
        }
        None => (0..count)
            .map(|i| {
                let name = format!("{prefix}_{i}");
                let body = credentials_json(&name, REGISTERED_PASSWORD);
                let (status, answer) = http_request(http, "POST", "/v1/users", Some(&body), None)?;
                anyhow::ensure!(status == 201, "registering {name}: HTTP {status} {answer}");
                Ok((name, REGISTERED_PASSWORD.to_owned()))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    accounts
        .into_iter()
        .map(|(name, password)| {
            let body = credentials_json(&name, &password);
            let (status, answer) = http_request(http, "POST", "/v1/tokens", Some(&body), None)?;
            anyhow::ensure!(status == 201, "logging in {name}: HTTP {status} {answer}");
            let token = serde_json::from_str::<serde_json::Value>(&answer)?["token"]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("logging in {name}: no token in {answer}"))?;
            Ok((name, token))
        })
        .collect()
}

fn credentials_json(name: &str, password: &str) -> String {
    serde_json::json!({ "name": name, "password": password }).to_string()
}
