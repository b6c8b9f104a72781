//! The proposal clock: wall time for record timestamps and a hybrid logical clock for version
//! stamps. Only the proposing node reads it; apply never does.

use crate::model::{Stamp, UnixNanos};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The time and stamp fixed for one write.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    pub now: UnixNanos,
    pub stamp: Stamp,
}

/// A hybrid logical clock for one store.
pub struct Clock {
    origin: u64,
    last: Mutex<u64>,
}

/// The wall clock in nanoseconds since the epoch.
pub fn wall_nanos() -> UnixNanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Clock {
    /// A clock stamping writes as coming from store `origin`.
    pub fn new(origin: u64) -> Self {
        Clock {
            origin,
            last: Mutex::new(0),
        }
    }

    /// The time and a stamp greater than every stamp this clock gave before.
    pub fn tick(&self) -> Tick {
        let now = wall_nanos();
        let physical = ((now / 1_000_000) as u64) << 16;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let hlc = physical.max(*last + 1);
        *last = hlc;
        Tick {
            now,
            stamp: Stamp {
                hlc,
                origin: self.origin,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_increase_even_within_one_millisecond() {
        let c = Clock::new(7);
        let a = c.tick();
        let b = c.tick();
        assert!(b.stamp.hlc > a.stamp.hlc);
        assert_eq!(b.stamp.origin, 7);
    }
}
