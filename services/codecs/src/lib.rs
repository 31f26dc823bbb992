//! Decoders and the normaliser: the bytes a sensor sends (JSON, GeoJSON, CSV, NMEA 0183, AIS,
//! GTFS-realtime, GPX, CAP, Esri JSON, CoT) become `geostream_model` Observations or typed decode errors
//! that map to dead-letter reason codes. Field mapping, units, time parsing and reprojection live here.
//!
//! Must not: do I/O of any kind (no files, sockets, clocks read implicitly, async or threads). Every
//! function is a pure transformation so it can be fuzzed and tested exhaustively; the ingest stage owns
//! the sources. Must never panic on any input.
//!
//! Status: the decoders arrive with the feed-adapter issue; this crate is the place they go.
