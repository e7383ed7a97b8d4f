//! The MQTT side under abuse (issue 12), "one user must never be able to stop messaging for
//! everyone": each test plays an attack or a hostile network against a real
//! server and checks that the server stays up with bounded memory, that
//! other users' messages keep flowing, and that the attacker gets a clear
//! refusal.

mod common;

use common::chat::{App, WAIT};
use common::mqtt::{self, Outcome};
use common::{eventually, media, tools, ws, Backend, Options, Server};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store::on_both_backends;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1 << 20;

/// Opens a WebSocket without logging in and starts a 48 MiB binary message
/// in `fragment`-byte frames that it never finishes. True if the server
/// closed the connection.
async fn unfinished_48_mib_message(server: std::net::SocketAddr, fragment: usize) -> bool {
    let mut socket = ws::upgrade(server).await.expect("the WebSocket upgrade");
    let chunk = vec![b'x'; fragment];
    let mut sent = 0;
    while sent < 48 * MIB {
        let opcode = if sent == 0 { ws::BINARY } else { ws::CONTINUATION };
        let header = ws::frame(opcode, false, fragment);
        if socket.write_all(&header).await.is_err() || socket.write_all(&chunk).await.is_err() {
            return true;
        }
        sent += fragment;
    }
    ws::closed_within(&mut socket, Duration::from_secs(30)).await
}

/// The return code of the CONNACK on a raw MQTT socket, if one arrives.
async fn connack(socket: &mut tokio::net::TcpStream) -> Option<u8> {
    let mut ack = [0u8; 4];
    let read = tokio::time::timeout(mqtt::TIMEOUT, socket.read_exact(&mut ack)).await;
    matches!(read, Ok(Ok(_)) if ack[0] == 0x20).then_some(ack[3])
}

/// The highest VmRSS of `pid`, in KiB, sampled until `stop` is set.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut highest = 0;
        while !stop.load(Ordering::Relaxed) {
            highest = highest.max(media::proc_kib(pid, "VmRSS"));
            std::thread::sleep(Duration::from_millis(20));
        }
        highest.max(media::proc_kib(pid, "VmRSS"))
    })
}

on_both_backends! {
    /// Eight sockets that never log in each start a 48 MiB WebSocket
    /// message (four in 1 MiB frames, four in 64 KiB frames). This grew the
    /// server by ~520 MB in 1.5 s; now no frame or message larger than an
    /// MQTT packet is buffered, the attackers are closed with 1009, and
    /// alice's messages reach bob meanwhile.
    async fn anonymous_websockets_sending_huge_messages_neither_grow_the_server_nor_stop_chat(backend) {
        let server = Server::start(backend);
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let dir = tempfile::tempdir().unwrap();
        let alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
        alice.client.send("bob", "before the flood").await.unwrap();
        bob.message_from("alice", "before the flood").await;

        let pid = server.pid();
        let baseline = media::proc_kib(pid, "VmRSS");
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_rss(pid, stop.clone());
        let attackers: Vec<_> = (0..8)
            .map(|i| tokio::spawn(unfinished_48_mib_message(server.ws, if i % 2 == 0 { MIB } else { 64 * 1024 })))
            .collect();
        alice.client.send("bob", "during the flood").await.unwrap();
        bob.message_from("alice", "during the flood").await;
        for attacker in attackers {
            assert!(attacker.await.unwrap(), "the server closes a socket sending an oversized message");
        }
        stop.store(true, Ordering::Relaxed);
        let highest = sampler.join().unwrap();
        let growth_mib = highest.saturating_sub(baseline) as f64 / 1024.0;
        println!("RSS before {:.1} MiB, highest during the flood {:.1} MiB: +{growth_mib:.1} MiB",
            baseline as f64 / 1024.0, highest as f64 / 1024.0);
        assert!(growth_mib < 100.0, "the server grew by {growth_mib:.1} MiB");

        alice.client.send("bob", "after the flood").await.unwrap();
        bob.message_from("alice", "after the flood").await;
        assert!(eventually(WAIT, || server.metric(r#"bluetick_mqtt_refusals_total{reason="websocket_too_big"}"#) == 8.0).await);
    }

    /// Sockets that have not logged in are capped per source address on
    /// each listener, closed at accept over the cap, and closed when they
    /// do not log in in time; logging in frees their place.
    async fn anonymous_sockets_are_capped_per_address_and_closed_when_they_do_not_log_in(backend) {
        let server = Server::start_with(backend, Options::default()
            .env("BLUETICK_MQTT__MAX_PENDING_LOGINS_PER_ADDRESS", "4")
            .env("BLUETICK_MQTT__LOGIN_TIMEOUT_SECS", "3")
            .env("BLUETICK_MQTT__CONNECT_TIMEOUT_SECS", "5"));
        let token = server.register("alice");
        let creds = Some(("alice", token.as_str()));

        // WebSocket: four silent sockets take this address's places...
        let mut silent = Vec::new();
        for _ in 0..4 {
            silent.push(ws::upgrade(server.ws).await.expect("a place for each of the first four"));
        }
        // ...so a fifth is closed at once, before its handshake.
        assert!(ws::upgrade(server.ws).await.is_none(), "a fifth anonymous WebSocket is closed");
        // The TCP listener keeps its own places: alice still logs in there.
        let mut phone = mqtt::connect(server.mqtt, "alice.phone", creds).await.expect_connected();
        // Nobody logged in on the silent sockets: the deadline closes them.
        for socket in &mut silent {
            assert!(ws::closed_within(socket, Duration::from_secs(30)).await, "a silent WebSocket is closed");
        }
        assert!(server.metric(r#"bluetick_mqtt_refusals_total{reason="login_timeout"}"#) >= 1.0);
        assert!(server.metric(r#"bluetick_mqtt_refusals_total{reason="pending_logins_per_address"}"#) >= 1.0);

        // Their places are free again; a client that logs in gives its
        // place back, so four more anonymous sockets still fit after it.
        let mut web = ws::upgrade(server.ws).await.expect("a place after the deadline");
        ws::send_binary(&mut web, &mqtt::connect_packet("alice.web", "alice", &token)).await.unwrap();
        let (_, connack) = ws::read_frame(&mut web).await.expect("a CONNACK");
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "CONNACK 0 over WebSocket");
        let mut again = Vec::new();
        for _ in 0..4 {
            again.push(ws::upgrade(server.ws).await.expect("the logged-in client holds no place"));
        }

        // TCP: the same cap, and rumqttd's CONNECT timeout is the deadline.
        let mut quiet = Vec::new();
        for _ in 0..4 {
            quiet.push(tokio::net::TcpStream::connect(server.mqtt).await.unwrap());
        }
        let mut fifth = tokio::net::TcpStream::connect(server.mqtt).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), fifth.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "a fifth anonymous TCP socket is closed at once");
        for socket in &mut quiet {
            let read = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut byte)).await;
            assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "a silent TCP socket is closed");
        }
        // rumqttd gives the place back just after closing the socket; a
        // client that retries, as clients do, gets in.
        let laptop = mqtt::connect_retrying(server.mqtt, "alice.laptop", creds, 50).await;
        assert!(laptop.is_some(), "a client logs in over TCP once the silent sockets are gone");
        assert!(phone.is_alive("u/alice/inbox").await, "logged-in clients never noticed");
    }

    /// A phone on a flaky network drops its link and reconnects at once
    /// with the same client id. rumqttd's takeover used to drop the *new*
    /// link (without a CONNACK) in 4 to 8 of 10 tries.
    async fn a_phone_reconnecting_at_once_with_the_same_client_id_always_gets_connack_0(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let creds = Some(("alice", token.as_str()));
        let mut link = mqtt::connect(server.mqtt, "alice.phone", creds).await.expect_connected();
        for round in 0..10 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            link.abort();
            link = match mqtt::connect(server.mqtt, "alice.phone", creds).await {
                Outcome::Connected(client) => client,
                Outcome::Refused(code) => panic!("round {round}: reconnect refused with {code:?}"),
                Outcome::Closed(e) => panic!("round {round}: reconnect closed without a CONNACK: {e}"),
            };
            assert!(link.is_alive("u/alice/inbox").await, "round {round}: the new link was dropped");
        }
        link.abort();

        // Closer still: the new CONNECT is on its way while the old socket
        // closes, so the router sees the takeover and the old link's end in
        // either order.
        let packet = mqtt::connect_packet("alice.phone", "alice", &token);
        let mut old = tokio::net::TcpStream::connect(server.mqtt).await.unwrap();
        old.write_all(&packet).await.unwrap();
        assert_eq!(connack(&mut old).await, Some(0));
        for round in 0..30u64 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut new = tokio::net::TcpStream::connect(server.mqtt).await.unwrap();
            new.write_all(&packet).await.unwrap();
            tokio::time::sleep(Duration::from_micros(200 * (round % 10))).await;
            drop(old);
            assert_eq!(connack(&mut new).await, Some(0), "overlapping round {round}");
            old = new;
        }
    }

    /// The same, with a persistent session: the reconnected link still has
    /// its subscription, so the inbox push arrives without a new SUBSCRIBE.
    async fn a_persistent_session_survives_an_immediate_reconnect(backend) {
        let server = Server::start(backend);
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let mut options = mqtt::options(server.mqtt, "alice.phone", Some(("alice", &alice_token)));
        options.set_clean_session(false);
        let mut phone = mqtt::connect_with(options.clone()).await.expect_connected();
        phone.subscribe_ok("u/alice/inbox").await;
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            phone.abort();
            phone = mqtt::connect_with(options.clone()).await.expect_connected();
        }
        let dir = tempfile::tempdir().unwrap();
        let bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
        bob.client.send("alice", "kept in the session").await.unwrap();
        let push = phone.next_message(WAIT).await.expect("the inbox push, with no new SUBSCRIBE");
        assert_eq!(push.topic, "u/alice/inbox");
        assert!(String::from_utf8_lossy(&push.payload).contains("kept in the session"));
    }

    /// A user's publish with the retain flag set is delivered but never
    /// retained (only the server retains, on presence topics), so nothing
    /// is replayed to later subscribers.
    async fn the_retain_flag_on_a_users_publish_is_cleared(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let creds = Some(("alice", token.as_str()));
        let mut watcher = mqtt::connect(server.mqtt, "alice.watch", creds).await.expect_connected();
        watcher.subscribe_ok("u/alice/typing").await;
        let phone = mqtt::connect(server.mqtt, "alice.phone", creds).await.expect_connected();
        phone.client
            .publish("u/alice/typing", rumqttc::QoS::AtLeastOnce, true, r#"{"to":"bob"}"#)
            .await
            .unwrap();
        let live = watcher.next_message(mqtt::TIMEOUT).await.expect("delivered to current subscribers");
        assert!(!live.retain);

        let mut later = mqtt::connect(server.mqtt, "alice.later", creds).await.expect_connected();
        later.subscribe_ok("u/alice/typing").await;
        assert!(later.next_message(Duration::from_secs(2)).await.is_none(), "nothing retained for later subscribers");
        assert_eq!(server.metric("bluetick_mqtt_retain_stripped_total"), 1.0);
    }

    /// Refused topics are logged cut short and at most once per interval,
    /// so a client sending thousands of long refused filters cannot flood
    /// the log; the metric still counts every one.
    async fn refused_topics_are_logged_cut_short_and_rate_limited(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let creds = Some(("alice", token.as_str()));
        let mut phone = mqtt::connect(server.mqtt, "alice.phone", creds).await.expect_connected();
        let long = "x".repeat(4000);
        let filters: Vec<_> = (0..50)
            .map(|i| rumqttc::SubscribeFilter::new(format!("u/bob{i}/{long}"), rumqttc::QoS::AtLeastOnce))
            .collect();
        phone.client.subscribe_many(filters).await.unwrap();
        assert!(eventually(WAIT, || server.metric(r#"bluetick_mqtt_refusals_total{reason="forbidden_subscribe"}"#) == 50.0).await);
        assert!(phone.is_alive("u/alice/inbox").await);
        let publisher = mqtt::connect(server.mqtt, "alice.pub", creds).await.expect_connected();
        publisher.publish(&format!("u/bob/{long}"), "no").await;
        assert!(eventually(WAIT, || server.metric(r#"bluetick_mqtt_refusals_total{reason="forbidden_publish"}"#) == 1.0).await);

        let log = server.log();
        let refused: Vec<_> = log.lines().filter(|l| l.contains("subscription refused")).collect();
        assert_eq!(refused.len(), 1, "one line for 50 refusals within the interval");
        assert!(log.contains("publish refused"));
        assert!(!log.contains(&"x".repeat(200)), "no refused topic is logged in full");
    }

    /// A flood of made-up tokens fills only the cache of refused tokens:
    /// a valid user who logged in before is still answered from memory,
    /// not sent back to the database.
    async fn a_flood_of_random_tokens_never_sends_valid_users_back_to_the_database(backend) {
        let server = Server::start_with(backend, Options::default()
            .env("BLUETICK_AUTH__CACHE_TTL_SECS", "600")
            .env("BLUETICK_AUTH__CACHE_CAPACITY", "50")
            .env("BLUETICK_AUTH__NEGATIVE_CACHE_CAPACITY", "50"));
        let token = server.register("alice");
        let creds = Some(("alice", token.as_str()));
        mqtt::connect(server.mqtt, "alice.phone", creds).await.expect_connected().disconnect().await;
        let valid_checks = r#"bluetick_auth_store_checks_total{result="valid"}"#;
        assert_eq!(server.metric(valid_checks), 1.0);

        for i in 0..200 {
            let made_up = format!("bt_made_up_{i:04}");
            let outcome = mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &made_up))).await;
            assert_eq!(outcome.refusal(), rumqttc::ConnectReturnCode::BadUserNamePassword);
        }
        assert_eq!(server.metric(r#"bluetick_auth_store_checks_total{result="invalid"}"#), 200.0);

        mqtt::connect(server.mqtt, "alice.phone", creds).await.expect_connected();
        assert_eq!(server.metric(valid_checks), 1.0, "alice was answered from memory");
    }

    /// Issue 13: the guard's connect/disconnect events wait in a bounded
    /// queue. Overflowing it (capacity 1 here) drops connects, counted, but
    /// never a disconnect: when everyone has gone, nobody is left online.
    async fn a_connect_flood_overflowing_the_event_queue_leaves_no_ghost_online(backend) {
        let server = Server::start_with(backend, Options::default().env("BLUETICK_MQTT__EVENT_QUEUE_CAPACITY", "1"));
        let token = server.register("alice");
        let connecting: Vec<_> = (0..30)
            .map(|i| {
                let (addr, token) = (server.mqtt, token.clone());
                tokio::spawn(async move {
                    mqtt::connect(addr, &format!("alice.d{i}"), Some(("alice", &token))).await.expect_connected()
                })
            })
            .collect();
        let mut devices = Vec::new();
        for device in connecting {
            devices.push(device.await.unwrap());
        }
        for device in devices {
            device.abort();
        }
        let overflowed = server.metric("bluetick_broker_events_dropped_total")
            + server.metric("bluetick_broker_events_deferred_total");
        assert!(overflowed > 0.0, "the queue overflowed (else this test proves nothing)");
        let store = server.store();
        assert!(eventually(WAIT, || !store.is_online("alice").unwrap()).await, "a ghost stayed online");

        // The queue drained: a new connection is recorded again.
        let _phone = mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &token))).await.expect_connected();
        assert!(eventually(WAIT, || store.is_online("alice").unwrap()).await);
    }

    /// A phone that reconnects while its old link is still open takes
    /// over; the old link's end must not fire the last will ("offline"),
    /// which now belongs to the live link. The will still fires when that
    /// link is lost.
    async fn a_takeover_does_not_fire_the_last_will_of_the_device_that_reconnected(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let creds = Some(("alice", token.as_str()));
        let mut watcher = mqtt::connect(server.mqtt, "alice.watch", creds).await.expect_connected();
        watcher.subscribe_ok("u/alice/presence").await;
        let offline = r#"{"state":"offline","device":"phone"}"#;
        let mut options = mqtt::options(server.mqtt, "alice.phone", creds);
        options.set_last_will(rumqttc::LastWill::new("u/alice/presence", offline, rumqttc::QoS::AtLeastOnce, false));
        let old = mqtt::connect_with(options.clone()).await.expect_connected();
        let new = mqtt::connect_with(options).await.expect_connected();
        assert!(watcher.next_message(Duration::from_secs(3)).await.is_none(), "no will fired by the takeover");
        drop(old);

        new.abort();
        let will = watcher.next_message(WAIT).await.expect("the will of the lost link");
        assert_eq!(will.payload.as_ref(), offline.as_bytes());
    }
}

/// The TLS listener applies the same caps before login, and closes a client
/// that finished its TLS handshake but does not log in in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_tls_sockets_are_capped_and_a_tls_client_that_does_not_log_in_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = tools::self_signed(dir.path());
    let server = Server::start_with(Backend::Sqlite, Options::default()
        .env("BLUETICK_MQTT__TLS_ADDR", "127.0.0.1:0")
        .env("BLUETICK_MQTT__TLS_CERT_FILE", cert.to_str().unwrap())
        .env("BLUETICK_MQTT__TLS_KEY_FILE", key.to_str().unwrap())
        .env("BLUETICK_MQTT__MAX_PENDING_LOGINS_PER_ADDRESS", "2")
        .env("BLUETICK_MQTT__LOGIN_TIMEOUT_SECS", "3"));
    let tls = server.tls.expect("the server prints its TLS address");

    // Two sockets that say nothing take this address's places on the TLS
    // listener; a third is closed at once.
    let held = [
        tokio::net::TcpStream::connect(tls).await.unwrap(),
        tokio::net::TcpStream::connect(tls).await.unwrap(),
    ];
    let mut third = tokio::net::TcpStream::connect(tls).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), third.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "a third anonymous TLS socket is closed at once");
    drop(held);

    // A client that completes the TLS handshake and then says nothing is
    // closed at the login deadline (openssl exits when the server closes).
    let mut silent = tools::tool("openssl")
        .args(["s_client", "-connect", &tls.to_string(), "-quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let closed = eventually(Duration::from_secs(30), || silent.try_wait().unwrap().is_some()).await;
    let _ = silent.kill();
    assert!(closed, "a TLS client that does not log in is closed");
    assert!(eventually(WAIT, || server.metric(r#"bluetick_mqtt_refusals_total{reason="login_timeout"}"#) >= 1.0).await);
}
