//! Esri JSON codec on real ArcGIS REST answers and public test files (tests/data/esri, provenance in
//! tests/data/PROVENANCE.md). Counts and values are cross-checked by
//! `tests/pycheck_esri_cot/check_esri_cot.py` (Python standard library, written from the documented
//! rules); the Waldo Canyon polygon is compared with Esri Terraformer's own GeoJSON of it.

use geostream_codecs::esri_json::{EsriJsonCodec, EsriJsonOptions};
use geostream_codecs::mapping::Crs;
use geostream_codecs::registry::{CodecOptions, build};
use geostream_codecs::{Outcome, Rejection, Skip};
use geostream_model::geojson::{GeometryValue, Position};
use geostream_model::{Format, Observation, ReasonCode};
use serde_json::{Value, json};

use crate::data;
use crate::mapping_files::{ctx, mapping, run};

const FACILITIES: &str = "esri/pyesridump_esri_test_facilities_2015.json";
const COLUMBIA: &str = "esri/pyesridump_us_mo_columbia_address_points.json";
const KENT: &str = "esri/pyesridump_us_mi_kent_parcels_stateplane_wkt.json";
const WALDO: &str = "esri/terraformer_waldo_canyon_fire_2012_arcgis.json";
const WALDO_TERRAFORMER: &str = "esri/terraformer_waldo_canyon_fire_2012_geojson.json";

/// 2015-09-28T00:00:00Z, the day after the newest `observed` in the facilities answer.
const FACILITIES_RECEIVED_MS: i64 = 1_443_398_400_000;

/// Michigan South state plane (EPSG:2113 in international feet), as the Kent answer's WKT gives it.
const MICHIGAN_SOUTH_FT: &str = "+proj=lcc +lat_1=42.1 +lat_2=43.66666666666666 +lat_0=41.5 +lon_0=-84.36666666666666 \
                                 +x_0=4000000 +y_0=0 +ellps=GRS80 +units=ft +no_defs";

fn codec(m: Value, skip_null_geometry: bool) -> EsriJsonCodec {
    EsriJsonCodec::new(&mapping(m), EsriJsonOptions { skip_null_geometry }).unwrap()
}

fn observations(out: &[Outcome]) -> Vec<&Observation> {
    out.iter()
        .filter_map(|o| match o {
            Outcome::Observation(o) => {
                o.validate().unwrap();
                Some(&**o)
            }
            _ => None,
        })
        .collect()
}

fn rejections(out: &[Outcome]) -> Vec<&Rejection> {
    out.iter()
        .filter_map(|o| match o {
            Outcome::Rejected(r) => {
                assert!(!r.detail.is_empty());
                Some(r)
            }
            _ => None,
        })
        .collect()
}

fn point(o: &Observation) -> Vec<f64> {
    match &o.geometry.value {
        GeometryValue::Point { coordinates } => coordinates.as_slice().to_vec(),
        other => panic!("not a point: {other:?}"),
    }
}

/// Twice the signed area in lon/lat: positive for counter-clockwise rings.
fn area2(ring: &[Position]) -> f64 {
    ring.windows(2).map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1]).sum()
}

fn facilities_mapping() -> Value {
    json!({"track": "attributes.objectid",
           "attributes": {"facility": "attributes.facility", "quality": "attributes.quality",
                          "description": "attributes.description", "observed_ms": "attributes.observed"}})
}

#[test]
fn facilities_catalog_mapping_every_feature_with_geometry() {
    let bytes = data::read(FACILITIES);
    let (s, out) = run(&mut codec(facilities_mapping(), true), &bytes, &ctx(FACILITIES_RECEIVED_MS));
    // pycheck: catalog mapping (no time, skip_null_geometry): accepted=838 skipped=162 tracks=838
    assert_eq!((s.accepted, s.rejected_total(), s.tracks.len()), (838, 0, 838));
    assert_eq!(s.skipped.get(Skip::NotAPosition.as_str()), Some(&162));
    assert_eq!(out.len(), 1000, "one outcome per feature");
    // pycheck: first with geometry: index 28 306918 {'x': -117.710698, 'y': 34.1449904}
    assert_eq!(out[..28].iter().filter(|o| matches!(o, Outcome::Skipped(_))).count(), 28);
    let obs = observations(&out);
    let first = obs[0];
    assert_eq!(first.track.as_ref().unwrap().as_str(), "306918");
    assert_eq!(point(first), vec![-117.710698, 34.1449904], "WGS84 passes through bit for bit");
    assert_eq!(first.time, ctx(FACILITIES_RECEIVED_MS).received, "no time path: the receive time");
    assert_eq!(first.attributes["facility"], json!(123));
    assert_eq!(first.attributes["quality"], json!(0));
    assert_eq!(first.attributes["description"], json!("hello"));
    assert_eq!(first.attributes["observed_ms"], json!(1_430_680_059_000_i64));

    // The same answer without the skip option: each feature without geometry is a schema rejection.
    let (s, out) = run(&mut codec(facilities_mapping(), false), &bytes, &ctx(FACILITIES_RECEIVED_MS));
    assert_eq!((s.accepted, s.rejected.get("schema")), (838, Some(&162)));
    let r = rejections(&out)[0];
    assert!(r.detail.starts_with("feature 0: feature has no geometry"), "{}", r.detail);
    let raw: Value = serde_json::from_slice(&r.raw).unwrap();
    assert_eq!(raw["attributes"]["objectid"], json!(306120), "the rejection carries its own feature");
}

#[test]
fn facilities_time_from_an_esri_date_field() {
    let bytes = data::read(FACILITIES);
    let mut m = facilities_mapping();
    m["time"] = json!("attributes.observed");
    m["time_format"] = json!("unix_ms");
    let (s, out) = run(&mut codec(m, false), &bytes, &ctx(FACILITIES_RECEIVED_MS));
    // pycheck: time = attributes.observed: accepted=73 rejected_schema=927 (no geometry 162, no time 765)
    assert_eq!((s.accepted, s.tracks.len()), (73, 73));
    assert_eq!(s.rejected.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), vec![("schema", 927)]);
    let obs = observations(&out);
    // pycheck: first timed: 306918 1430680059000 2015-05-03T19:07:39
    assert_eq!(obs[0].track.as_ref().unwrap().as_str(), "306918");
    assert_eq!(obs[0].time.unix_timestamp_nanos(), 1_430_680_059_000_000_000);
    // pycheck: observed == 0: 7 (the epoch itself is a valid time)
    assert_eq!(obs.iter().filter(|o| o.time.unix_timestamp() == 0).count(), 7);
    let no_time = rejections(&out).into_iter().filter(|r| r.detail.contains("no event time")).count();
    assert_eq!(no_time, 765);
    let detail = &rejections(&out).iter().find(|r| r.detail.contains("no event time")).unwrap().detail;
    assert!(detail.contains("attributes.observed"), "{detail}");
}

#[test]
fn columbia_address_points_wgs84() {
    let bytes = data::read(COLUMBIA);
    let m = json!({"track": "attributes.OBJECTID",
                   "attributes": {"house_no": "attributes.HOUSENO", "street": "attributes.STREET"}});
    let (s, out) = run(&mut codec(m, false), &bytes, &ctx(FACILITIES_RECEIVED_MS));
    // pycheck: columbia: features=43 tracks=43
    assert_eq!((s.accepted, s.rejected_total(), s.tracks.len()), (43, 0, 43));
    let obs = observations(&out);
    assert_eq!(obs[0].track.as_ref().unwrap().as_str(), "64579816");
    assert_eq!(point(obs[0]), vec![-92.26984648440359, 38.785711209318976]);
    assert_eq!(obs[0].attributes["house_no"], json!(4880));
    assert_eq!(obs[0].attributes["street"], json!("CLELLIE HARMON"));
    assert_eq!(obs[42].track.as_ref().unwrap().as_str(), "64579858");
    assert_eq!(point(obs[42]), vec![-92.23459497872972, 38.77432318174149]);
}

#[test]
fn kent_wkt_only_reference_needs_mapping_crs() {
    let bytes = data::read(KENT);
    let m = json!({"track": "attributes.OBJECTID", "attributes": {"area_ft2": "attributes.\"SHAPE.STArea()\""}});
    let (s, out) = run(&mut codec(m.clone(), false), &bytes, &ctx(FACILITIES_RECEIVED_MS));
    assert_eq!((s.accepted, s.rejected.get("unsupported")), (0, Some(&15)));
    let detail = &rejections(&out)[0].detail;
    assert!(detail.starts_with("feature 0: a spatialReference given only as WKT"), "{detail}");
    assert!(detail.contains("mapping.crs"), "says how to fix it: {detail}");

    let mut with_crs = m;
    with_crs["crs"] = json!(MICHIGAN_SOUTH_FT);
    let (s, out) = run(&mut codec(with_crs, false), &bytes, &ctx(FACILITIES_RECEIVED_MS));
    // pycheck: kent: features=15, one polygon of one ring each
    assert_eq!((s.accepted, s.rejected_total(), s.tracks.len()), (15, 0, 15));
    let obs = observations(&out);
    for o in &obs {
        let GeometryValue::Polygon { coordinates } = &o.geometry.value else { panic!("{:?}", o.geometry) };
        assert_eq!(coordinates.len(), 1);
        assert!(area2(&coordinates[0]) > 0.0, "outer rings counter-clockwise");
    }
    let GeometryValue::Polygon { coordinates } = &obs[0].geometry.value else { panic!() };
    let ring = &coordinates[0];
    assert_eq!(ring.len(), 8);
    // pycheck (Snyder's LCC inverse): first vertex -> lon -85.78650214544703 lat 43.292923570997466;
    // the second Esri vertex -> lon -85.78650214130508 lat 43.29292339160886. Rewound, they are the
    // first and the second-to-last positions.
    let close = |p: &Position, lon: f64, lat: f64| (p[0] - lon).abs() < 1e-8 && (p[1] - lat).abs() < 1e-8;
    assert!(close(&ring[0], -85.78650214544703, 43.292923570997466), "{:?}", ring[0]);
    assert!(close(&ring[6], -85.78650214130508, 43.29292339160886), "{:?}", ring[6]);
    // pycheck: area ft2 (shoelace) 160469.21826171875 SHAPE.STArea() 160469.21826171875
    assert_eq!(obs[0].attributes["area_ft2"], json!(160_469.218_261_718_75));
}

#[test]
fn waldo_canyon_rings_grouped_as_terraformer_does() {
    let bytes = data::read(WALDO);
    let mut c = codec(json!({}), false);
    // The file is a bare geometry: the codec says how to wrap it.
    let (s, out) = run(&mut c, &bytes, &ctx(FACILITIES_RECEIVED_MS));
    assert_eq!(s.rejected.get("schema"), Some(&1));
    assert!(rejections(&out)[0].detail.contains("bare geometry"), "{:?}", out);

    let wrapped = [b"{\"geometry\":".as_slice(), &bytes, b"}"].concat();
    let (s, out) = run(&mut c, &wrapped, &ctx(FACILITIES_RECEIVED_MS));
    assert_eq!((s.accepted, s.rejected_total()), (1, 0));
    let obs = observations(&out);
    let GeometryValue::MultiPolygon { coordinates: ours } = &obs[0].geometry.value else { panic!() };
    let reference: Value = serde_json::from_slice(&data::read(WALDO_TERRAFORMER)).unwrap();
    let theirs = reference["coordinates"].as_array().unwrap();
    // pycheck: waldo: rings=31 outer=23 polygons=23 rings_per_polygon=[9, 1, 1, ...]
    assert_eq!(ours.len(), 23);
    assert_eq!(ours.len(), theirs.len());
    assert_eq!(ours.iter().map(Vec::len).collect::<Vec<_>>(), {
        let mut v = vec![9];
        v.extend([1; 22]);
        v
    });
    for (p, (mine, ref_poly)) in ours.iter().zip(theirs).enumerate() {
        let ref_rings = ref_poly.as_array().unwrap();
        assert_eq!(mine.len(), ref_rings.len(), "polygon {p}");
        for (r, (ring, ref_ring)) in mine.iter().zip(ref_rings).enumerate() {
            // Terraformer keeps Esri's order; RFC 7946 wants the reverse. Same positions either way.
            let mut a: Vec<(u64, u64)> = ring.iter().map(|q| (q[0].to_bits(), q[1].to_bits())).collect();
            let mut b: Vec<(u64, u64)> = ref_ring
                .as_array()
                .unwrap()
                .iter()
                .map(|q| (q[0].as_f64().unwrap().to_bits(), q[1].as_f64().unwrap().to_bits()))
                .collect();
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "polygon {p} ring {r}");
            if r == 0 {
                assert!(area2(ring) > 0.0, "polygon {p}: outer ring counter-clockwise");
            } else {
                assert!(area2(ring) < 0.0, "polygon {p} ring {r}: hole clockwise");
            }
        }
    }
    // pycheck: first polygon exterior first position (after rewinding): [-104.9794, 38.97993]
    assert_eq!(&ours[0][0][0][..], &[-104.9794, 38.97993][..]);
}

#[test]
fn gdal_test_files() {
    // Most of these files have no attributes: untracked observations.
    let dec = |name: &str| {
        let mut c = codec(json!({}), false);
        let (s, out) = run(&mut c, &data::read(&format!("esri/{name}")), &ctx(FACILITIES_RECEIVED_MS));
        (s, out)
    };
    // Three rings: two clockwise (the second inside the first) and one counter-clockwise elsewhere.
    // Winding decides, as the Esri spec and Esri's converters say: three polygons, the lone
    // counter-clockwise ring kept as it is. (GDAL reads this hand-made file by containment instead.)
    let (_, out) = dec("gdal_esripolygon_nested_clockwise_rings.json");
    let obs = observations(&out);
    let GeometryValue::MultiPolygon { coordinates } = &obs[0].geometry.value else { panic!("{:?}", obs[0]) };
    let as_pairs = |r: &Vec<Position>| r.iter().map(|p| (p[0], p[1])).collect::<Vec<_>>();
    // pycheck: as polygons: [[[[2, 49], [3, 49], [3, 50], [2, 50], [2, 49]]], [[[2.1, 49.1], ...]], [[[-2, 49], ...]]]
    assert_eq!(coordinates.len(), 3);
    assert_eq!(as_pairs(&coordinates[0][0]), vec![(2.0, 49.0), (3.0, 49.0), (3.0, 50.0), (2.0, 50.0), (2.0, 49.0)]);
    assert_eq!(as_pairs(&coordinates[1][0])[1], (2.9, 49.1));
    assert_eq!(
        as_pairs(&coordinates[2][0]),
        vec![(-2.0, 49.0), (-2.0, 50.0), (-3.0, 50.0), (-3.0, 49.0), (-2.0, 49.0)]
    );

    let (_, out) = dec("gdal_esrilinestring.json");
    let GeometryValue::LineString { coordinates } = &observations(&out)[0].geometry.value else { panic!() };
    assert_eq!(
        coordinates.iter().map(|p| p.as_slice().to_vec()).collect::<Vec<_>>(),
        vec![vec![2.0, 49.0], vec![3.0, 50.0]]
    );

    // hasZ and hasM: [x, y, z, m] keeps z, drops m.
    let (_, out) = dec("gdal_esrizmmultipoint.json");
    let GeometryValue::MultiPoint { coordinates } = &observations(&out)[0].geometry.value else { panic!() };
    assert_eq!(
        coordinates.iter().map(|p| p.as_slice().to_vec()).collect::<Vec<_>>(),
        vec![vec![2.0, 49.0, 1.0], vec![3.0, 50.0, 2.0]]
    );
    // hasM without hasZ: the third value is m, not a height.
    let (_, out) = dec("gdal_esrihasmnozmultipoint.json");
    let GeometryValue::MultiPoint { coordinates } = &observations(&out)[0].geometry.value else { panic!() };
    assert_eq!(
        coordinates.iter().map(|p| p.as_slice().to_vec()).collect::<Vec<_>>(),
        vec![vec![2.0, 49.0], vec![3.0, 50.0]]
    );
    // GDAL's own parser accepts trailing commas; JSON does not.
    let (s, out) = dec("gdal_esrizpoint_trailing_commas.json");
    assert_eq!((s.accepted, s.rejected.get("malformed")), (0, Some(&1)));
    assert!(rejections(&out)[0].detail.starts_with("not JSON: "), "{:?}", out);
}

#[test]
fn blm_answer_with_a_spatial_reference_on_the_geometry() {
    let bytes = data::read("esri/gdal_blm_plss_getlatlon_response.json");
    let mut c = codec(json!({"track": "attributes.landdescription"}), false);
    let (s, out) = run(&mut c, &bytes, &ctx(FACILITIES_RECEIVED_MS));
    assert_eq!((s.accepted, s.rejected_total()), (1, 0));
    let o = observations(&out)[0];
    assert_eq!(o.track.as_ref().unwrap().as_str(), "WA330160N0260E0SN070");
    let GeometryValue::Polygon { coordinates } = &o.geometry.value else { panic!() };
    // pycheck: blm: rings 1 vertices 27 clockwise True
    assert_eq!((coordinates.len(), coordinates[0].len()), (1, 27));
    assert!(area2(&coordinates[0]) > 0.0);
    assert_eq!(&coordinates[0][0][..], &[-119.60204327043593, 46.88624386787642][..]);
    assert_eq!(&coordinates[0][1][..], &[-119.60202248521686, 46.8898595819661][..], "rewound");
}

/// Web Mercator on the sphere, closed form (independent of proj4rs).
fn to_mercator(lon: f64, lat: f64) -> (f64, f64) {
    let r = 6_378_137.0_f64;
    (r * lon.to_radians(), r * (std::f64::consts::FRAC_PI_4 + lat.to_radians() / 2.0).tan().ln())
}

#[test]
fn web_mercator_answers_are_reprojected() {
    // No real answer in 102100 with a clear licence was found: the real Columbia points are
    // projected to Web Mercator here (closed form) and must come back where they were.
    let mut doc: Value = serde_json::from_slice(&data::read(COLUMBIA)).unwrap();
    let originals: Vec<(f64, f64)> = doc["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["geometry"]["x"].as_f64().unwrap(), f["geometry"]["y"].as_f64().unwrap()))
        .collect();
    for f in doc["features"].as_array_mut().unwrap() {
        let (x, y) = to_mercator(f["geometry"]["x"].as_f64().unwrap(), f["geometry"]["y"].as_f64().unwrap());
        f["geometry"] = json!({"x": x, "y": y});
    }
    let m = json!({"track": "attributes.OBJECTID"});
    for sr in [json!({"wkid": 102100, "latestWkid": 3857}), json!({"wkid": 102100}), json!({"wkid": 3857})] {
        doc["spatialReference"] = sr.clone();
        let (s, out) = run(&mut codec(m.clone(), false), &serde_json::to_vec(&doc).unwrap(), &ctx(0));
        assert_eq!((s.accepted, s.rejected_total()), (43, 0), "{sr}");
        for (o, (lon, lat)) in observations(&out).iter().zip(&originals) {
            let p = point(o);
            assert!((p[0] - lon).abs() < 1e-9 && (p[1] - lat).abs() < 1e-9, "{sr}: {p:?} vs {lon},{lat}");
        }
    }
    // A spatial reference on the geometry wins over the document's.
    doc["spatialReference"] = json!({"wkid": 4326});
    doc["features"][0]["geometry"]["spatialReference"] = json!({"wkid": 102100});
    let (s, out) = run(&mut codec(m.clone(), false), &serde_json::to_vec(&doc).unwrap(), &ctx(0));
    assert_eq!(s.accepted, 1, "only the first feature says it is in Web Mercator");
    let p = point(observations(&out)[0]);
    assert!((p[0] - originals[0].0).abs() < 1e-9);
    assert_eq!(s.rejected.get("invalid_coordinates"), Some(&42), "metres read as degrees are out of range");
    // The mapping's crs overrides whatever the payload says.
    let mut with_crs = m;
    with_crs["crs"] = json!("EPSG:3857");
    let (s, _) = run(&mut codec(with_crs, false), &serde_json::to_vec(&doc).unwrap(), &ctx(0));
    assert_eq!(s.accepted, 43);
    // And the registry builds the same codec from a feed's format and options.
    let mut built = build(
        Format::EsriJson,
        &mapping(json!({"track": "attributes.OBJECTID"})),
        &CodecOptions { skip_null_geometry: true, ..CodecOptions::default() },
    )
    .unwrap();
    let (s, _) = run(built.as_mut(), &serde_json::to_vec(&doc).unwrap(), &ctx(0));
    assert_eq!(s.accepted, 1);
    // Round trip through the crate's own forward projection as well.
    let crs = Crs::parse(Some("EPSG:3857")).unwrap();
    let (x, y) = crs.from_wgs84(originals[5].0, originals[5].1).unwrap();
    let (ex, ey) = to_mercator(originals[5].0, originals[5].1);
    assert!((x - ex).abs() < 1e-6 && (y - ey).abs() < 1e-6);
}

#[test]
fn payload_and_feature_rejections() {
    let c = || codec(json!({"track": "attributes.id"}), false);
    let one = |bytes: &[u8]| {
        let (_, out) = run(&mut c(), bytes, &ctx(0));
        out
    };
    let reason = |bytes: &[u8]| match one(bytes).as_slice() {
        [Outcome::Rejected(r)] => (r.reason, r.detail.clone()),
        other => panic!("{other:?}"),
    };
    let (r, d) = reason(br#"{"error": {"code": 400, "message": "Invalid or missing input parameters.", "details": ["'where' parameter is invalid"]}}"#);
    assert_eq!(r, ReasonCode::Schema);
    assert!(d.contains("code 400: Invalid or missing input parameters. ('where' parameter is invalid)"), "{d}");
    assert_eq!(reason(b"[1, 2]").0, ReasonCode::Schema);
    assert_eq!(reason(br#"{"features": {}}"#).0, ReasonCode::Schema);
    assert_eq!(reason(br#"{"spatialReference": {"wkid": "x"}, "features": []}"#).0, ReasonCode::Schema);
    assert!(one(br#"{"features": []}"#).is_empty(), "an empty FeatureSet is nothing to report");
    let f = |geometry: &str| format!(r#"{{"features": [{{"attributes": {{"id": 7}}, "geometry": {geometry}}}]}}"#);
    let cases = [
        (r#"{"x": 1}"#, ReasonCode::Schema, "x or y but not both"),
        (r#"{"x": "east", "y": 2}"#, ReasonCode::Schema, "not a number"),
        (r#"{"x": "NaN", "y": "NaN"}"#, ReasonCode::Schema, "no geometry"),
        (r#"{"x": 0, "y": 0}"#, ReasonCode::NullIsland, "(0, 0)"),
        (r#"{"x": 200, "y": 0}"#, ReasonCode::InvalidCoordinates, "out of range"),
        (r#"{"points": [[1]]}"#, ReasonCode::Schema, "points[0]"),
        (r#"{"paths": [[[1, 2]]]}"#, ReasonCode::Schema, "paths[0] has 1 positions"),
        (r#"{"rings": [[[0, 0], [0, 1], [1, 1], [1, 0]]]}"#, ReasonCode::Schema, "rings[0] is not closed"),
        (r#"{"rings": [[[0, 0], [0, 1], [0, 0]]]}"#, ReasonCode::Schema, "at least 4"),
        (r#"{"curveRings": []}"#, ReasonCode::Unsupported, "returnTrueCurves"),
        (r#"{"xmin": 1, "ymin": 1, "xmax": 2, "ymax": 2}"#, ReasonCode::Unsupported, "envelope"),
        (r#"{"x": 1, "y": 2, "spatialReference": {"wkid": 2263}}"#, ReasonCode::Unsupported, "wkid 2263"),
        (
            r#"{"x": 1, "y": 2, "spatialReference": {"wkid": 102656, "latestWkid": 2234}}"#,
            ReasonCode::Unsupported,
            "wkid 102656 (latestWkid 2234)",
        ),
        (
            r#"{"x": 1e8, "y": 1e8, "spatialReference": {"wkid": 32633}}"#,
            ReasonCode::InvalidCoordinates,
            "cannot be reprojected",
        ),
        ("[1, 2]", ReasonCode::Schema, "geometry:"),
    ];
    for (g, want, text) in cases {
        let (r, d) = reason(f(g).as_bytes());
        assert_eq!(r, want, "{g}: {d}");
        assert!(d.starts_with("feature 0: ") && d.contains(text), "{g}: {d}");
    }
    // A single feature, its rejection carrying the whole payload; a location in front of details.
    let single = br#"{"attributes": {"id": "a"}, "geometry": {"x": 10.5, "y": 59.9, "z": 12}}"#;
    let out = one(single);
    assert_eq!(point(observations(&out)[0]), vec![10.5, 59.9, 12.0]);
    let bad = br#"{"attributes": {}, "geometry": {"x": 10.5, "y": 59.9}}"#;
    let mut located = ctx(0);
    located.location = "https://example.org/FeatureServer/0/query".into();
    let (_, out) = run(&mut c(), bad, &located);
    let r = rejections(&out)[0];
    assert_eq!((r.reason, r.raw.as_slice()), (ReasonCode::Schema, bad.as_slice()));
    assert_eq!(r.detail, "https://example.org/FeatureServer/0/query: no track id at attributes.id");
    // A feature that is not an object.
    let (r, d) = reason(br#"{"features": [3]}"#);
    assert_eq!((r, d.as_str()), (ReasonCode::Schema, "feature 0: not an object"));
    // A mapping with lon/lat ignores the geometry (tables with coordinate columns).
    let mut lonlat = codec(json!({"lon": "attributes.X", "lat": "attributes.Y"}), false);
    let (s, _) = run(&mut lonlat, br#"{"features": [{"attributes": {"X": 1.5, "Y": 2.5}}]}"#, &ctx(0));
    assert_eq!(s.accepted, 1);
}
