//! Framing, errors, reassembly and normalisation on real sentences from the sample files.

use geostream_codecs::ais::sentence::{Line, parse_line};
use geostream_codecs::ais::{
    AisError, Decoder, DecoderOptions, IncompleteCause, Message, NormaliseError, Normalised, Output, SkipKind,
    normalise, static_attributes,
};
use geostream_model::time::OffsetDateTime;
use geostream_model::{FeedId, ReasonCode};

const TYPE1: &[u8] = b"!AIVDM,1,1,,A,15RTgt0PAso;90TKcjM8h6g208CQ,0*4A";
const T5_1: &[u8] = b"!AIVDM,2,1,7,A,53aGulD0000000c7?0918Tq<E>0<Q8U=@Tp400155P:22uG`002ShTj0,0*05";
const T5_2: &[u8] = b"!AIVDM,2,2,7,A,EQC`4Sm51A0C@08,2*50";

fn message(out: Result<Output<'_>, AisError>) -> Message {
    match out {
        Ok(Output::Message(d)) => d.message,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn checksum_mismatch_says_what_and_where() {
    let err = Decoder::default().push_line(b"!AIVDM,1,1,,A,15RTgt0PAso;90TKcjM8h6g208CQ,0*4B").unwrap_err();
    assert_eq!(err.to_string(), "AIS sentence: checksum mismatch: computed 0x4A, sentence says 0x4B");
    assert_eq!(err.reason(), ReasonCode::Checksum);
}

#[test]
fn class_a_position_units() {
    let Message::Position(p) = message(Decoder::default().push_line(TYPE1)) else { panic!() };
    assert_eq!(p.header.mmsi, 371_798_000);
    assert_eq!(p.sog_knots, Some(12.3));
    assert_eq!(p.cog_deg, Some(224.0));
    assert_eq!(p.heading_deg, Some(215));
    assert!((p.lon.unwrap() - -123.395_383).abs() < 1e-6);
    assert!((p.lat.unwrap() - 48.381_633).abs() < 1e-6);
}

#[test]
fn tag_block_time_and_checksum() {
    let line = br"\c:1420030798*00\!ABVDM,1,1,4,B,17P;HV?P008F98Il;EC1mOwL0@KP,0*22";
    let err = Decoder::default().push_line(line).unwrap_err();
    assert_eq!(err, AisError::TagBlockChecksum { computed: 0x5B, stated: 0x00 });
    assert_eq!(err.reason(), ReasonCode::Checksum);
    let mut dec = Decoder::new(DecoderOptions { verify_tag_block_checksum: false, ..Default::default() });
    let Ok(Output::Message(d)) = dec.push_line(line) else { panic!() };
    assert_eq!(d.meta.tag_time_ms, Some(1_420_030_798_000));
    assert_eq!(&d.talker, b"AB");
}

#[test]
fn trailing_receiver_fields() {
    let Ok(Line::Sentence(s)) =
        parse_line(b"!AIVDM,1,1,,A,15B4FT5000JRP>PE6E68Nbkl0PS5,0*70,b003669794,1272412827", true)
    else {
        panic!()
    };
    assert_eq!(s.meta.source, Some("b003669794"));
    assert_eq!(s.meta.receive_time_ms, Some(1_272_412_827_000));
    let Ok(Line::Sentence(s)) = parse_line(b"!AIVDM,1,1,,B,>=on9A>W8NbdA@3HkLWJ9rlB<@Wjf@,4*00,1327992119205", true)
    else {
        panic!()
    };
    assert_eq!(s.meta.receive_time_ms, Some(1_327_992_119_205));
    assert_eq!(s.fill, 4);
}

#[test]
fn non_ais_lines_are_skipped_not_errors() {
    let mut dec = Decoder::default();
    for (line, kind) in [
        (&b"   \r\n"[..], SkipKind::Blank),
        (b"# Lines with a leading `#` are ignored", SkipKind::Comment),
        (b"$PGHP,1,2008,5,9,0,0,0,10,338,2,,1,09*17", SkipKind::OtherNmea),
        (b"$GPGGA,184353.07,1929.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,0000*6D", SkipKind::OtherNmea),
        (b"foobar", SkipKind::Junk),
        (b"AIVDM,2,2,1,B,00000000000,2*26", SkipKind::Junk),
    ] {
        assert_eq!(dec.push_line(line), Ok(Output::Skipped(kind)), "{}", String::from_utf8_lossy(line));
    }
    let err = dec
        .push_line(br"\g:1-2-73874,n:157036,s:r003669945,c:12415440354*A\!AIVDM,1,1,,B,15N4cJ005Jrek0H@9nDW5608EP,013");
    assert_eq!(err.unwrap_err().reason(), ReasonCode::Malformed);
}

#[test]
fn unsupported_and_short_messages() {
    let e = Decoder::default().push_line(b"!AIVDM,1,1,,B,6B?n;be:cbapalgc;i6?Ow4,2*4A").unwrap_err();
    assert!(matches!(e, AisError::Unsupported { header } if header.msg_type == 6), "{e}");
    assert_eq!(e.reason(), ReasonCode::Unsupported);
    let e = Decoder::default().push_line(b"!AIVDM,1,1,,A,KpiGSwcw,0*03").unwrap_err();
    assert_eq!(e.to_string(), "AIS message type 27: payload too short: 48 bits, field lon needs 62");
    assert_eq!(e.reason(), ReasonCode::Malformed);
    let e = Decoder::default().push_line(b"!AIVDM,1,1,,B,,0*25").unwrap_err();
    assert_eq!(e.reason(), ReasonCode::Malformed);
}

#[test]
fn multipart_in_order_out_of_order_and_duplicates() {
    let mut dec = Decoder::default();
    assert_eq!(dec.push_line(T5_1), Ok(Output::Fragment));
    let Message::StaticVoyage(a) = message(dec.push_line(T5_2)) else { panic!() };
    assert_eq!(dec.push_line(T5_2), Ok(Output::Fragment));
    let Message::StaticVoyage(b) = message(dec.push_line(T5_1)) else { panic!() };
    assert_eq!(a, b, "same message whatever the fragment order");
    assert_eq!(dec.push_line(T5_1), Ok(Output::Fragment));
    assert_eq!(dec.push_line(T5_1), Ok(Output::Duplicate));
    message(dec.push_line(T5_2));
    assert_eq!(dec.pending(), 0);
    assert_eq!(dec.take_incomplete().count(), 0);
}

#[test]
fn incomplete_groups_are_reported() {
    let mut dec = Decoder::new(DecoderOptions { max_pending: 1, ..Default::default() });
    assert_eq!(dec.push_line(T5_1), Ok(Output::Fragment));
    let other = b"!AIVDM,2,1,2,B,55CTb`82CwWg<I<7<01<D4`4<e>1<=Thh40000091J12h5rVNA5S2Dlj,0*72";
    assert_eq!(dec.push_line(other), Ok(Output::Fragment));
    let reports: Vec<AisError> = dec.take_incomplete().collect();
    assert_eq!(reports.len(), 1);
    assert!(matches!(reports[0], AisError::Incomplete { cause: IncompleteCause::Evicted, received: 1, total: 2, .. }));
    assert_eq!(reports[0].reason(), ReasonCode::Incomplete);
    assert_eq!(
        reports[0].to_string(),
        "AIS multi-part message (talker AI, channel A, sequence id 7) incomplete: 1 of 2 fragments received; \
         evicted because too many groups were pending"
    );
    dec.flush();
    let reports: Vec<AisError> = dec.take_incomplete().collect();
    assert!(matches!(reports[..], [AisError::Incomplete { cause: IncompleteCause::Flushed, .. }]));
    assert_eq!(dec.pending(), 0);
}

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
}

#[test]
fn normalise_position_to_observation() {
    let feed = FeedId::new("ais-test").unwrap();
    let line = b"!AIVDM,1,1,,A,15B4FT5000JRP>PE6E68Nbkl0PS5,0*70,b003669794,1272412827";
    let Ok(Output::Message(d)) = Decoder::default().push_line(line) else { panic!() };
    let Normalised::Observation(o) = normalise(&d, &feed, t0()).unwrap() else { panic!() };
    assert_eq!(o.track.as_ref().unwrap().as_str(), d.message.header().mmsi.to_string());
    assert_eq!(o.time.unix_timestamp(), 1_272_412_827, "trailing receive time is the event time");
    assert_eq!(o.received, t0());
    assert_eq!(o.attributes["msg_type"], 1);
    assert_eq!(o.attributes["source"], "b003669794");
    o.validate().unwrap();

    let Ok(Output::Message(d)) = Decoder::default().push_line(TYPE1) else { panic!() };
    let Normalised::Observation(o) = normalise(&d, &feed, t0()).unwrap() else { panic!() };
    assert_eq!(o.time, t0(), "no receiver time: the caller's received time");
    assert_eq!(o.attributes["sog_mps"], serde_json::json!(6.327661));
    assert_eq!(o.attributes["cog_deg"], serde_json::json!(224.0));
    assert_eq!(o.attributes["heading_deg"], serde_json::json!(215.0));
    assert_eq!(o.attributes["mmsi"], 371_798_000);
}

#[test]
fn normalise_rejects_missing_positions_and_keeps_static_data() {
    let feed = FeedId::new("ais-test").unwrap();
    // Build a type 1 with lon/lat not available through the test encoder.
    let s = crate::ais_props::encode_type1(123_456_789, None, None, Some(10), Some(900), Some(90));
    let Ok(Output::Message(d)) = Decoder::default().push_line(s.as_bytes()) else { panic!("{s}") };
    let err = normalise(&d, &feed, t0()).unwrap_err();
    assert!(matches!(err, NormaliseError::InvalidCoordinates { lon: None, lat: None, .. }));
    assert_eq!(err.reason(), ReasonCode::InvalidCoordinates);

    let mut dec = Decoder::default();
    dec.push_line(T5_1).unwrap();
    let Ok(Output::Message(d)) = dec.push_line(T5_2) else { panic!() };
    let Normalised::Static(s) = normalise(&d, &feed, t0()).unwrap() else { panic!() };
    assert_eq!(s.mmsi, d.message.header().mmsi);
    let attrs = static_attributes(&s.message);
    assert!(attrs.contains_key("name"), "{attrs:?}");
}
