//! The HTTP poller against an in-test axum server serving the real USGS GeoJSON and GTFS-rt
//! samples: conditional requests, de-duplication, authentication, retries.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::common::{Harness, PATIENCE, decode_expected, sample, spec};

const ETAG: &str = "\"usgs-2018-02-07\"";

#[derive(Debug, Clone)]
struct Seen {
    path: &'static str,
    status: u16,
    authorization: Option<String>,
    api_key: Option<String>,
    extra: Option<String>,
    if_none_match: Option<String>,
}

#[derive(Clone)]
struct Server {
    seen: Arc<Mutex<Vec<Seen>>>,
    usgs: Arc<Vec<u8>>,
    gtfs: Arc<Vec<u8>>,
}

fn header_text(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

impl Server {
    fn record(&self, path: &'static str, status: StatusCode, h: &HeaderMap) {
        self.seen.lock().unwrap().push(Seen {
            path,
            status: status.as_u16(),
            authorization: header_text(h, "authorization"),
            api_key: header_text(h, "x-api-key"),
            extra: header_text(h, "x-geostream-test"),
            if_none_match: header_text(h, "if-none-match"),
        });
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|s| s.path == path).cloned().collect()
    }

    async fn wait_for_requests(&self, path: &str, n: usize) {
        let start = Instant::now();
        while self.seen(path).len() < n {
            assert!(start.elapsed() < PATIENCE, "{path}: only {:?} after {PATIENCE:?}", self.seen(path));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The USGS document with an ETag, answering `304` to a matching `If-None-Match`.
async fn usgs(State(s): State<Server>, headers: HeaderMap) -> Response {
    if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v == ETAG) {
        s.record("/usgs", StatusCode::NOT_MODIFIED, &headers);
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, ETAG)]).into_response();
    }
    s.record("/usgs", StatusCode::OK, &headers);
    (StatusCode::OK, [(header::ETAG, ETAG), (header::CONTENT_TYPE, "application/geo+json")], s.usgs.to_vec())
        .into_response()
}

/// The GTFS-rt feed without validators (so every poll gets the whole answer), failing once first.
async fn gtfs(State(s): State<Server>, headers: HeaderMap) -> Response {
    if s.seen("/gtfs").is_empty() {
        s.record("/gtfs", StatusCode::SERVICE_UNAVAILABLE, &headers);
        return (StatusCode::SERVICE_UNAVAILABLE, "upstream busy, try again").into_response();
    }
    s.record("/gtfs", StatusCode::OK, &headers);
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-protobuf")], s.gtfs.to_vec()).into_response()
}

async fn serve() -> (Server, String) {
    let server = Server {
        seen: Arc::default(),
        usgs: Arc::new(std::fs::read(sample("usgs_all_week_2018-02-07.geojson")).unwrap()),
        gtfs: Arc::new(std::fs::read(sample("gtfs_rt/kcm_king_county_metro_vehicle_positions_1.pb")).unwrap()),
    };
    let app = Router::new().route("/usgs", get(usgs)).route("/gtfs", get(gtfs)).with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, base)
}

/// The first poll commits the whole document; later polls send `If-None-Match` and get `304`,
/// adding nothing. The bearer token and the extra header go out on every request.
#[tokio::test]
async fn etag_makes_unchanged_polls_free_and_auth_goes_out_every_time() {
    let (server, base) = serve().await;
    let spec = spec(json!({
        "id": "usgs", "type": "usgs-earthquakes", "format": "geojson",
        "source": {
            "kind": "http_poll", "url": format!("{base}/usgs"), "interval_s": 1,
            "headers": {"X-Geostream-Test": "yes"},
            "auth": {"kind": "bearer", "token_ref": "usgs-token"}
        },
        "mapping": {"track": "id", "time": "properties.time", "time_format": "unix_ms",
                    "attributes": {"mag": "properties.mag"}}
    }));
    let expected = decode_expected(&spec, &server.usgs);
    assert_eq!((expected.observations, expected.dead_letters), (1707, 0), "the catalog's counts");
    let h = Harness::new(spec);
    h.secret("usgs-token", "s3cret-token\n");
    let running = h.start();
    server.wait_for_requests("/usgs", 3).await;
    running.stop().await;
    let seen = server.seen("/usgs");
    assert_eq!(seen[0].status, 200);
    assert_eq!(seen[0].if_none_match, None);
    for s in &seen[1..] {
        assert_eq!((s.status, s.if_none_match.as_deref()), (304, Some(ETAG)), "{seen:?}");
    }
    for s in &seen {
        assert_eq!(s.authorization.as_deref(), Some("Bearer s3cret-token"), "the secret without its newline");
        assert_eq!(s.extra.as_deref(), Some("yes"));
    }
    let spooled = h.into_spooled();
    assert_eq!(spooled.counts(), expected);
    spooled.assert_no_duplicates();
    let quake = spooled.observations.iter().find(|o| o.track.as_ref().is_some_and(|t| t.as_str() == "ci37868143"));
    assert!(quake.is_some_and(|q| q.attributes.contains_key("mag")), "mapped attributes arrive");
}

/// A `503` is retried (and counted); an answer identical to the previous one is de-duplicated
/// item by item, so the second good poll adds nothing. The API key header goes out every time.
#[tokio::test]
async fn failures_are_retried_and_repeated_items_deduplicated() {
    let (server, base) = serve().await;
    let spec = spec(json!({
        "id": "kcm", "type": "gtfs-rt-vehicle-positions", "format": "gtfs_rt",
        "source": {
            "kind": "http_poll", "url": format!("{base}/gtfs"), "interval_s": 1,
            "auth": {"kind": "header", "name": "X-Api-Key", "value_ref": "kcm-key"}
        }
    }));
    let expected = decode_expected(&spec, &server.gtfs);
    assert_eq!(expected.observations, 627, "the catalog's count");
    let h = Harness::new(spec);
    h.secret("kcm-key", "k-123");
    let running = h.start();
    server.wait_for_requests("/gtfs", 3).await;
    // The third request's answer may still be in flight: wait until it is decoded and deduplicated.
    let start = Instant::now();
    while h.deduplicated() < expected.envelopes() as u64 {
        assert!(start.elapsed() < PATIENCE, "deduplicated {} of {}", h.deduplicated(), expected.envelopes());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
    let seen = server.seen("/gtfs");
    assert_eq!(seen.iter().map(|s| s.status).take(3).collect::<Vec<_>>(), [503, 200, 200]);
    assert!(seen.iter().all(|s| s.api_key.as_deref() == Some("k-123") && s.authorization.is_none()), "{seen:?}");
    assert!(h.source_errors() >= 1, "the 503 is counted as a source error");
    let dedup_per_repeat = expected.envelopes() as u64;
    assert_eq!(h.deduplicated() % dedup_per_repeat, 0, "whole answers repeated: {}", h.deduplicated());
    let spooled = h.into_spooled();
    assert_eq!(spooled.counts(), expected, "written once although answered twice or more");
    spooled.assert_no_duplicates();
}

/// Basic authentication with the password from a secret.
#[tokio::test]
async fn basic_auth_sends_the_secret_password() {
    let (server, base) = serve().await;
    let spec = spec(json!({
        "id": "usgs-basic", "type": "usgs-earthquakes", "format": "geojson",
        "source": {
            "kind": "http_poll", "url": format!("{base}/usgs"), "interval_s": 60,
            "auth": {"kind": "basic", "username": "reader", "password_ref": "usgs-password"}
        },
        "mapping": {"track": "id", "time": "properties.time", "time_format": "unix_ms"}
    }));
    let expected = decode_expected(&spec, &server.usgs);
    let h = Harness::new(spec);
    h.secret("usgs-password", "pa55 w0rd");
    let running = h.start();
    h.wait_for(expected.envelopes() as u64, "the first answer").await;
    running.stop().await;
    let seen = server.seen("/usgs");
    assert_eq!(seen.len(), 1, "one poll per interval");
    // base64("reader:pa55 w0rd")
    assert_eq!(seen[0].authorization.as_deref(), Some("Basic cmVhZGVyOnBhNTUgdzByZA=="));
    assert_eq!(h.into_spooled().counts(), expected);
}
