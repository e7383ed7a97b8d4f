//! The web client served at `/`, driven in a real headless Chromium by the
//! Playwright scripts of `tests/web/*.mjs` against a real `bluetick serve`.
//!
//! Each test starts a server, runs one script with `node` (the server's
//! URL in `BT_WEB_URL`) and asserts that it exited 0 and printed its
//! `ok:` lines. `scripts/test` installs what the scripts need: Debian's
//! `chromium`, and `playwright-core` and `mqtt` from npm into a cached
//! directory (`BT_WEB_NODE_MODULES`, by default
//! `~/.cache/bluetick/web-test/node_modules`). Screenshots land in
//! `target/web-screenshots/`.
//!
//! One browser runs at a time (a lock below): the machine is small, and a
//! browser scenario must never pass or fail on speed.

mod common;

use common::{http, Backend, Options, Server};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use store::on_both_backends;

/// One Chromium at a time.
static BROWSER: Mutex<()> = Mutex::new(());

/// Longest one scenario may take; far above what it needs on an idle machine.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(300);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}


/// Runs `tests/web/{script}` against `server` and returns what it printed;
/// panics (with the output and the server's log) unless it exited 0.
fn run_script(server: &Server, script: &str) -> String {
    let modules = common::tools::node_modules();
    assert!(
        modules.join("playwright-core").is_dir(),
        "playwright-core is not in {}: run scripts/test, which installs it (or set BT_WEB_NODE_MODULES)",
        modules.display()
    );
    let _one_browser = BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let out_path = server.data_dir.path().join(format!("{script}.out"));
    let out = std::fs::File::create(&out_path).expect("script output file");
    let mut child = Command::new("node")
        .arg(repo().join("tests/web").join(script))
        .current_dir(repo())
        .env("BT_WEB_URL", format!("http://{}", server.http))
        .env("BT_WEB_NODE_MODULES", &modules)
        .env("BT_WEB_SCREENSHOTS", repo().join("target/web-screenshots"))
        .stdout(out.try_clone().expect("clone output file"))
        .stderr(out)
        .spawn()
        .expect("run node (is Node.js installed?)");
    let deadline = Instant::now() + SCRIPT_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "{script} failed ({status:?}):\n{printed}\n--- server log ---\n{}",
        server.log()
    );
    assert!(printed.contains("scenario passed"), "{script}:\n{printed}");
    println!("{printed}");
    printed
}

/// A server for browser scenarios, with `settings` (`BLUETICK_*`) on top:
/// registrations are not throttled (each scenario registers fresh people
/// from one address).
fn server_with(backend: Backend, settings: &[(&str, &str)]) -> Server {
    let mut options =
        Options::default().env("BLUETICK_AUTH__MAX_REGISTRATIONS_PER_ADDRESS", "1000");
    for (key, value) in settings {
        options = options.env(key, value);
    }
    Server::start_with(backend, options)
}

fn server(backend: Backend) -> Server {
    server_with(backend, &[])
}

#[test]
fn the_page_and_its_files_are_served_from_the_binary() {
    let server = Server::start(Backend::Sqlite);
    let page = http::request(server.http, "GET", "/", None, None);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    assert!(page.body.contains("/web/app.js"), "{}", page.body);
    for file in ["app.js", "session.js", "vendor/mqtt.min.js", "style.css"] {
        let got = http::request(server.http, "GET", &format!("/web/{file}"), None, None);
        assert_eq!(got.status, 200, "/web/{file}");
        let on_disk = std::fs::read_to_string(repo().join("web").join(file)).unwrap();
        assert_eq!(got.body, on_disk, "/web/{file} is the file under web/");
    }
    let missing = http::request(server.http, "GET", "/web/nope.js", None, None);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), "not_found");
}

#[test]
fn the_client_config_names_the_servers_websocket() {
    let server = Server::start(Backend::Sqlite);
    let config = http::request(server.http, "GET", "/v1/client-config", None, None);
    assert_eq!(config.status, 200);
    assert_eq!(
        config.json()["ws_url"].as_str(),
        Some(format!("ws://{}/mqtt", server.ws).as_str())
    );
}

on_both_backends! {
    async fn two_browsers_chat_and_the_ticks_go_sent_delivered_read(backend) {
        let server = server(backend);
        run_script(&server, "chat.mjs");
    }

    async fn a_reload_or_going_offline_while_sending_loses_and_duplicates_nothing(backend) {
        let server = server(backend);
        run_script(&server, "outbox.mjs");
    }

    async fn typing_and_presence_show_and_disappear_under_privacy_nobody(backend) {
        let server = server(backend);
        run_script(&server, "presence.mjs");
    }

    async fn a_picture_arrives_as_a_thumbnail_and_opens_full_size(backend) {
        // A small limit, so that the too-large case stays cheap.
        let server = server_with(backend, &[("BLUETICK_MEDIA__MAX_SIZE", "2000000")]);
        run_script(&server, "media.mjs");
    }

    async fn search_stars_and_timer_work_from_the_browser(backend) {
        let server = server(backend);
        run_script(&server, "search.mjs");
    }

    async fn sign_in_errors_are_readable(backend) {
        let server = server_with(backend, &[("BLUETICK_AUTH__MAX_LOGIN_FAILURES", "3")]);
        run_script(&server, "signin.mjs");
    }

    async fn a_group_shows_in_every_members_list_and_names_each_sender(backend) {
        let server = server(backend);
        run_script(&server, "groups.mjs");
    }
}

#[test]
fn screenshots_at_phone_and_desktop_widths() {
    let server = server(Backend::Sqlite);
    run_script(&server, "screenshots.mjs");
    for name in [
        "desktop-chats",
        "desktop-conversation",
        "phone-chats",
        "phone-conversation",
    ] {
        let file = repo().join(format!("target/web-screenshots/{name}.png"));
        assert!(
            file.metadata().is_ok_and(|m| m.len() > 1000),
            "{}",
            file.display()
        );
    }
}
