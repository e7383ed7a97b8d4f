//! Media end to end, on the local store (with SQLite) and on a real S3
//! server (with PostgreSQL): upload, a media message over MQTT, download by
//! the recipient with ranges, refusals, deduplication, thumbnails, and the
//! server's memory while 1 GiB streams up and down.

mod common;

use client::AppEvent;
use common::chat::App;

use common::media::{self, get, object_store, sha256_hex, upload, upload_ok, MediaStore};
use common::mqtt::{self};
use common::{Backend, Options, Server};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Skips events until one of `kind` arrives.
async fn next_of(client: &mut mqtt::Client, kind: &str) -> serde_json::Value {
    loop {
        let event = client.next_inbox_event().await;
        if event["type"] == kind {
            return event;
        }
    }
}

/// `len` bytes that differ from test to test.
fn some_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

async fn connect(server: &Server, user: &str, token: &str) -> mqtt::Client {
    let mut client = mqtt::connect(server.mqtt, user, Some((user, token)))
        .await
        .expect_connected();
    client.subscribe_ok(&format!("u/{user}/inbox")).await;
    client
}

/// Sends a raw request head and returns what the server answered, without
/// ever sending a body.
fn answer_to_head_only(server: &Server, head: &str) -> String {
    let mut stream = TcpStream::connect(server.http).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut status = String::new();
    BufReader::new(stream)
        .read_line(&mut status)
        .expect("an answer before any body byte was sent");
    status
}

on_both_media_stores! {
    async fn recipient_downloads_the_same_bytes_and_strangers_get_404(backend, store) {
        let server = media::start(backend, store, Options::default());
        let alice = server.register("alice");
        let bob = server.register("bob");
        let carol = server.register("carol");
        let video = some_bytes(300_000, 7);
        let id = upload_ok(server.http, &alice, "video/mp4", &video);
        let db = server.store();
        let future = store::clock::now_ms() + 1;
        assert_eq!(db.media_orphans(future, 10).unwrap()[0].id, id, "unsent media is an orphan");

        let mut bob_mqtt = connect(&server, "bob", &bob).await;
        let alice_mqtt = connect(&server, "alice", &alice).await;
        // Bob cannot fetch it before a message carries it to him.
        assert_eq!(get(server.http, Some(&bob), &format!("/v1/media/{id}"), None).status, 404);
        let send = serde_json::json!({
            "id": "m-video-1", "to": "bob", "body": "",
            "media": { "id": id, "caption": "the beach" },
        });
        alice_mqtt.publish("u/alice/send", send.to_string()).await;
        let message = next_of(&mut bob_mqtt, "message").await;
        assert_eq!(message["from"], "alice");
        assert_eq!(message["media"]["id"], id.as_str());
        assert_eq!(message["media"]["mime"], "video/mp4");
        assert_eq!(message["media"]["size"], video.len() as u64);
        assert_eq!(message["media"]["caption"], "the beach");
        assert!(db.media_orphans(future, 10).unwrap().is_empty(), "sent media is no orphan");

        let path = format!("/v1/media/{}", message["media"]["id"].as_str().unwrap());
        let downloaded = get(server.http, Some(&bob), &path, None);
        assert_eq!(downloaded.status, 200);
        assert_eq!(sha256_hex(&downloaded.bytes), sha256_hex(&video));
        assert_eq!(downloaded.header("content-type"), Some("video/mp4"));
        assert_eq!(downloaded.header("accept-ranges"), Some("bytes"));
        assert_eq!(downloaded.header("x-content-type-options"), Some("nosniff"), "browsers must not sniff");
        assert_eq!(get(server.http, Some(&alice), &path, None).bytes, video, "the owner reads it too");

        let stranger = get(server.http, Some(&carol), &path, None);
        assert_eq!((stranger.status, stranger.error_code().as_str()), (404, "not_found"));
        let unknown = get(server.http, Some(&bob), &format!("/v1/media/{}", "0".repeat(32)), None);
        assert_eq!(unknown.status, 404);
        assert_eq!(unknown.bytes, stranger.bytes, "a stranger cannot tell the media exists");
        assert_eq!(get(server.http, None, &path, None).status, 401);

        let slice = get(server.http, Some(&bob), &path, Some("bytes=1000-1999"));
        assert_eq!(slice.status, 206);
        assert_eq!(slice.bytes, &video[1000..2000]);
        assert_eq!(slice.header("content-range"), Some("bytes 1000-1999/300000"));
        let tail = get(server.http, Some(&bob), &path, Some("bytes=-100"));
        assert_eq!((tail.status, tail.bytes.as_slice()), (206, &video[299_900..]));
        let open_ended = get(server.http, Some(&bob), &path, Some("bytes=299990-"));
        assert_eq!(open_ended.bytes, &video[299_990..]);
        let past_end = get(server.http, Some(&bob), &path, Some("bytes=300000-"));
        assert_eq!(past_end.status, 416);
        assert_eq!(past_end.header("content-range"), Some("bytes */300000"));
    }

    async fn the_sdk_sends_media_by_reference_and_is_told_of_media_not_its_own(backend, store) {
        let server = media::start(backend, store, Options::default());
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let dir = tempfile::tempdir().unwrap();
        let mut alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
        let photo = some_bytes(40_000, 3);
        let id = upload_ok(server.http, &alice_token, "image/jpeg", &photo);

        let client_id = alice.client.send_media("bob", &id, "at the beach").await.unwrap();
        alice.sent(&client_id).await;
        let message = bob
            .wait_for("a media message", |e| match e {
                AppEvent::Message(m) if m.media.is_some() => Some(m.clone()),
                _ => None,
            })
            .await;
        let media = message.media.expect("media");
        assert_eq!((media.id.as_str(), media.caption.as_str()), (id.as_str(), "at the beach"));
        assert_eq!((media.mime.as_str(), media.size), ("image/jpeg", photo.len() as u64), "the server's type and size");
        let fetched = get(server.http, Some(&bob_token), &format!("/v1/media/{id}"), None);
        assert_eq!(sha256_hex(&fetched.bytes), sha256_hex(&photo));

        // Bob forwarding Alice's upload by id is refused, to his app.
        let forwarded = bob.client.send_media("alice", &id, "").await.unwrap();
        let refusal = bob
            .wait_for("the refusal", |e| match e {
                AppEvent::Rejected(error) if error.client_id.as_deref() == Some(forwarded.as_str()) => Some(error.clone()),
                _ => None,
            })
            .await;
        assert_eq!(refusal.code, protocol::errors::ErrorCode::UnknownMedia);
    }

    async fn oversize_disallowed_and_foreign_media_are_refused(backend, store) {
        let options = Options::default().env("BLUETICK_MEDIA__MAX_SIZE", "1048576");
        let server = media::start(backend, store, options);
        let alice = server.register("alice");
        let bob = server.register("bob");

        let limits = get(server.http, None, "/v1/media/config", None).json();
        assert_eq!(limits["max_size"], 1_048_576);
        assert!(limits["allowed_types"].as_array().unwrap().iter().any(|t| t == "image/jpeg"));

        // A declared 10 GiB: the 413 arrives although not one byte of the
        // body was sent, so the server read none of it.
        let status = answer_to_head_only(&server, &format!(
            "POST /v1/media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\n\
             Content-Type: video/mp4\r\nContent-Length: 10737418240\r\n\r\n"
        ));
        assert!(status.starts_with("HTTP/1.1 413"), "{status}");

        let exe = upload(server.http, &alice, "application/x-msdownload", b"MZ...");
        assert_eq!((exe.status, exe.error_code().as_str()), (415, "unsupported_media_type"));
        let untyped = answer_to_head_only(&server, &format!(
            "POST /v1/media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\nContent-Length: 5\r\n\r\n"
        ));
        assert!(untyped.starts_with("HTTP/1.1 415"), "{untyped}");

        // A body with no declared size is cut off once it passes the limit.
        let mut stream = TcpStream::connect(server.http).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(format!(
            "POST /v1/media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\n\
             Content-Type: video/mp4\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).as_bytes()).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent <= 1_048_576 {
            stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).unwrap();
            stream.write_all(&chunk).unwrap();
            stream.write_all(b"\r\n").unwrap();
            sent += chunk.len();
        }
        let mut status = String::new();
        BufReader::new(stream).read_line(&mut status).expect("an answer");
        assert!(status.starts_with("HTTP/1.1 413"), "{status}");
        assert_eq!(server.metric("bluetick_media_uploads_total"), 0.0, "nothing was stored");

        // Bob names Alice's media, then media that does not exist: the same
        // refusal, so he learns nothing about Alice's uploads.
        let alices = upload_ok(server.http, &alice, "image/gif", b"GIF89a not really");
        let mut bob_mqtt = connect(&server, "bob", &bob).await;
        let foreign = serde_json::json!({"id": "steal-1", "to": "alice", "media": {"id": alices}});
        bob_mqtt.publish("u/bob/send", foreign.to_string()).await;
        let refused = next_of(&mut bob_mqtt, "error").await;
        assert_eq!(refused["code"], "unknown_media");
        assert_eq!(refused["client_id"], "steal-1");
        let missing = serde_json::json!({"id": "steal-2", "to": "alice", "media": {"id": "f".repeat(32)}});
        bob_mqtt.publish("u/bob/send", missing.to_string()).await;
        let refused_too = next_of(&mut bob_mqtt, "error").await;
        assert_eq!(refused_too["code"], "unknown_media");
        assert_eq!(refused_too["message"], refused["message"]);
        assert_eq!(get(server.http, Some(&bob), &format!("/v1/media/{alices}"), None).status, 404);
    }

    async fn identical_uploads_from_one_owner_are_stored_once(backend, store) {
        let server = media::start(backend, store, Options::default());
        let alice = server.register("alice");
        let bob = server.register("bob");
        // The S3 bucket is shared with other tests and earlier runs, so
        // look only at objects of this size that appear during this test.
        let pdf = some_bytes(50_000, 3);
        let objects = object_store(&server, store);
        let keys = |owner: &'static str| {
            let objects = &objects;
            let size = pdf.len() as u64;
            async move {
                let listed = objects.list(&format!("media/{owner}/")).await.unwrap();
                listed.into_iter().filter(|o| o.size == size).map(|o| o.key).collect::<std::collections::BTreeSet<_>>()
            }
        };
        let (alice_before, bob_before) = (keys("alice").await, keys("bob").await);

        let first = upload_ok(server.http, &alice, "application/pdf", &pdf);
        let second = upload_ok(server.http, &alice, "application/pdf", &pdf);
        assert_eq!(first, second);
        let bobs = upload_ok(server.http, &bob, "application/pdf", &pdf);
        assert_ne!(first, bobs, "another owner's copy is their own");

        let alice_new: Vec<String> = keys("alice").await.difference(&alice_before).cloned().collect();
        assert_eq!(alice_new, [format!("media/alice/{first}")], "one copy for Alice");
        let bob_new: Vec<String> = keys("bob").await.difference(&bob_before).cloned().collect();
        assert_eq!(bob_new, [format!("media/bob/{bobs}")], "one copy for Bob");
    }

    async fn thumbnails_are_made_for_jpeg_and_png(backend, store) {
        let server = media::start(backend, store, Options::default());
        let alice = server.register("alice");
        for (content_type, format, (width, height), expected) in [
            ("image/jpeg", image::ImageFormat::Jpeg, (800, 600), (320, 240)),
            ("image/png", image::ImageFormat::Png, (300, 900), (107, 320)),
        ] {
            let picture = image::RgbImage::from_fn(width, height, |x, y| {
                image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
            });
            let mut encoded = std::io::Cursor::new(Vec::new());
            picture.write_to(&mut encoded, format).unwrap();
            let id = upload_ok(server.http, &alice, content_type, encoded.get_ref());
            let reply = get(server.http, Some(&alice), &format!("/v1/media/{id}/thumbnail"), None);
            assert_eq!(reply.status, 200, "{content_type}: {}", reply.body);
            assert_eq!(reply.header("content-type"), Some("image/jpeg"));
            assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
            let thumbnail = image::load_from_memory_with_format(&reply.bytes, image::ImageFormat::Jpeg)
                .expect("the thumbnail is a JPEG");
            assert_eq!((thumbnail.width(), thumbnail.height()), expected, "{content_type}");
        }
        let pdf = upload_ok(server.http, &alice, "application/pdf", b"%PDF-1.4");
        assert_eq!(get(server.http, Some(&alice), &format!("/v1/media/{pdf}/thumbnail"), None).status, 404);
    }

    async fn unsent_uploads_are_bounded_per_user_in_count_and_bytes(backend, store) {
        const MIB: usize = 1 << 20;
        let options = Options::default()
            .env("BLUETICK_MEDIA__MAX_PENDING_UPLOADS", "3")
            .env("BLUETICK_MEDIA__MAX_PENDING_BYTES", &MIB.to_string());
        let server = media::start(backend, store, options);
        let alice = server.register("alice");
        let bob = server.register("bob");
        let carol = server.register("carol");
        let mut ids: Vec<String> = (0..2).map(|i| upload_ok(server.http, &alice, "application/pdf", &some_bytes(1000, i))).collect();
        // The same bytes again are the same upload, not a new one.
        assert_eq!(upload_ok(server.http, &alice, "application/pdf", &some_bytes(1000, 0)), ids[0]);
        ids.push(upload_ok(server.http, &alice, "application/pdf", &some_bytes(1000, 2)));
        let refused = upload(server.http, &alice, "application/pdf", &some_bytes(1000, 9));
        assert_eq!((refused.status, refused.error_code().as_str()), (429, "quota_exceeded"));
        assert!(refused.json()["error"]["message"].as_str().unwrap().contains("3 unsent uploads"));
        assert_eq!(server.store().pending_uploads("alice").unwrap().count, 3, "nothing of it was kept");
        // Bob's quota is his own.
        upload_ok(server.http, &bob, "application/pdf", &some_bytes(1000, 9));

        // Sending an upload in a message frees its place.
        let mut alice_mqtt = connect(&server, "alice", &alice).await;
        let send = serde_json::json!({ "id": "m-doc-1", "to": "bob", "body": "", "media": { "id": ids[0] } });
        alice_mqtt.publish("u/alice/send", send.to_string()).await;
        assert_eq!(next_of(&mut alice_mqtt, "ack").await["client_id"], "m-doc-1");
        upload_ok(server.http, &alice, "application/pdf", &some_bytes(1000, 9));

        // Bytes: refused from the declared length, before the body is read.
        upload_ok(server.http, &carol, "video/mp4", &some_bytes(700_000, 1));
        let refused = upload(server.http, &carol, "video/mp4", &some_bytes(400_000, 2));
        assert_eq!((refused.status, refused.error_code().as_str()), (429, "quota_exceeded"));
        let pending = server.store().pending_uploads("carol").unwrap();
        assert_eq!((pending.count, pending.bytes), (1, 700_000));
        assert!(server.metric("bluetick_media_refused_total{code=\"quota_exceeded\"}") >= 2.0);
    }

    async fn a_gib_up_and_down_grows_server_memory_by_less_than_64_mib(backend, store) {
        const GIB: u64 = 1 << 30;
        let options = Options::default()
            .env("BLUETICK_MEDIA__MAX_SIZE", &(2 * GIB).to_string())
            .env("BLUETICK_MEDIA__MAX_PENDING_BYTES", &(4 * GIB).to_string());
        let server = media::start(backend, store, options);
        let alice = server.register("alice");
        // Warm up every path once, so lazily built state is in the baseline.
        let warm = some_bytes(media::BLOCK * 9, 1);
        let warm_id = upload_ok(server.http, &alice, "video/mp4", &warm);
        assert_eq!(get(server.http, Some(&alice), &format!("/v1/media/{warm_id}"), None).bytes.len(), warm.len());
        let pid = server.pid();
        let baseline = media::proc_kib(pid, "VmRSS");
        let mut highest = baseline;

        let started = std::time::Instant::now();
        let mut generated = media::Generated::new(GIB);
        let (reply, sent_sha) = media::upload_generated(server.http, &alice, "video/mp4", &mut generated, |block| {
            if block % 64 == 0 {
                highest = highest.max(media::proc_kib(pid, "VmRSS"));
            }
        });
        assert_eq!(reply.status, 201, "{}", reply.body);
        let uploaded = reply.json();
        assert_eq!(uploaded["sha256"], sent_sha.as_str());
        let up_secs = started.elapsed().as_secs_f64();

        let started = std::time::Instant::now();
        let path = format!("/v1/media/{}", uploaded["id"].as_str().unwrap());
        let (status, size, got_sha) = media::download_hashed(server.http, &alice, &path, |mib| {
            if mib % 64 == 0 {
                highest = highest.max(media::proc_kib(pid, "VmRSS"));
            }
        });
        let down_secs = started.elapsed().as_secs_f64();
        assert_eq!((status, size), (200, GIB));
        assert_eq!(got_sha, sent_sha, "the same GiB came back");

        let peak = media::proc_kib(pid, "VmHWM").max(highest);
        let growth_mib = peak.saturating_sub(baseline) as f64 / 1024.0;
        println!(
            "media memory ({store:?}): RSS before {:.1} MiB, peak {:.1} MiB, growth {growth_mib:.1} MiB \
             for 1 GiB up ({:.0} MiB/s) and down ({:.0} MiB/s)",
            baseline as f64 / 1024.0,
            peak as f64 / 1024.0,
            1024.0 / up_secs,
            1024.0 / down_secs,
        );
        assert!(growth_mib < 64.0, "server RSS grew by {growth_mib:.1} MiB");
        // The GiB is not left behind in the bucket or directory of a test run.
        object_store(&server, store)
            .delete(&format!("media/alice/{}", uploaded["id"].as_str().unwrap()))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_downloads_can_redirect_to_a_short_lived_presigned_url() {
    let options = Options::default().env("BLUETICK_MEDIA__DOWNLOAD", "redirect");
    let server = media::start(Backend::Sqlite, MediaStore::S3, options);
    let alice = server.register("alice");
    let carol = server.register("carol");
    let audio = some_bytes(20_000, 9);
    let id = upload_ok(server.http, &alice, "audio/ogg", &audio);
    let path = format!("/v1/media/{id}");
    let redirect = get(server.http, Some(&alice), &path, None);
    assert_eq!(redirect.status, 302);
    let location = redirect.header("location").expect("Location").to_owned();
    assert!(location.contains("X-Amz-Expires=300"), "{location}");
    let fetched = media::get_url(&location);
    assert_eq!(
        (fetched.status, sha256_hex(&fetched.bytes)),
        (200, sha256_hex(&audio))
    );
    assert_eq!(
        get(server.http, Some(&carol), &path, None).status,
        404,
        "no URL for strangers"
    );
}

/// A PNG of a few hundred KiB whose header declares 11999×11999 grey
/// pixels (137 MiB once decoded) and whose last KiB is cut off, so that a
/// decoder allocates and fills nearly all of it, then fails: a
/// decompression bomb that no thumbnail ever comes of.
fn decompression_bomb() -> Vec<u8> {
    use image::ImageEncoder;
    const SIDE: u32 = 11_999;
    let pixels = vec![0u8; (SIDE * SIDE) as usize];
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut png,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::NoFilter,
    )
    .write_image(&pixels, SIDE, SIDE, image::ExtendedColorType::L8)
    .unwrap();
    png.truncate(png.len() - 1024);
    png
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_gets_422_in_bounded_memory_and_real_images_still_get_thumbnails() {
    let server = media::start(Backend::Sqlite, MediaStore::Local, Options::default());
    let alice = server.register("alice");
    let bomb = decompression_bomb();
    println!("decompression bomb: {} bytes", bomb.len());
    assert!(bomb.len() < 4 << 20, "a small file: {} bytes", bomb.len());
    let photo = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
    });
    let mut encoded = std::io::Cursor::new(Vec::new());
    photo
        .write_to(&mut encoded, image::ImageFormat::Png)
        .unwrap();
    let photo_id = upload_ok(server.http, &alice, "image/png", encoded.get_ref());
    // Warm the thumbnail path, so lazily built state is in the baseline.
    let warm = get(
        server.http,
        Some(&alice),
        &format!("/v1/media/{photo_id}/thumbnail"),
        None,
    );
    assert_eq!(warm.status, 200, "{}", warm.body);

    // From before the upload (which starts a thumbnail too) to the last answer.
    let pid = server.pid();
    let baseline = media::proc_kib(pid, "VmRSS");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut highest = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                highest = highest.max(media::proc_kib(pid, "VmRSS"));
                std::thread::sleep(Duration::from_millis(5));
            }
            highest
        })
    };
    let bomb_id = upload_ok(server.http, &alice, "image/png", &bomb);
    let path = format!("/v1/media/{bomb_id}/thumbnail");
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let (addr, token, path) = (server.http, alice.clone(), path.clone());
            std::thread::spawn(move || get(addr, Some(&token), &path, None))
        })
        .collect();
    let replies: Vec<_> = requests.into_iter().map(|r| r.join().unwrap()).collect();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap().max(media::proc_kib(pid, "VmRSS"));
    let growth_mib = peak.saturating_sub(baseline) as f64 / 1024.0;
    println!(
        "8 concurrent bomb thumbnails: RSS before {:.1} MiB, peak {:.1} MiB",
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    assert!(growth_mib < 100.0, "server RSS grew by {growth_mib:.1} MiB");
    for reply in &replies {
        assert_eq!(reply.status, 422, "{}", reply.body);
        assert_eq!(reply.error_code(), "unprocessable_image");
    }

    // Asked again, the same answer (remembered), and the server serves on.
    assert_eq!(get(server.http, Some(&alice), &path, None).status, 422);
    let again = get(
        server.http,
        Some(&alice),
        &format!("/v1/media/{photo_id}/thumbnail"),
        None,
    );
    assert_eq!(
        (again.status, again.header("content-type")),
        (200, Some("image/jpeg"))
    );
    let thumbnail =
        image::load_from_memory_with_format(&again.bytes, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((thumbnail.width(), thumbnail.height()), (320, 240));
    assert!(server.metric("bluetick_media_thumbnails_refused_total") >= 9.0);
}
