//! Groups over HTTP, as the group tests drive them: a JSON request as one
//! user, and creating a group.

use serde_json::{json, Value};

use super::http::{request, Response};
use super::Server;

/// `method path` on the server's HTTP API as the owner of `token`, with an
/// optional JSON `body`.
pub fn call(server: &Server, method: &str, path: &str, body: Option<Value>, token: &str) -> Response {
    let body = body.map(|b| b.to_string());
    request(server.http, method, path, body.as_deref(), Some(token))
}

/// Creates the group `name` of `members` (the owner of `token` is its
/// creator and first admin) over HTTP, asserting it was created; its id.
pub fn create_group(server: &Server, token: &str, name: &str, members: &[&str]) -> i64 {
    let created = call(server, "POST", "/v1/groups", Some(json!({ "name": name, "members": members })), token);
    assert_eq!(created.status, 201, "create {name}: {}", created.body);
    created.json()["id"].as_i64().expect("group id")
}
