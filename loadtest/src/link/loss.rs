//! Packet loss on entry to the link: independent random loss and Gilbert–Elliott burst loss.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{
    ConfigError, ParseError,
    random::{Random, Stream},
    units::parse_probability,
};

/// The Gilbert–Elliott two-state burst loss model. Each packet first meets the loss of the
/// current state (`k` in the good state, `1 − h` in the bad one), then the chain moves: good → bad
/// with probability `p`, bad → good with probability `r`. The chain starts in the good state.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GilbertElliott {
    /// P(good → bad), per packet.
    pub p: f64,
    /// P(bad → good), per packet.
    pub r: f64,
    /// Probability that a packet gets through in the bad state.
    pub h: f64,
    /// Probability that a packet is lost in the good state.
    pub k: f64,
}

impl GilbertElliott {
    /// The model with the given transition and loss parameters, each a probability.
    pub fn new(p: f64, r: f64, h: f64, k: f64) -> Result<Self, ConfigError> {
        let model = GilbertElliott { p, r, h, k };
        model.validate()?;
        Ok(model)
    }

    /// The simple Gilbert model (every packet lost in the bad state, none in the good one) with
    /// the given mean loss rate and mean burst length in packets: `r = 1/burst` and
    /// `p = loss·r/(1 − loss)`.
    pub fn from_mean(loss: f64, burst: f64) -> Result<Self, ConfigError> {
        check_probability("the mean loss", loss)?;
        if burst.is_nan() || burst < 1.0 {
            return Err(ConfigError::BurstLength(burst));
        }
        if loss >= 1.0 {
            return Err(ConfigError::BurstTooShort { loss, burst });
        }
        let r = 1.0 / burst;
        let p = loss * r / (1.0 - loss);
        if p > 1.0 {
            return Err(ConfigError::BurstTooShort { loss, burst });
        }
        Self::new(p, r, 0.0, 0.0)
    }

    /// The long-run fraction of packets lost.
    pub fn mean_loss(&self) -> f64 {
        if self.p + self.r == 0.0 {
            return self.k; // never leaves the good state it starts in
        }
        let bad = self.p / (self.p + self.r);
        bad * (1.0 - self.h) + (1.0 - bad) * self.k
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_probability("Gilbert–Elliott p", self.p)?;
        check_probability("Gilbert–Elliott r", self.r)?;
        check_probability("Gilbert–Elliott h", self.h)?;
        check_probability("Gilbert–Elliott k", self.k)
    }
}

/// `MEAN_LOSS:MEAN_BURST`, e.g. `1%:3`: see [`GilbertElliott::from_mean`].
impl FromStr for GilbertElliott {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::BurstLoss(s.to_owned());
        let (loss, burst) = s.split_once(':').ok_or_else(err)?;
        let loss = parse_probability(loss).map_err(|_| err())?;
        let burst: f64 = burst.trim().parse().map_err(|_| err())?;
        Ok(Self::from_mean(loss, burst)?)
    }
}

pub(crate) fn check_probability(what: &'static str, value: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::Probability { what, value })
    }
}

/// The loss processes of one link, drawing from the link's loss stream.
pub(crate) struct Loss {
    random: f64,
    burst: Option<GilbertElliott>,
    bad: bool,
    rng: Random,
}

impl Loss {
    pub fn new(random: f64, burst: Option<GilbertElliott>, seed: u64) -> Self {
        Loss {
            random,
            burst,
            bad: false,
            rng: Random::new(seed, Stream::Loss),
        }
    }

    /// Whether the next packet is lost.
    pub fn lose(&mut self) -> bool {
        let random = self.rng.chance(self.random);
        let Some(ge) = self.burst else { return random };
        let lost = self.rng.chance(if self.bad { 1.0 - ge.h } else { ge.k });
        self.bad = if self.bad {
            !self.rng.chance(ge.r)
        } else {
            self.rng.chance(ge.p)
        };
        random || lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_mean_gives_the_simple_gilbert_model() {
        let ge = GilbertElliott::from_mean(0.01, 3.0).unwrap();
        assert!((ge.r - 1.0 / 3.0).abs() < 1e-12);
        assert!((ge.mean_loss() - 0.01).abs() < 1e-12);
        assert_eq!((ge.h, ge.k), (0.0, 0.0));
        assert_eq!("1%:3".parse(), Ok(ge));
    }

    #[test]
    fn impossible_burst_losses_are_refused() {
        assert_eq!(
            GilbertElliott::from_mean(0.1, 0.5),
            Err(ConfigError::BurstLength(0.5))
        );
        assert!(matches!(
            GilbertElliott::from_mean(0.6, 1.0),
            Err(ConfigError::BurstTooShort { .. })
        ));
        assert!(GilbertElliott::new(0.1, 1.5, 0.0, 0.0).is_err());
        for bad in ["1%", "1%:x", "x:3", "1%:0.5"] {
            assert!(bad.parse::<GilbertElliott>().is_err(), "{bad}");
        }
    }
}
