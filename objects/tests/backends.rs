//! Both backends against the real thing: a temporary directory, and the S3
//! server that scripts/test starts (s3s-fs on loopback), named by
//! `BT_TEST_S3_ENDPOINT`, `BT_TEST_S3_BUCKET`, `BT_TEST_S3_ACCESS_KEY` and
//! `BT_TEST_S3_SECRET_KEY`. Without them the S3 test fails: it never skips.

use bytes::Bytes;
use futures_util::TryStreamExt;
use objects::{ByteRange, ByteStream, Local, ObjectError, ObjectStore, S3Config, S3};

fn s3_from_env() -> S3 {
    s3_under("")
}

/// The test bucket, keeping every key under `prefix`.
fn s3_under(prefix: &str) -> S3 {
    S3::open(&config_under(prefix)).expect("S3 config")
}

fn config_under(prefix: &str) -> S3Config {
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("{name} is not set: run the tests through scripts/test"))
    };
    S3Config {
        endpoint: var("BT_TEST_S3_ENDPOINT"),
        bucket: var("BT_TEST_S3_BUCKET"),
        region: "us-east-1".into(),
        access_key: var("BT_TEST_S3_ACCESS_KEY"),
        secret_key: var("BT_TEST_S3_SECRET_KEY"),
        path_style: true,
        prefix: prefix.to_owned(),
    }
}

/// `size` bytes of a repeating pattern, in 100 KiB chunks.
fn pattern(size: usize) -> (ByteStream, Vec<u8>) {
    let all: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<std::io::Result<Bytes>> = all
        .chunks(100 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    (Box::pin(futures_util::stream::iter(chunks)), all)
}

async fn read_all(stream: ByteStream) -> Vec<u8> {
    stream
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .expect("read the object")
}

fn unique_prefix() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("test-{}-{n}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The promises of the trait, on one backend: small and multipart puts
/// read back whole and by range, oversize puts leave nothing, list and
/// delete see the same keys.
async fn keeps_its_promises(store: &dyn ObjectStore) {
    let prefix = unique_prefix();
    let small_key = format!("{prefix}/small");
    let (body, small) = pattern(1000);
    let stored = store
        .put(&small_key, "application/octet-stream", body, 10_000)
        .await
        .unwrap();
    assert_eq!(stored.size, 1000);
    assert_eq!(
        read_all(store.get(&small_key, None).await.unwrap()).await,
        small
    );

    // Over one S3 part, so the multipart path runs too.
    let big_key = format!("{prefix}/big");
    let (body, big) = pattern(objects::s3::PART_SIZE + 300_000);
    let stored = store
        .put(&big_key, "application/octet-stream", body, u64::MAX)
        .await
        .unwrap();
    assert_eq!(stored.size, big.len() as u64);
    assert_eq!(
        read_all(store.get(&big_key, None).await.unwrap()).await,
        big
    );
    let range = ByteRange {
        start: 8_000_000,
        end: 8_500_000,
    };
    assert_eq!(
        read_all(store.get(&big_key, Some(range)).await.unwrap()).await,
        &big[8_000_000..=8_500_000]
    );

    let (body, _) = pattern(objects::s3::PART_SIZE * 2);
    let refused = store
        .put(
            &format!("{prefix}/huge"),
            "application/octet-stream",
            body,
            9_000_000,
        )
        .await;
    assert!(
        matches!(refused, Err(ObjectError::TooLarge { .. })),
        "{refused:?}"
    );

    let keys: Vec<String> = store
        .list(&format!("{prefix}/"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec![big_key.clone(), small_key.clone()]);

    store.delete(&small_key).await.unwrap();
    store.delete(&big_key).await.unwrap();
    assert!(matches!(
        store.get(&small_key, None).await,
        Err(ObjectError::NotFound(_))
    ));
    assert!(store.list(&format!("{prefix}/")).await.unwrap().is_empty());
}

#[tokio::test]
async fn local_directory_keeps_the_object_store_promises() {
    let dir = tempfile::tempdir().unwrap();
    keeps_its_promises(&Local::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn s3_keeps_the_object_store_promises() {
    keeps_its_promises(&s3_from_env()).await;
}

#[tokio::test]
async fn an_s3_prefix_keeps_deployments_sharing_a_bucket_apart() {
    let (one, two) = (unique_prefix(), unique_prefix());
    let (first, second, root) = (s3_under(&one), s3_under(&two), s3_from_env());
    keeps_its_promises(&first).await;
    let body = |text: &'static str| objects::once(Bytes::from_static(text.as_bytes()));
    first
        .put("backups/b.zip", "application/zip", body("first"), 100)
        .await
        .unwrap();
    second
        .put("backups/b.zip", "application/zip", body("second"), 100)
        .await
        .unwrap();
    let listed: Vec<String> = first
        .list("backups/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        listed,
        ["backups/b.zip"],
        "keys come back without the prefix"
    );
    assert_eq!(
        read_all(first.get("backups/b.zip", None).await.unwrap()).await,
        b"first"
    );
    assert_eq!(
        read_all(second.get("backups/b.zip", None).await.unwrap()).await,
        b"second"
    );
    // In the bucket itself they live under their prefixes.
    let raw: Vec<String> = root
        .list(&format!("{one}/"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(raw, [format!("{one}/backups/b.zip")]);
    first.delete("backups/b.zip").await.unwrap();
    assert_eq!(
        read_all(second.get("backups/b.zip", None).await.unwrap()).await,
        b"second",
        "the other deployment's object stays"
    );
    second.delete("backups/b.zip").await.unwrap();
    let bad = S3::open(&config_under("../escape"));
    assert!(matches!(bad, Err(ObjectError::InvalidKey(_))));
}

#[tokio::test]
async fn s3_presigned_urls_fetch_the_object_without_credentials() {
    let store = s3_from_env();
    let key = format!("{}/presigned", unique_prefix());
    store
        .put(
            &key,
            "text/plain",
            objects::once(Bytes::from_static(b"shared")),
            100,
        )
        .await
        .unwrap();
    let url = store
        .presigned_get(&key, std::time::Duration::from_secs(60))
        .await
        .unwrap()
        .expect("a URL");
    let fetched = reqwest::get(&url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(&fetched.bytes().await.unwrap()[..], b"shared");
    store.delete(&key).await.unwrap();
}
