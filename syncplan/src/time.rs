//! The system clock, read by the driver (the engine never reads a clock).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sync_core::Timestamp;

/// Now, from the system clock, as the engine's [`Timestamp`].
pub fn now() -> Timestamp {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(after) => Timestamp::from_micros(i64::try_from(after.as_micros()).unwrap_or(i64::MAX)),
        Err(before) => Timestamp::from_micros(
            i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
        ),
    }
}

/// How long from `now` until `deadline` (zero when it has passed).
pub fn until(deadline: Timestamp, now: Timestamp) -> Duration {
    let micros = deadline.as_micros().saturating_sub(now.as_micros());
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_is_zero_for_a_past_deadline() {
        let now = Timestamp::from_secs(100);
        assert_eq!(until(Timestamp::from_secs(99), now), Duration::ZERO);
        assert_eq!(
            until(Timestamp::from_millis(100_250), now),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn now_is_after_2025() {
        assert!(now() > Timestamp::from_secs(1_735_689_600));
    }
}
