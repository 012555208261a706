//! Where the server's `now` comes from: the system clock, or a clock the
//! embedding application (or a test) moves by hand.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sync_core::Timestamp;

/// A source of `now` for the engine and for token checks.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The system's UTC clock.
    pub fn system() -> Self {
        Clock(Arc::new(system_now))
    }

    /// A clock that reads `f`.
    pub fn from_fn(f: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl Default for Clock {
    /// [`Clock::system`].
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock(now {})", self.now())
    }
}

/// The system clock as a [`Timestamp`] (a clock before 1970 reads as the
/// epoch).
pub fn system_now() -> Timestamp {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    Timestamp::from_micros(micros)
}

/// A clock moved by hand, shared by clones.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock reading `now`.
    pub fn new(now: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(now.as_micros())))
    }

    /// Sets the time.
    pub fn set(&self, now: Timestamp) {
        self.0.store(now.as_micros(), Ordering::SeqCst);
    }

    /// Moves the time forward by `micros`.
    pub fn advance_micros(&self, micros: i64) {
        self.0.fetch_add(micros, Ordering::SeqCst);
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(Ordering::SeqCst))
    }

    /// A [`Clock`] reading this one.
    pub fn clock(&self) -> Clock {
        let me = self.clone();
        Clock::from_fn(move || me.now())
    }
}
