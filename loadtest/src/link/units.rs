//! Units as people write them: rates (`512k`, `2M`), durations (`50ms`, `1.5s`), probabilities
//! (`5%`, `0.05`) and byte sizes (`64kB`).

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use super::ParseError;

/// A data rate in bit/s. Parses from `1500000`, `512k`, `2.5M` or `1G` (decimal prefixes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rate(u64);

impl Rate {
    /// A rate of `bps` bit/s.
    pub const fn from_bps(bps: u64) -> Self {
        Rate(bps)
    }

    /// A rate of `kbps` kbit/s.
    pub const fn from_kbps(kbps: u64) -> Self {
        Rate(kbps * 1_000)
    }

    /// The rate in bit/s.
    pub const fn bps(self) -> u64 {
        self.0
    }
}

impl FromStr for Rate {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Rate(s.to_owned());
        let value = parse_scaled(s).ok_or_else(err)?;
        // Up to 1 Tbit/s: far beyond anything this emulator can relay, and safely inside u64.
        if value > 1e12 {
            return Err(err());
        }
        Ok(Rate(value.round() as u64))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => write!(f, "0"),
            bps if bps % 1_000_000 == 0 => write!(f, "{}M", bps / 1_000_000),
            bps if bps % 1_000 == 0 => write!(f, "{}k", bps / 1_000),
            bps => write!(f, "{bps}"),
        }
    }
}

/// Parses a duration: a number with the unit `us`, `ms` or `s` (`50ms`, `1.5s`, `500us`); a
/// bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<Duration, ParseError> {
    let err = || ParseError::Duration(s.to_owned());
    let t = s.trim();
    let (number, unit) = if let Some(n) = t.strip_suffix("us").or_else(|| t.strip_suffix("µs")) {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if t == "0" {
        (t, 0.0)
    } else {
        return Err(err());
    };
    let seconds = parse_number(number).ok_or_else(err)? * unit;
    Duration::try_from_secs_f64(seconds).map_err(|_| err())
}

/// Parses a probability: a percentage (`5%`) or a fraction (`0.05`), between 0 and 1.
pub fn parse_probability(s: &str) -> Result<f64, ParseError> {
    let err = || ParseError::Probability(s.to_owned());
    let t = s.trim();
    let value = match t.strip_suffix('%') {
        Some(percent) => parse_number(percent).ok_or_else(err)? / 100.0,
        None => parse_number(t).ok_or_else(err)?,
    };
    if value > 1.0 {
        return Err(err());
    }
    Ok(value)
}

/// Parses a byte size such as `1500B`, `64kB` or `1MB` (decimal prefixes: 1 kB = 1000 B).
/// `None` when `s` is not one.
pub(crate) fn parse_bytes(s: &str) -> Option<u64> {
    let value = parse_scaled(s.trim().strip_suffix('B')?)?;
    (value <= 1e15).then_some(value.round() as u64)
}

/// A number with an optional decimal prefix: `2.5M` is 2 500 000.
fn parse_scaled(s: &str) -> Option<f64> {
    let t = s.trim();
    let (number, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'M')) => (&t[..i], 1e6),
        Some((i, 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    Some(parse_number(number)? * scale)
}

/// A finite, non-negative decimal number.
fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    // f64's parser also takes "inf", "NaN" and "1e3"; only plain decimals are meant here.
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Serde helper: a [`Duration`] as a number of milliseconds (fractions allowed).
pub(crate) mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1e3)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Duration::try_from_secs_f64(ms / 1e3).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!("1500000".parse(), Ok(Rate::from_bps(1_500_000)));
        assert_eq!("512k".parse(), Ok(Rate::from_kbps(512)));
        assert_eq!("2.5M".parse(), Ok(Rate::from_kbps(2_500)));
        assert_eq!("1G".parse(), Ok(Rate::from_bps(1_000_000_000)));
        for bad in ["10x", "", "k", "-1M", "inf", "1e6", "2M/s", "1 2k"] {
            assert_eq!(
                bad.parse::<Rate>(),
                Err(ParseError::Rate(bad.into())),
                "{bad}"
            );
        }
        let message = "10x".parse::<Rate>().unwrap_err().to_string();
        assert_eq!(
            message,
            "'10x' is not a rate; use e.g. 512k, 2M or 1500000 (bit/s)"
        );
        assert_eq!(Rate::from_kbps(2_500).to_string(), "2500k");
        assert_eq!(Rate::from_bps(2_000_000).to_string(), "2M");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["50", "ms", "-5ms", "5 min", "1e3ms"] {
            assert_eq!(
                parse_duration(bad),
                Err(ParseError::Duration(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn probabilities() {
        assert_eq!(parse_probability("5%"), Ok(0.05));
        assert_eq!(parse_probability("0.05"), Ok(0.05));
        assert_eq!(parse_probability("100%"), Ok(1.0));
        for bad in ["101%", "2", "-1%", "five"] {
            assert_eq!(
                parse_probability(bad),
                Err(ParseError::Probability(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("1500B"), Some(1500));
        assert_eq!(parse_bytes("64kB"), Some(64_000));
        assert_eq!(parse_bytes("1MB"), Some(1_000_000));
        assert_eq!(parse_bytes("64k"), None);
        assert_eq!(parse_bytes("B"), None);
    }
}
