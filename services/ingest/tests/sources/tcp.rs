//! The TCP source in both modes, with real AIS and NMEA captures.

use std::time::Duration;

use geostream_model::ReasonCode;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::common::{Expected, Harness, PATIENCE, decode_expected, free_port, sample, spec};

async fn connect_when_listening(address: &str) -> TcpStream {
    let start = std::time::Instant::now();
    loop {
        match TcpStream::connect(address).await {
            Ok(s) => return s,
            Err(e) => {
                assert!(start.elapsed() < PATIENCE, "the tcp source never listened on {address}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Two senders at once, their bytes interleaved in odd-sized chunks: each connection has its own
/// decoder (multi-part AIS messages are reassembled per stream), and an over-long line becomes a
/// `too_large` dead letter without disturbing the lines after it.
#[tokio::test]
async fn server_mode_decodes_each_connection_on_its_own() {
    let address = format!("127.0.0.1:{}", free_port());
    let spec = spec(json!({
        "id": "ais-server", "type": "ais-nmea-tcp", "format": "ais",
        "source": {"kind": "tcp", "address": address, "mode": "server"}
    }));
    let a = std::fs::read(sample("gpsd_sample_annotated.aivdm")).unwrap();
    let b = std::fs::read(sample("pyais_nmea_data_sample.nmea")).unwrap();
    let mut expected = decode_expected(&spec, &a);
    expected.add(&decode_expected(&spec, &b));
    assert!(expected.observations > 500, "the samples are substantial: {expected:?}");
    // One line over the 64 KiB limit, in the middle of stream a.
    let long_line = format!("!AIVDM,1,1,,A,{},0*00\n", "1".repeat(70_000));
    let cut = a.iter().take(a.len() / 2).rposition(|&c| c == b'\n').unwrap() + 1;
    let mut a_sent = a[..cut].to_vec();
    a_sent.extend_from_slice(long_line.as_bytes());
    a_sent.extend_from_slice(&a[cut..]);
    let long_line_number = a[..cut].iter().filter(|&&c| c == b'\n').count() + 1;

    let h = Harness::new(spec);
    let running = h.start();
    let mut conn_a = connect_when_listening(&address).await;
    let mut conn_b = connect_when_listening(&address).await;
    let (mut ia, mut ib) = (a_sent.chunks(977), b.chunks(1531));
    loop {
        let (x, y) = (ia.next(), ib.next());
        if x.is_none() && y.is_none() {
            break;
        }
        if let Some(c) = x {
            conn_a.write_all(c).await.unwrap();
        }
        if let Some(c) = y {
            conn_b.write_all(c).await.unwrap();
        }
    }
    let local_a = conn_a.local_addr().unwrap().to_string();
    drop(conn_a);
    drop(conn_b);
    let total = expected.envelopes() as u64 + 1;
    h.wait_for(total, "tcp server").await;
    running.stop().await;
    let spooled = h.into_spooled();
    let mut with_long = expected.clone();
    with_long.add(&Expected {
        observations: 0,
        dead_letters: 1,
        rejected: [(ReasonCode::TooLarge.as_str().to_owned(), 1)].into(),
    });
    assert_eq!(spooled.counts(), with_long);
    let long = spooled.dead_letters.iter().find(|d| d.reason == ReasonCode::TooLarge).unwrap();
    assert_eq!(long.source.as_deref(), Some(format!("tcp {local_a} line {long_line_number}").as_str()));
    assert_eq!(long.raw.len(), 64 * 1024, "the first 64 KiB are kept");
    assert!(long.raw.starts_with(b"!AIVDM,1,1,,A,111"));
}

/// Client mode: connects, reads what the peer sends, and reconnects after the peer hangs up.
#[tokio::test]
async fn client_mode_reconnects_and_reads_every_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let spec = spec(json!({
        "id": "gps-client", "type": "nmea-gps-tcp", "format": "nmea",
        "source": {"kind": "tcp", "address": address, "mode": "client", "reconnect_max_s": 2}
    }));
    let first = std::fs::read(sample("gpsd_telit-he910.log")).unwrap();
    let second = std::fs::read(sample("aerorust_nmea2_gnss_mixed.nmea")).unwrap();
    let mut expected = decode_expected(&spec, &first);
    expected.add(&decode_expected(&spec, &second));
    assert!(expected.observations > 0, "{expected:?}");

    let h = Harness::new(spec);
    let running = h.start();
    for payload in [&first, &second] {
        let (mut conn, _) = tokio::time::timeout(PATIENCE, listener.accept()).await.expect("source connects").unwrap();
        conn.write_all(payload).await.unwrap();
        conn.shutdown().await.unwrap();
        drop(conn);
    }
    h.wait_for(expected.envelopes() as u64, "tcp client").await;
    running.stop().await;
    let spooled = h.into_spooled();
    assert_eq!(spooled.counts(), expected);
    spooled.assert_no_duplicates();
}
