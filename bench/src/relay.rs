//! The baseline: a raw QoS 1 relay, publisher to subscriber through a
//! broker, with no bridge and no store. It shows what the transport alone
//! can do on this machine.

use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One relay measurement.
#[derive(Debug, Clone, Serialize)]
pub struct RelayResult {
    pub broker: String,
    pub pairs: usize,
    pub messages_per_second: f64,
    pub received: u64,
}

/// Relays `size`-byte QoS 1 messages through `broker` (anonymous access,
/// topic `bench/relay/{pair}`) for `duration` over `pairs`
/// publisher/subscriber pairs.
pub async fn run(
    broker_name: &str,
    broker: SocketAddr,
    pairs: usize,
    size: usize,
    duration: Duration,
) -> anyhow::Result<RelayResult> {
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let payload = vec![b'x'; size];
    for pair in 0..pairs {
        let topic = format!("bench/relay/{pair}");
        let (sub, mut sub_loop) = client(broker, &format!("relay-sub-{pair}"));
        sub.subscribe(&topic, QoS::AtLeastOnce).await?;
        loop {
            match sub_loop.poll().await? {
                rumqttc::Event::Incoming(Packet::SubAck(_)) => break,
                _ => continue,
            }
        }
        let counter = received.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok(event) = sub_loop.poll().await {
                if let rumqttc::Event::Incoming(Packet::Publish(_)) = event {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        let (publisher, mut pub_loop) = client(broker, &format!("relay-pub-{pair}"));
        tasks.push(tokio::spawn(async move {
            while pub_loop.poll().await.is_ok() {}
        }));
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if publisher
                    .publish(&topic, QoS::AtLeastOnce, false, payload.clone())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }));
    }
    // Let connections settle, then measure over the window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (start_count, start) = (received.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(duration).await;
    let got = received.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed().as_secs_f64();
    for task in tasks {
        task.abort();
    }
    Ok(RelayResult {
        broker: broker_name.to_owned(),
        pairs,
        messages_per_second: got as f64 / elapsed,
        received: got,
    })
}

fn client(broker: SocketAddr, id: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let mut options = MqttOptions::new(id, broker.ip().to_string(), broker.port());
    options
        .set_keep_alive(Duration::from_secs(60))
        .set_inflight(100)
        .set_max_packet_size(1 << 20, 1 << 20);
    AsyncClient::new(options, 1000)
}
