//! Fault injection for tests: make a shard or the Scheduler panic at a
//! chosen step, to check that a failed runtime answers every request with
//! an error, reports itself failed and exits instead of lingering as a
//! zombie. Nothing in the API can set it; in-process tests pass it in
//! [`super::RuntimeOptions::fault`], and the whole-process test sets the
//! environment variable [`Fault::ENV`] of `wgserve serve`, which logs a
//! warning when it is set. Never set it in production.

use std::fmt;
use std::str::FromStr;

/// A failure to inject, counted in model steps (1 = the first step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The first shard panics inside its `at_step`-th step.
    ShardPanic { at_step: u64 },
    /// The Scheduler panics when its `at_step`-th step comes back.
    SchedulerPanic { at_step: u64 },
}

impl Fault {
    /// The test hook's environment variable, e.g. `shard-panic:3`.
    pub const ENV: &'static str = "WGSERVE_TEST_FAULT";

    /// The fault [`Fault::ENV`] asks for; `None` when it is unset, and an
    /// error naming the accepted forms when it is set but malformed.
    pub fn from_env() -> Result<Option<Fault>, String> {
        match std::env::var(Self::ENV) {
            Ok(v) => v.parse().map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The step of a shard fault (`None` for another kind).
    pub fn shard_panic_step(self) -> Option<u64> {
        match self {
            Fault::ShardPanic { at_step } => Some(at_step),
            _ => None,
        }
    }

    /// The step of a Scheduler fault (`None` for another kind).
    pub fn scheduler_panic_step(self) -> Option<u64> {
        match self {
            Fault::SchedulerPanic { at_step } => Some(at_step),
            _ => None,
        }
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{}={s:?}: expected shard-panic:<step> or scheduler-panic:<step>, step >= 1",
                Fault::ENV
            )
        };
        let (kind, step) = s.split_once(':').ok_or_else(bad)?;
        let at_step: u64 = step.trim().parse().map_err(|_| bad())?;
        if at_step == 0 {
            return Err(bad());
        }
        match kind.trim() {
            "shard-panic" => Ok(Fault::ShardPanic { at_step }),
            "scheduler-panic" => Ok(Fault::SchedulerPanic { at_step }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::ShardPanic { at_step } => write!(f, "shard-panic:{at_step}"),
            Fault::SchedulerPanic { at_step } => write!(f, "scheduler-panic:{at_step}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_faults_and_refuses_anything_else() {
        assert_eq!(
            "shard-panic:3".parse(),
            Ok(Fault::ShardPanic { at_step: 3 })
        );
        assert_eq!(
            "scheduler-panic:1".parse(),
            Ok(Fault::SchedulerPanic { at_step: 1 })
        );
        for bad in [
            "",
            "shard-panic",
            "shard-panic:0",
            "shard-panic:x",
            "oops:2",
        ] {
            let err = bad.parse::<Fault>().unwrap_err();
            assert!(err.contains("shard-panic:<step>"), "{bad}: {err}");
        }
        let f = Fault::ShardPanic { at_step: 7 };
        assert_eq!(f.to_string().parse(), Ok(f));
    }
}
