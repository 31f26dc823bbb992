//! Property tests for the document codecs: arbitrary bytes (and mutated real documents) never
//! panic, and every outcome is a valid observation or a rejection.

use geostream_codecs::cap::CapCodec;
use geostream_codecs::gpx::{GpxCodec, GpxOptions};
use geostream_codecs::gtfs_rt::GtfsRtCodec;
use geostream_codecs::{Codec, Context, Outcome, decode_all};
use geostream_model::FeedId;
use geostream_model::time::OffsetDateTime;
use proptest::prelude::*;

fn check(codec: &mut dyn Codec, bytes: &[u8]) {
    let ctx = Context::new(FeedId::new("p").unwrap(), OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap());
    for o in decode_all(codec, bytes, &ctx) {
        if let Outcome::Observation(obs) = o {
            obs.validate().unwrap();
        }
    }
}

use crate::data::mutated;

const CAP: &[u8] = include_bytes!("../data/alerts/oasiscap_nws_blizzard_warning_2021-12-27.cap.xml");
const GPX: &[u8] = include_bytes!("../data/gpx/georust_strava_route_example.gpx");

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn gtfs_rt_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&mut GtfsRtCodec::new(), &bytes);
    }

    #[test]
    fn cap_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&mut CapCodec::new(), &bytes);
    }

    #[test]
    fn gpx_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&mut GpxCodec::new(GpxOptions { allow_missing_time: true }), &bytes);
    }

    #[test]
    fn cap_mutated_never_panics(bytes in mutated(CAP)) {
        check(&mut CapCodec::new(), &bytes);
    }

    #[test]
    fn gpx_mutated_never_panics(bytes in mutated(GPX)) {
        check(&mut GpxCodec::new(GpxOptions { allow_missing_time: true }), &bytes);
    }

    #[test]
    fn cap_xmlish_never_panics(s in "(<alert>|<info>|<area>|<polygon>|<circle>|</area>|</info>|</alert>|<identifier>a</identifier>|<sent>2024-01-01T00:00:00Z</sent>|[-0-9., ]{0,12}|&amp;|&#x41;|&bogus;){0,24}") {
        check(&mut CapCodec::new(), s.as_bytes());
    }
}

#[test]
fn gtfs_rt_mutated_kcm_never_panics() {
    let base = crate::data::read("gtfs_rt/kcm_king_county_metro_vehicle_positions_1.pb");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    let base: &'static [u8] = base.leak();
    runner
        .run(&mutated(base), |b| {
            check(&mut GtfsRtCodec::new(), &b);
            Ok(())
        })
        .unwrap();
}
