//! The link itself: [`Link`], a sans-I/O state machine with time passed in.

use std::{collections::VecDeque, time::Duration};

use super::{
    ConfigError, Jitter, LinkConfig, LinkStats, QueueLimit,
    capacity::Service,
    loss::Loss,
    random::{Random, Stream},
};

/// One direction of an emulated line, carrying packets of payload type `P` (an id in tests, a
/// datagram and its address in the UDP shell).
///
/// Time is a [`Duration`] since the link started; calls must not go back in time (an earlier
/// `now` is taken as the latest one seen). Everything about a packet's fate is decided when it is
/// pushed, from the configuration, the seed and the packets before it, so the same seed and the
/// same pushes give the same departures however often [`Link::poll`] is called.
///
/// ```
/// use std::time::Duration;
/// use loadtest::link::{Capacity, Link, LinkConfig, Push, Rate};
///
/// let config = LinkConfig {
///     capacity: Capacity::Rate(Rate::from_kbps(1000)),
///     delay: Duration::from_millis(20),
///     ..LinkConfig::default()
/// };
/// let mut link = Link::new(config).unwrap();
/// assert_eq!(link.push(Duration::ZERO, 1250, "hello"), Push::Queued);
/// // 1250 bytes take 10 ms at 1 Mbit/s, then 20 ms of propagation.
/// assert_eq!(link.poll_timeout(), Some(Duration::from_millis(30)));
/// let departure = link.poll(Duration::from_millis(30)).unwrap();
/// assert_eq!((departure.payload, departure.queue_delay), ("hello", Duration::ZERO));
/// ```
pub struct Link<P> {
    config: LinkConfig,
    service: Service,
    loss: Loss,
    jitter: Random,
    /// (departure from the bottleneck, bytes) of the packets still in it, in order.
    backlog: VecDeque<(Duration, usize)>,
    backlog_bytes: u64,
    in_flight: VecDeque<Departure<P>>,
    last_delivery: Duration,
    now: Duration,
    stats: LinkStats,
}

/// What became of a pushed packet.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// It is on its way; [`Link::poll`] returns it once it is delivered.
    Queued,
    /// It was dropped.
    Dropped(DropReason),
}

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Random or burst loss on entry.
    Loss,
    /// The bottleneck queue was full (or the capacity had dropped to 0 for good).
    QueueOverflow,
}

/// A packet delivered by the link, with its history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Departure<P> {
    /// What was pushed.
    pub payload: P,
    /// Its length in bytes.
    pub len: usize,
    /// When it was pushed.
    pub arrival: Duration,
    /// When it left the bottleneck.
    pub departed: Duration,
    /// When it is delivered (left the link).
    pub delivered: Duration,
    /// Time spent waiting behind other packets (or, on a trace, for a delivery opportunity)
    /// before its own transmission began; excludes its own transmission, propagation delay and
    /// jitter.
    pub queue_delay: Duration,
    /// Total time through the link: `delivered − arrival`.
    pub delay: Duration,
}

impl<P> Link<P> {
    /// A link, idle at time 0.
    pub fn new(config: LinkConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Link {
            service: Service::new(&config.capacity),
            loss: Loss::new(config.loss, config.burst_loss, config.seed),
            jitter: Random::new(config.seed, Stream::Jitter),
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            in_flight: VecDeque::new(),
            last_delivery: Duration::ZERO,
            now: Duration::ZERO,
            stats: LinkStats::new(config.stats_interval),
            config,
        })
    }

    /// The configuration the link was made with.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Offers a packet of `len` bytes at `now`.
    pub fn push(&mut self, now: Duration, len: usize, payload: P) -> Push {
        let now = now.max(self.now);
        self.now = now;
        self.stats.record_arrival(now, len, &self.service);
        if self.loss.lose() {
            self.stats.record_loss(now, len, &self.service);
            return Push::Dropped(DropReason::Loss);
        }
        self.drain_backlog(now);
        let served = if self.fits(now, len) {
            self.service.serve(now, len)
        } else {
            None
        };
        let Some((start, departed)) = served else {
            self.stats.record_overflow(now, len, &self.service);
            return Push::Dropped(DropReason::QueueOverflow);
        };
        self.backlog.push_back((departed, len));
        self.backlog_bytes += len as u64;

        // Propagation and jitter; a packet never overtakes the one before it.
        let delivered = departed
            .saturating_add(self.config.delay)
            .saturating_add(self.jitter());
        let delivered = delivered.max(self.last_delivery);
        self.last_delivery = delivered;
        self.in_flight.push_back(Departure {
            payload,
            len,
            arrival: now,
            departed,
            delivered,
            queue_delay: start.saturating_sub(now),
            delay: delivered.saturating_sub(now),
        });
        Push::Queued
    }

    /// When the next packet is delivered; `None` when none is in flight.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.in_flight.front().map(|d| d.delivered)
    }

    /// The next packet delivered at or before `now`, if any. Call until it returns `None`.
    pub fn poll(&mut self, now: Duration) -> Option<Departure<P>> {
        if self.in_flight.front()?.delivered > now {
            return None;
        }
        let departure = self.in_flight.pop_front()?;
        self.stats.record_delivery(
            departure.departed,
            departure.len,
            departure.queue_delay,
            &self.service,
        );
        Some(departure)
    }

    /// The bytes in the bottleneck (queued or in transmission) at `now`.
    pub fn queued_bytes(&self, now: Duration) -> u64 {
        self.backlog
            .iter()
            .filter(|(departed, _)| *departed > now)
            .map(|&(_, len)| len as u64)
            .sum()
    }

    /// The statistics so far.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Stops the link at `now`: the statistics, with the time series extended to `now`. Packets
    /// still in flight are discarded.
    pub fn finish(mut self, now: Duration) -> LinkStats {
        self.stats.extend_to(now.max(self.now), &self.service);
        self.stats
    }

    fn drain_backlog(&mut self, now: Duration) {
        while let Some(&(departed, len)) = self.backlog.front()
            && departed <= now
        {
            self.backlog.pop_front();
            self.backlog_bytes -= len as u64;
        }
    }

    fn fits(&self, now: Duration, len: usize) -> bool {
        if self.backlog_bytes == 0 {
            return true;
        }
        let limit = match self.config.queue {
            QueueLimit::Bytes(bytes) => bytes,
            QueueLimit::Time(time) => match self.service.drain_bytes(now, time) {
                Some(bytes) => bytes,
                None => return true,
            },
        };
        self.backlog_bytes + len as u64 <= limit
    }

    fn jitter(&mut self) -> Duration {
        let (scale, factor) = match self.config.jitter {
            None => return Duration::ZERO,
            Some(Jitter::Uniform { max }) => (max, self.jitter.unit()),
            Some(Jitter::Normal { std_dev }) => (std_dev, self.jitter.normal().abs()),
        };
        Duration::try_from_secs_f64(scale.as_secs_f64() * factor).unwrap_or(Duration::MAX)
    }
}
