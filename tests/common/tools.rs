//! Stock tools the tests drive as an operator or a peer would: the
//! `openssl` command for certificates and a stock Mosquitto broker.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where scripts/test installs the npm packages the tests drive
/// (playwright-core, mqtt): `BT_WEB_NODE_MODULES`, by default
/// `~/.cache/bluetick/web-test/node_modules`.
pub fn node_modules() -> PathBuf {
    match std::env::var_os("BT_WEB_NODE_MODULES") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/bluetick/web-test/node_modules")
        }
    }
}

/// `name` as a command, failing the test clearly if it is not installed.
pub fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success());
    assert!(
        found.unwrap_or(false),
        "{name} is not installed: run the README's test command (scripts/test), which installs it"
    );
    Command::new(name)
}

/// A self-signed certificate for 127.0.0.1 and its key, made with the
/// openssl command as an operator would: (certificate, key).
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = tool("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}

/// A private CA and a server certificate for 127.0.0.1 it signed, made
/// with the openssl command as an operator would: (CA certificate, server
/// certificate, server key). Clients on rustls (the SDK) need this shape:
/// they refuse a self-signed CA certificate presented as the server's own.
pub fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let path = |name: &str| dir.join(name);
    let run = |args: &[&str]| {
        let made = tool("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            made.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-days",
            "2",
            "-subj",
            "/CN=test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ],
    ]
    .concat());
    std::fs::write(
        path("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "cert.pem",
    ]);
    (path("ca.pem"), path("cert.pem"), path("key.pem"))
}

/// A stock Mosquitto on a free loopback port (the one the conformance
/// suite plays against), stopped when dropped.
// Not every test binary that includes `common` starts one.
#[allow(unused_imports)]
pub use mosquitto_compat::mosquitto::Mosquitto;
