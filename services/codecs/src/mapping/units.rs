//! Units of mapped attributes and their conversion to SI (metres, metres per second, degrees).

/// A source unit the normaliser converts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Metres (identity).
    Metre,
    /// Metres per second (identity).
    MetrePerSecond,
    /// Degrees (identity).
    Degree,
    /// Knots (1852 m per hour).
    Knot,
    /// Kilometres per hour.
    KilometrePerHour,
    /// Statute miles per hour (0.44704 m/s exactly).
    MilePerHour,
    /// International feet (0.3048 m exactly).
    Foot,
    /// Feet per minute (0.00508 m/s exactly), the usual vertical rate of aircraft.
    FootPerMinute,
}

impl Unit {
    /// Every unit with the names it is written as in a mapping (case-insensitive).
    pub const NAMES: &'static [(Unit, &'static [&'static str])] = &[
        (Unit::Metre, &["m", "metre", "metres", "meter", "meters"]),
        (Unit::MetrePerSecond, &["m/s", "mps"]),
        (Unit::Degree, &["deg", "degree", "degrees"]),
        (Unit::Knot, &["knots", "knot", "kn", "kt", "kts"]),
        (Unit::KilometrePerHour, &["km/h", "kmh", "kph"]),
        (Unit::MilePerHour, &["mph", "mi/h"]),
        (Unit::Foot, &["ft", "feet", "foot"]),
        (Unit::FootPerMinute, &["ft/min", "feet/min", "fpm"]),
    ];

    /// The unit written as `name`, if known.
    pub fn parse(name: &str) -> Option<Unit> {
        let name = name.trim();
        Self::NAMES.iter().find(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(name))).map(|(u, _)| *u)
    }

    /// Factor from this unit to its SI unit.
    pub const fn factor(self) -> f64 {
        match self {
            Unit::Metre | Unit::MetrePerSecond | Unit::Degree => 1.0,
            Unit::Knot => 1852.0 / 3600.0,
            Unit::KilometrePerHour => 1000.0 / 3600.0,
            Unit::MilePerHour => 0.44704,
            Unit::Foot => 0.3048,
            Unit::FootPerMinute => 0.3048 / 60.0,
        }
    }

    /// `value` in the SI unit.
    pub fn to_si(self, value: f64) -> f64 {
        match self {
            Unit::Metre | Unit::MetrePerSecond | Unit::Degree => value,
            _ => value * self.factor(),
        }
    }

    /// The SI unit's name.
    pub const fn si_name(self) -> &'static str {
        match self {
            Unit::Metre | Unit::Foot => "m",
            Unit::Degree => "deg",
            _ => "m/s",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(Unit::parse("Knots"), Some(Unit::Knot));
        assert_eq!(Unit::parse("furlongs"), None);
        assert!((Unit::Knot.to_si(1.0) - 0.514_444_444).abs() < 1e-9);
        assert!((Unit::KilometrePerHour.to_si(36.0) - 10.0).abs() < 1e-12);
        assert!((Unit::MilePerHour.to_si(100.0) - 44.704).abs() < 1e-12);
        assert!((Unit::Foot.to_si(1000.0) - 304.8).abs() < 1e-9);
        assert!((Unit::FootPerMinute.to_si(-960.0) - -4.8768).abs() < 1e-12);
        assert_eq!(Unit::Degree.to_si(265.5), 265.5);
    }
}
