//! A user's export (their messages in clear) and device backups, of which
//! the newest are kept.

mod common;

use common::http::request;
use common::jobs::{operator_ok, send_http};
use common::{Options, Server};
use serde_json::{json, Value};
use std::io::Read;
use store::on_both_backends;

on_both_backends! {
    async fn a_user_export_holds_their_messages_in_clear_and_device_backups_keep_the_newest(backend) {
        let server = Server::start_with(backend, Options::default()
            .env("BLUETICK_JOBS__DEVICE_BACKUPS_KEPT", "2")
            .env("BLUETICK_JOBS__DEVICE_BACKUP_MAX_BYTES", "1000"));
        let alice = server.register("alice");
        let bob = server.register("bob");
        send_http(&server, &alice, "a-1", "bob", "for bob's eyes");
        send_http(&server, &bob, "b-1", "alice", "and back");
        let document = b"%PDF-1.4 for alice";
        let media_id = common::media::upload_ok(server.http, &bob, "application/pdf", document);
        let with_media = json!({ "id": "b-2", "to": "alice", "media": { "id": media_id } }).to_string();
        let sent = request(server.http, "POST", "/v1/messages", Some(&with_media), Some(&bob));
        assert_eq!(sent.status, 201, "{}", sent.body);
        for i in 0..3 {
            let put = request(server.http, "PUT", "/v1/me/backup", Some(&format!("backup {i}")), Some(&alice));
            assert_eq!(put.status, 201, "{}", put.body);
        }
        assert_eq!(server.store().device_backups("alice").unwrap().len(), 2);
        let latest = request(server.http, "GET", "/v1/me/backup", None, Some(&alice));
        assert_eq!(latest.body, "backup 2");
        let too_big = request(server.http, "PUT", "/v1/me/backup", Some(&"x".repeat(1001)), Some(&alice));
        assert_eq!((too_big.status, too_big.error_code().as_str()), (413, "too_large"));
        let none = request(server.http, "GET", "/v1/me/backup", None, Some(&bob));
        assert_eq!(none.status, 404);
        let anonymous = request(server.http, "PUT", "/v1/me/backup", Some("x"), None);
        assert_eq!(anonymous.status, 401);

        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("alice.zip");
        let printed = operator_ok(&server, &["user", "export", "alice", "--output", path.to_str().unwrap()]);
        assert_eq!(printed.trim(), path.display().to_string());
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let mut read = |name: &str| {
            let mut text = String::new();
            zip.by_name(name).unwrap().read_to_string(&mut text).unwrap();
            serde_json::from_str::<Value>(&text).unwrap()
        };
        assert_eq!(read("user.json")["name"], "alice");
        let messages = read("messages.json");
        let bodies: Vec<&str> = messages.as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
        assert_eq!(bodies, ["for bob's eyes", "and back", ""]);
        let media = read("media.json");
        assert_eq!(media.as_array().unwrap().len(), 1, "{media}");
        assert_eq!(media[0]["media_id"], media_id.as_str());
        assert_eq!(media[0]["owner"], "bob");
        assert_eq!(media[0]["sha256"], common::media::sha256_hex(document));
        assert_eq!(read("device_backups.json").as_array().unwrap().len(), 2);
        assert_eq!(server.store().presence_of("alice").unwrap(), (false, None), "nothing here moved last seen");
    }
}
