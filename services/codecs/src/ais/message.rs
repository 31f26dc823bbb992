//! Typed AIS messages (ITU-R M.1371-5) and their bit layouts.
//!
//! Units are converted on decode: positions to degrees, speeds to knots, courses to degrees,
//! draught to metres. "Not available" sentinels (lon 181, lat 91, SOG 1023, COG 3600, heading 511,
//! ...) become `None`; other out-of-range raw values are kept so a later stage can judge them.

use super::bits::{AisText, Bits};
use super::error::AisError;

/// The first 38 bits every AIS message shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Message type, 1..=27 (0 and 28..=63 are undefined but still decoded here).
    pub msg_type: u8,
    /// Repeat indicator, 0..=3.
    pub repeat: u8,
    /// The sender's MMSI.
    pub mmsi: u32,
}

/// A decoded AIS message of one of the supported types.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Message {
    /// Types 1, 2, 3: class A position report.
    Position(PositionReport),
    /// Type 4: base station report (with its UTC time).
    BaseStation(BaseStationReport),
    /// Type 5: class A static and voyage related data.
    StaticVoyage(StaticVoyage),
    /// Type 18: class B position report.
    ClassB(ClassBPosition),
    /// Type 19: extended class B position report.
    ClassBExtended(ClassBExtended),
    /// Type 21: aid-to-navigation report.
    AidToNavigation(AidToNavigation),
    /// Type 24: static data report, part A or B.
    StaticDataReport(StaticDataReport),
    /// Type 27: long-range (satellite) position report.
    LongRange(LongRangePosition),
}

impl Message {
    /// The common header.
    pub fn header(&self) -> Header {
        match self {
            Message::Position(m) => m.header,
            Message::BaseStation(m) => m.header,
            Message::StaticVoyage(m) => m.header,
            Message::ClassB(m) => m.header,
            Message::ClassBExtended(m) => m.header,
            Message::AidToNavigation(m) => m.header,
            Message::StaticDataReport(m) => m.header,
            Message::LongRange(m) => m.header,
        }
    }
}

/// Types 1, 2, 3.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionReport {
    /// Header.
    pub header: Header,
    /// Navigational status code 0..=15 (15 = not defined).
    pub nav_status: u8,
    /// Rate of turn, raw ROT_AIS value -127..=127 (-128 = not available → `None`).
    pub rot: Option<i8>,
    /// Speed over ground in knots (1023 raw = n/a).
    pub sog_knots: Option<f64>,
    /// Position accuracy flag (true = DGPS quality, < 10 m).
    pub accuracy: bool,
    /// Longitude in degrees (181 = n/a).
    pub lon: Option<f64>,
    /// Latitude in degrees (91 = n/a).
    pub lat: Option<f64>,
    /// Course over ground in degrees (3600 raw = n/a).
    pub cog_deg: Option<f64>,
    /// True heading in degrees (511 = n/a).
    pub heading_deg: Option<u16>,
    /// UTC second of the report (60..=63 mean n/a, manual, dead reckoning, inoperative).
    pub second: u8,
    /// Special manoeuvre indicator.
    pub maneuver: u8,
    /// RAIM flag.
    pub raim: bool,
    /// Radio status (19 bits), if the payload carried it.
    pub radio: Option<u32>,
}

/// Type 4.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseStationReport {
    /// Header.
    pub header: Header,
    /// UTC year (0 = n/a).
    pub year: u16,
    /// UTC month (0 = n/a).
    pub month: u8,
    /// UTC day (0 = n/a).
    pub day: u8,
    /// UTC hour (24 = n/a).
    pub hour: u8,
    /// UTC minute (60 = n/a).
    pub minute: u8,
    /// UTC second (60 = n/a).
    pub second: u8,
    /// Position accuracy flag.
    pub accuracy: bool,
    /// Longitude in degrees (181 = n/a).
    pub lon: Option<f64>,
    /// Latitude in degrees (91 = n/a).
    pub lat: Option<f64>,
    /// Type of position fixing device.
    pub epfd: u8,
    /// RAIM flag.
    pub raim: bool,
    /// Radio status (19 bits), if present.
    pub radio: Option<u32>,
}

/// Ship dimensions from the reference point, in metres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dimensions {
    /// To bow.
    pub to_bow: u16,
    /// To stern.
    pub to_stern: u16,
    /// To port.
    pub to_port: u8,
    /// To starboard.
    pub to_starboard: u8,
}

/// Type 5.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticVoyage {
    /// Header.
    pub header: Header,
    /// AIS version indicator.
    pub ais_version: u8,
    /// IMO number (0 = n/a).
    pub imo: u32,
    /// Call sign.
    pub callsign: AisText,
    /// Vessel name.
    pub shipname: AisText,
    /// Ship and cargo type code.
    pub shiptype: u8,
    /// Dimensions.
    pub dimensions: Dimensions,
    /// Type of position fixing device.
    pub epfd: u8,
    /// ETA month (0 = n/a).
    pub eta_month: u8,
    /// ETA day (0 = n/a).
    pub eta_day: u8,
    /// ETA hour (24 = n/a).
    pub eta_hour: u8,
    /// ETA minute (60 = n/a).
    pub eta_minute: u8,
    /// Maximum present static draught in metres.
    pub draught_m: f64,
    /// Destination.
    pub destination: AisText,
    /// Data terminal equipment flag (false = available), if present.
    pub dte: Option<bool>,
}

/// Type 18.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassBPosition {
    /// Header.
    pub header: Header,
    /// Regional reserved bits 38..46.
    pub reserved: u8,
    /// Speed over ground in knots.
    pub sog_knots: Option<f64>,
    /// Position accuracy flag.
    pub accuracy: bool,
    /// Longitude in degrees.
    pub lon: Option<f64>,
    /// Latitude in degrees.
    pub lat: Option<f64>,
    /// Course over ground in degrees.
    pub cog_deg: Option<f64>,
    /// True heading in degrees.
    pub heading_deg: Option<u16>,
    /// UTC second.
    pub second: u8,
    /// Regional reserved.
    pub regional: u8,
    /// Class B unit flag (true = carrier sense unit).
    pub cs: bool,
    /// Display flag.
    pub display: bool,
    /// DSC flag.
    pub dsc: bool,
    /// Band flag.
    pub band: bool,
    /// Message 22 flag.
    pub msg22: bool,
    /// Assigned mode flag.
    pub assigned: bool,
    /// RAIM flag.
    pub raim: bool,
    /// Radio status (20 bits), if present.
    pub radio: Option<u32>,
}

/// Type 19.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassBExtended {
    /// Header.
    pub header: Header,
    /// Regional reserved bits 38..46.
    pub reserved: u8,
    /// Speed over ground in knots.
    pub sog_knots: Option<f64>,
    /// Position accuracy flag.
    pub accuracy: bool,
    /// Longitude in degrees.
    pub lon: Option<f64>,
    /// Latitude in degrees.
    pub lat: Option<f64>,
    /// Course over ground in degrees.
    pub cog_deg: Option<f64>,
    /// True heading in degrees.
    pub heading_deg: Option<u16>,
    /// UTC second.
    pub second: u8,
    /// Regional reserved.
    pub regional: u8,
    /// Vessel name.
    pub shipname: AisText,
    /// Ship and cargo type code.
    pub shiptype: u8,
    /// Dimensions.
    pub dimensions: Dimensions,
    /// Type of position fixing device.
    pub epfd: u8,
    /// RAIM flag.
    pub raim: bool,
    /// DTE flag.
    pub dte: bool,
    /// Assigned mode flag.
    pub assigned: bool,
}

/// Type 21.
#[derive(Debug, Clone, PartialEq)]
pub struct AidToNavigation {
    /// Header.
    pub header: Header,
    /// Aid type code.
    pub aid_type: u8,
    /// Name, including the name extension when present.
    pub name: AisText,
    /// Position accuracy flag.
    pub accuracy: bool,
    /// Longitude in degrees.
    pub lon: Option<f64>,
    /// Latitude in degrees.
    pub lat: Option<f64>,
    /// Dimensions.
    pub dimensions: Dimensions,
    /// Type of position fixing device.
    pub epfd: u8,
    /// UTC second.
    pub second: u8,
    /// Off-position indicator.
    pub off_position: bool,
    /// Regional reserved.
    pub regional: u8,
    /// RAIM flag.
    pub raim: bool,
    /// Virtual aid flag.
    pub virtual_aid: bool,
    /// Assigned mode flag.
    pub assigned: bool,
}

/// Type 24, part A or B.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticDataReport {
    /// Header.
    pub header: Header,
    /// The part's content.
    pub part: StaticDataPart,
}

/// The two parts of a type 24 message.
#[derive(Debug, Clone, PartialEq)]
pub enum StaticDataPart {
    /// Part A: the name.
    A {
        /// Vessel name.
        shipname: AisText,
    },
    /// Part B: type, vendor, call sign, dimensions (or mothership MMSI for auxiliary craft).
    B {
        /// Ship and cargo type code.
        shiptype: u8,
        /// Vendor id (3 characters).
        vendor_id: AisText,
        /// Unit model code.
        model: u8,
        /// Serial number.
        serial: u32,
        /// Call sign.
        callsign: AisText,
        /// Dimensions (all zero for auxiliary craft, see `mothership_mmsi`).
        dimensions: Dimensions,
        /// For auxiliary craft (MMSI 98XXXYYYY): the mother ship's MMSI.
        mothership_mmsi: Option<u32>,
    },
}

/// Type 27.
#[derive(Debug, Clone, PartialEq)]
pub struct LongRangePosition {
    /// Header.
    pub header: Header,
    /// Position accuracy flag.
    pub accuracy: bool,
    /// RAIM flag.
    pub raim: bool,
    /// Navigational status code.
    pub nav_status: u8,
    /// Longitude in degrees (1/10 minute resolution; 181 = n/a).
    pub lon: Option<f64>,
    /// Latitude in degrees (91 = n/a).
    pub lat: Option<f64>,
    /// Speed over ground in whole knots (63 = n/a).
    pub sog_knots: Option<f64>,
    /// Course over ground in whole degrees (511 = n/a).
    pub cog_deg: Option<f64>,
    /// GNSS position status (false = current position, true = not GNSS position).
    pub gnss: bool,
}

/// Decodes the header; needs 38 bits.
pub(crate) fn header(b: &mut Bits) -> Result<Header, AisError> {
    let msg_type = b.u(0, 6, "message type")? as u8;
    b.set_type(msg_type);
    Ok(Header { msg_type, repeat: b.u(6, 2, "repeat indicator")? as u8, mmsi: b.u(8, 30, "mmsi")? })
}

fn lon_1_10000_min(raw: i32) -> Option<f64> {
    (raw != 108_600_000).then(|| f64::from(raw) / 600_000.0)
}

fn lat_1_10000_min(raw: i32) -> Option<f64> {
    (raw != 54_600_000).then(|| f64::from(raw) / 600_000.0)
}

fn sog_tenths(raw: u32) -> Option<f64> {
    (raw != 1023).then(|| f64::from(raw) / 10.0)
}

fn cog_tenths(raw: u32) -> Option<f64> {
    (raw != 3600).then(|| f64::from(raw) / 10.0)
}

fn heading(raw: u32) -> Option<u16> {
    (raw != 511).then_some(raw as u16)
}

fn dims(b: &Bits, at: usize) -> Result<Dimensions, AisError> {
    Ok(Dimensions {
        to_bow: b.u(at, 9, "to_bow")? as u16,
        to_stern: b.u(at + 9, 9, "to_stern")? as u16,
        to_port: b.u(at + 18, 6, "to_port")? as u8,
        to_starboard: b.u(at + 24, 6, "to_starboard")? as u8,
    })
}

/// Decodes a whole message from its payload bits.
pub(crate) fn decode(b: &mut Bits) -> Result<Message, AisError> {
    let h = header(b)?;
    Ok(match h.msg_type {
        1..=3 => Message::Position(PositionReport {
            header: h,
            nav_status: b.u(38, 4, "nav_status")? as u8,
            rot: {
                let r = b.i(42, 8, "rot")?;
                (r != -128).then_some(r as i8)
            },
            sog_knots: sog_tenths(b.u(50, 10, "sog")?),
            accuracy: b.b(60, "accuracy")?,
            lon: lon_1_10000_min(b.i(61, 28, "lon")?),
            lat: lat_1_10000_min(b.i(89, 27, "lat")?),
            cog_deg: cog_tenths(b.u(116, 12, "cog")?),
            heading_deg: heading(b.u(128, 9, "heading")?),
            second: b.u(137, 6, "second")? as u8,
            maneuver: b.u(143, 2, "maneuver")? as u8,
            raim: b.b(148, "raim")?,
            radio: b.opt_u(149, 19),
        }),
        4 => Message::BaseStation(BaseStationReport {
            header: h,
            year: b.u(38, 14, "year")? as u16,
            month: b.u(52, 4, "month")? as u8,
            day: b.u(56, 5, "day")? as u8,
            hour: b.u(61, 5, "hour")? as u8,
            minute: b.u(66, 6, "minute")? as u8,
            second: b.u(72, 6, "second")? as u8,
            accuracy: b.b(78, "accuracy")?,
            lon: lon_1_10000_min(b.i(79, 28, "lon")?),
            lat: lat_1_10000_min(b.i(107, 27, "lat")?),
            epfd: b.u(134, 4, "epfd")? as u8,
            raim: b.b(148, "raim")?,
            radio: b.opt_u(149, 19),
        }),
        5 => Message::StaticVoyage(StaticVoyage {
            header: h,
            ais_version: b.u(38, 2, "ais_version")? as u8,
            imo: b.u(40, 30, "imo")?,
            callsign: b.text(70, 7, "callsign")?,
            shipname: b.text(112, 20, "shipname")?,
            shiptype: b.u(232, 8, "shiptype")? as u8,
            dimensions: dims(b, 240)?,
            epfd: b.u(270, 4, "epfd")? as u8,
            eta_month: b.u(274, 4, "eta month")? as u8,
            eta_day: b.u(278, 5, "eta day")? as u8,
            eta_hour: b.u(283, 5, "eta hour")? as u8,
            eta_minute: b.u(288, 6, "eta minute")? as u8,
            draught_m: f64::from(b.u(294, 8, "draught")?) / 10.0,
            // Many real senders cut the last bits of the destination; take what is there.
            destination: {
                b.u(302, 6, "destination")?;
                b.text_lenient(302, 20)
            },
            dte: b.opt_u(422, 1).map(|v| v == 1),
        }),
        18 => Message::ClassB(ClassBPosition {
            header: h,
            reserved: b.u(38, 8, "reserved")? as u8,
            sog_knots: sog_tenths(b.u(46, 10, "sog")?),
            accuracy: b.b(56, "accuracy")?,
            lon: lon_1_10000_min(b.i(57, 28, "lon")?),
            lat: lat_1_10000_min(b.i(85, 27, "lat")?),
            cog_deg: cog_tenths(b.u(112, 12, "cog")?),
            heading_deg: heading(b.u(124, 9, "heading")?),
            second: b.u(133, 6, "second")? as u8,
            regional: b.u(139, 2, "regional")? as u8,
            cs: b.b(141, "cs")?,
            display: b.b(142, "display")?,
            dsc: b.b(143, "dsc")?,
            band: b.b(144, "band")?,
            msg22: b.b(145, "msg22")?,
            assigned: b.b(146, "assigned")?,
            raim: b.b(147, "raim")?,
            radio: b.opt_u(148, 20),
        }),
        19 => Message::ClassBExtended(ClassBExtended {
            header: h,
            reserved: b.u(38, 8, "reserved")? as u8,
            sog_knots: sog_tenths(b.u(46, 10, "sog")?),
            accuracy: b.b(56, "accuracy")?,
            lon: lon_1_10000_min(b.i(57, 28, "lon")?),
            lat: lat_1_10000_min(b.i(85, 27, "lat")?),
            cog_deg: cog_tenths(b.u(112, 12, "cog")?),
            heading_deg: heading(b.u(124, 9, "heading")?),
            second: b.u(133, 6, "second")? as u8,
            regional: b.u(139, 4, "regional")? as u8,
            shipname: b.text(143, 20, "shipname")?,
            shiptype: b.u(263, 8, "shiptype")? as u8,
            dimensions: dims(b, 271)?,
            epfd: b.u(301, 4, "epfd")? as u8,
            raim: b.b(305, "raim")?,
            dte: b.b(306, "dte")?,
            assigned: b.b(307, "assigned")?,
        }),
        21 => {
            b.text(43, 20, "name")?;
            // The name extension (bits 272..) continues the 20-character name; '@' padding in the
            // name ends the text, so a short name is never joined to stray extension bits.
            let ext_chars = (b.len().saturating_sub(272) / 6).min(14);
            let name = b.text_split(43, 20, 272, ext_chars);
            Message::AidToNavigation(AidToNavigation {
                header: h,
                aid_type: b.u(38, 5, "aid_type")? as u8,
                name,
                accuracy: b.b(163, "accuracy")?,
                lon: lon_1_10000_min(b.i(164, 28, "lon")?),
                lat: lat_1_10000_min(b.i(192, 27, "lat")?),
                dimensions: dims(b, 219)?,
                epfd: b.u(249, 4, "epfd")? as u8,
                second: b.u(253, 6, "second")? as u8,
                off_position: b.b(259, "off_position")?,
                regional: b.u(260, 8, "regional")? as u8,
                raim: b.b(268, "raim")?,
                virtual_aid: b.b(269, "virtual_aid")?,
                assigned: b.b(270, "assigned")?,
            })
        }
        24 => {
            let part = match b.u(38, 2, "part number")? {
                0 => StaticDataPart::A {
                    shipname: {
                        b.u(40, 6, "shipname")?;
                        b.text_lenient(40, 20)
                    },
                },
                1 => {
                    let auxiliary = h.mmsi / 10_000_000 == 98;
                    StaticDataPart::B {
                        shiptype: b.u(40, 8, "shiptype")? as u8,
                        vendor_id: b.text(48, 3, "vendor_id")?,
                        model: b.u(66, 4, "model")? as u8,
                        serial: b.u(70, 20, "serial")?,
                        callsign: b.text(90, 7, "callsign")?,
                        dimensions: if auxiliary { Dimensions::default() } else { dims(b, 132)? },
                        mothership_mmsi: if auxiliary { Some(b.u(132, 30, "mothership_mmsi")?) } else { None },
                    }
                }
                _ => return Err(AisError::Unsupported { header: h }),
            };
            Message::StaticDataReport(StaticDataReport { header: h, part })
        }
        27 => Message::LongRange(LongRangePosition {
            header: h,
            accuracy: b.b(38, "accuracy")?,
            raim: b.b(39, "raim")?,
            nav_status: b.u(40, 4, "nav_status")? as u8,
            lon: {
                let raw = b.i(44, 18, "lon")?;
                (raw != 108_600).then(|| f64::from(raw) / 600.0)
            },
            lat: {
                let raw = b.i(62, 17, "lat")?;
                (raw != 54_600).then(|| f64::from(raw) / 600.0)
            },
            sog_knots: {
                let raw = b.u(79, 6, "sog")?;
                (raw != 63).then_some(f64::from(raw))
            },
            cog_deg: {
                let raw = b.u(85, 9, "cog")?;
                (raw != 511).then_some(f64::from(raw))
            },
            gnss: b.b(94, "gnss")?,
        }),
        _ => return Err(AisError::Unsupported { header: h }),
    })
}
