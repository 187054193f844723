//! How often a sign-in may be tried: by account *and* address, with a slower per-account
//! backoff, never a permanent lock. Only checks that failed count; refused attempts do not.

use chrono::{Duration, NaiveDateTime};

/// Failures counted over this window.
pub const WINDOW_MINUTES: i64 = 15;
/// Failures one address may make for one account within the window.
pub const PER_ACCOUNT_AND_ADDRESS: i64 = 5;
/// Failures one address may make over all accounts within the window.
pub const PER_ADDRESS: i64 = 50;
/// Failures an account takes within the window, from all addresses, before it slows down.
pub const PER_ACCOUNT_BEFORE_BACKOFF: i64 = 10;
/// The longest an account's backoff makes anyone wait between checks.
pub const MAX_BACKOFF_SECONDS: i64 = 300;

/// Recent failures around one attempt.
#[derive(Clone, Copy, Debug, Default)]
pub struct Failures {
    /// Of this account (login name) from this address.
    pub account_and_address: i64,
    /// From this address, over all accounts.
    pub address: i64,
    /// Of this account, from all addresses.
    pub account: i64,
    /// The account's latest failure, from any address.
    pub account_latest: Option<NaiveDateTime>,
    /// The oldest failure still counted against this account from this address.
    pub account_and_address_oldest: Option<NaiveDateTime>,
    /// The oldest failure still counted against this address.
    pub address_oldest: Option<NaiveDateTime>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The password may be checked (a failure is reserved for it first).
    Check,
    /// Not now: try again after this long.
    Wait(Duration),
}

pub fn window() -> Duration {
    Duration::minutes(WINDOW_MINUTES)
}

/// Whether an attempt may be checked now. An address that has not failed for this account
/// is let through the account's backoff, so a person is not kept out by someone else's
/// guesses; one that has waits longer as the account's failures grow.
pub fn decide(failures: &Failures, now: NaiveDateTime) -> Decision {
    let until_window_passes = |oldest: Option<NaiveDateTime>| {
        Decision::Wait(oldest.map_or(window(), |o| (o + window() - now).max(Duration::seconds(1))))
    };
    if failures.account_and_address >= PER_ACCOUNT_AND_ADDRESS {
        return until_window_passes(failures.account_and_address_oldest);
    }
    if failures.address >= PER_ADDRESS {
        return until_window_passes(failures.address_oldest);
    }
    if failures.account >= PER_ACCOUNT_BEFORE_BACKOFF && failures.account_and_address > 0 {
        let doublings = ((failures.account - PER_ACCOUNT_BEFORE_BACKOFF) / PER_ACCOUNT_BEFORE_BACKOFF).min(16) as u32;
        let gap = Duration::seconds((1i64 << doublings).min(MAX_BACKOFF_SECONDS));
        if let Some(latest) = failures.account_latest {
            let since = now - latest;
            if since < gap {
                return Decision::Wait(gap - since);
            }
        }
    }
    Decision::Check
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap().naive_utc()
    }

    #[test]
    fn an_address_gets_five_checks_per_account() {
        let mut f = Failures { account_and_address: 4, account: 4, ..Default::default() };
        assert_eq!(decide(&f, at(0)), Decision::Check);
        f.account_and_address = 5;
        f.account_and_address_oldest = Some(at(-60));
        assert_eq!(decide(&f, at(0)), Decision::Wait(Duration::minutes(14)));
    }

    #[test]
    fn a_busy_account_slows_down_for_addresses_that_failed_but_not_for_new_ones() {
        let f = Failures { account_and_address: 1, account: 30, account_latest: Some(at(0)), ..Default::default() };
        assert_eq!(decide(&f, at(1)), Decision::Wait(Duration::seconds(3)), "30 failures: 4 s between checks");
        assert_eq!(decide(&f, at(4)), Decision::Check);
        let fresh = Failures { account_and_address: 0, ..f };
        assert_eq!(decide(&fresh, at(1)), Decision::Check, "an address that never failed gets through");
    }

    #[test]
    fn the_backoff_is_bounded() {
        let f = Failures { account_and_address: 1, account: 10_000, account_latest: Some(at(0)), ..Default::default() };
        assert_eq!(decide(&f, at(0)), Decision::Wait(Duration::seconds(MAX_BACKOFF_SECONDS)));
    }
}
