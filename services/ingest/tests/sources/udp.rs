//! The UDP source with real AIS sentences, several per datagram.

use serde_json::json;
use tokio::net::UdpSocket;

use crate::common::{Harness, decode_expected, free_udp_port, sample, spec};

/// Cuts `text` into datagrams of about `lines` lines each, never between the parts of a
/// multi-part AIS message (a real receiver sends those together).
fn datagrams(text: &str, lines: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut count = 0;
    for line in text.lines() {
        current.push_str(line);
        current.push('\n');
        count += 1;
        let fields: Vec<&str> = line.split(',').collect();
        let unfinished_fragment = line.starts_with('!')
            && fields.len() > 2
            && matches!((fields[1].parse::<u32>(), fields[2].parse::<u32>()), (Ok(n), Ok(k)) if k < n);
        if count >= lines && !unfinished_fragment {
            out.push(std::mem::take(&mut current));
            count = 0;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[tokio::test]
async fn datagrams_with_several_sentences_are_decoded_and_batched() {
    let address = format!("127.0.0.1:{}", free_udp_port());
    let spec = spec(json!({
        "id": "ais-udp", "type": "ais-udp", "format": "ais",
        "source": {"kind": "udp", "address": address}
    }));
    let text = std::fs::read_to_string(sample("pyais_nmea_data_sample.nmea")).unwrap();
    let grams = datagrams(&text, 5);
    assert!(grams.len() > 100, "{} datagrams", grams.len());
    assert_eq!(grams.concat(), text.lines().map(|l| format!("{l}\n")).collect::<String>(), "nothing lost in cutting");
    let expected = decode_expected(&spec, text.as_bytes());
    assert!(expected.observations > 500, "{expected:?}");

    let h = Harness::new(spec.clone());
    let running = h.start();
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // UDP drops what nobody listens for: wait until the source's socket is bound (it reports
    // itself up only then; from there on the kernel queues datagrams for it).
    let label = geostream_ingest::metrics::FeedLabel { feed: "ais-udp".into() };
    let start = std::time::Instant::now();
    while h.handle.metrics.source_up.get_or_create(&label).get() != 1 {
        assert!(start.elapsed() < crate::common::PATIENCE, "the udp source never listened");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Bursts of 20 datagrams, each awaited (by lines received) before the next, so the kernel's
    // receive buffer never overflows: a dropped datagram is UDP's contract, not what is tested.
    let received = || h.handle.metrics.received.get_or_create(&label).get();
    let mut lines = 0u64;
    for burst in grams.chunks(20) {
        for g in burst {
            sender.send_to(g.as_bytes(), &address).await.unwrap();
            lines += g.lines().count() as u64;
        }
        let start = std::time::Instant::now();
        while received() < lines {
            assert!(start.elapsed() < crate::common::PATIENCE, "udp: {} of {lines} lines received", received());
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    assert_eq!(received(), text.lines().count() as u64, "every line arrived once");
    // Stopping flushes what the sender's decoder still holds, as the end of a file would.
    running.stop().await;
    let spooled = h.into_spooled();
    assert_eq!(spooled.counts(), expected);
    let first = &spooled.dead_letters.first().expect("the sample has bad sentences").source;
    let sender_addr = sender.local_addr().unwrap().to_string();
    assert!(
        first.as_deref().is_some_and(|s| s.starts_with(&format!("udp {sender_addr} line "))),
        "dead letters say which datagram and line: {first:?}"
    );
}
