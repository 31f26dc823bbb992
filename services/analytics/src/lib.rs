//! Windowed geospatial analytics over Observations: event-time windows and watermarks, geofence and
//! track-motion state machines, gap detection, spatial bins, and DataFusion SQL over closed windows.
//! State is plain data that can be checkpointed and restored byte for byte.
//!
//! Must not: do I/O, spawn tasks or read the wall clock; time only advances through the watermark the
//! caller feeds in, so results depend on the input alone and tests can replay any order.
//!
//! Status: the analytics core arrives with the stream-analytics issue.
