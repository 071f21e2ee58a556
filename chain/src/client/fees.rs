//! EIP-1559 fees of a write and of its replacements, under the ceiling.

use crate::config::MIN_FEE_BUMP_PERCENT;

/// Max fee and priority fee per gas, in wei.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fees {
    pub(crate) max_fee: u128,
    pub(crate) priority: u128,
}

/// The fees of a first send: the node's estimate, capped at `ceiling` (priority ≤ max fee).
pub(crate) fn initial(estimate: Fees, ceiling: u128) -> Fees {
    let max_fee = estimate.max_fee.min(ceiling);
    Fees {
        max_fee,
        priority: estimate.priority.min(max_fee),
    }
}

/// `v` raised by `percent` %, rounded up, by at least 1 wei.
fn raised(v: u128, percent: u64) -> u128 {
    let by = v.saturating_mul(u128::from(percent)).div_ceil(100).max(1);
    v.saturating_add(by)
}

/// The fees of a replacement of a transaction sent with `prev`: both fees raised by
/// `bump_percent` % (or to the node's `fresh` estimate where that is higher), capped at
/// `ceiling`. `None` when the cap leaves less than the 10 % raise of both fees nodes require:
/// at the ceiling the stuck transaction is not replaced (and nothing above it is ever signed).
pub(crate) fn bumped(prev: Fees, fresh: Fees, bump_percent: u64, ceiling: u128) -> Option<Fees> {
    let priority_wanted = raised(prev.priority, bump_percent).max(fresh.priority);
    let max_fee = raised(prev.max_fee, bump_percent)
        .max(fresh.max_fee)
        .max(priority_wanted)
        .min(ceiling);
    let priority = priority_wanted.min(max_fee);
    let enough = max_fee >= raised(prev.max_fee, MIN_FEE_BUMP_PERCENT)
        && priority >= raised(prev.priority, MIN_FEE_BUMP_PERCENT);
    enough.then_some(Fees { max_fee, priority })
}

/// The fees of a re-send of a transaction the node refused (`max fee per gas less than block
/// base fee`) while nothing of ours is pooled for the nonce: no replacement rule applies, so
/// only the max fee rises (by `bump_percent` %, or to `fresh` if higher); the priority fee stays
/// the node's fresh estimate, so climbing to a high base fee does not also inflate the tip.
/// `None` at the ceiling.
pub(crate) fn repriced(prev: Fees, fresh: Fees, bump_percent: u64, ceiling: u128) -> Option<Fees> {
    let max_fee = raised(prev.max_fee, bump_percent)
        .max(fresh.max_fee)
        .min(ceiling);
    (max_fee > prev.max_fee).then_some(Fees {
        max_fee,
        priority: fresh.priority.min(max_fee),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const GWEI: u128 = 1_000_000_000;

    fn fees(max_fee: u128, priority: u128) -> Fees {
        Fees { max_fee, priority }
    }

    #[test]
    fn initial_is_capped() {
        assert_eq!(
            initial(fees(50 * GWEI, 2 * GWEI), 200 * GWEI),
            fees(50 * GWEI, 2 * GWEI)
        );
        assert_eq!(
            initial(fees(500 * GWEI, 300 * GWEI), 200 * GWEI),
            fees(200 * GWEI, 200 * GWEI)
        );
    }

    #[test]
    fn bump_raises_both_fees_and_takes_a_higher_estimate() {
        let prev = fees(2 * GWEI + 1, 1);
        let next = bumped(prev, prev, 15, 200 * GWEI).expect("room under the ceiling");
        assert!(next.max_fee >= prev.max_fee * 115 / 100, "{next:?}");
        assert_eq!(next.priority, 2, "1 wei raised by 15 % rounds up to 2");
        let fresh = fees(30 * GWEI, 3 * GWEI);
        assert_eq!(bumped(prev, fresh, 15, 200 * GWEI), Some(fresh));
    }

    #[test]
    fn at_the_ceiling_there_is_no_replacement() {
        let ceiling = 10 * GWEI;
        // 15 % does not fit, but 10 % does: go exactly to the ceiling.
        let prev = fees(9 * GWEI, GWEI);
        let next = bumped(prev, prev, 15, ceiling).expect("10 % still fits");
        assert_eq!(next.max_fee, ceiling);
        // Not even 10 % fits: refuse.
        assert_eq!(
            bumped(fees(ceiling, GWEI), fees(ceiling, GWEI), 15, ceiling),
            None
        );
        assert_eq!(
            bumped(fees(ceiling - 1, GWEI), fees(ceiling, GWEI), 15, ceiling),
            None
        );
        // A priority fee already at the ceiling cannot rise either.
        assert_eq!(
            bumped(
                fees(ceiling / 2, ceiling / 2),
                fees(0, 0),
                15,
                ceiling / 2 + 1
            ),
            None
        );
    }

    #[test]
    fn a_refused_send_raises_the_max_fee_only() {
        let prev = fees(2 * GWEI, GWEI);
        let fresh = fees(2 * GWEI, GWEI);
        let next = repriced(prev, fresh, 15, 100 * GWEI).expect("room");
        assert_eq!(next, fees(23 * GWEI / 10, GWEI), "tip unchanged");
        assert_eq!(
            repriced(fees(100 * GWEI, GWEI), fresh, 15, 100 * GWEI),
            None
        );
        assert_eq!(
            repriced(fees(99 * GWEI, GWEI), fresh, 15, 100 * GWEI).map(|f| f.max_fee),
            Some(100 * GWEI)
        );
    }

    proptest! {
        #[test]
        fn a_replacement_is_never_above_the_ceiling_and_always_enough(
            max_fee in 1u128..1_000_000 * GWEI,
            prio_part in 0u128..=100,
            fresh_max in 0u128..1_000_000 * GWEI,
            bump in 10u64..100,
            ceiling in 1u128..1_000_000 * GWEI,
        ) {
            let priority = max_fee * prio_part / 100;
            let prev = fees(max_fee, priority);
            let fresh = fees(fresh_max, fresh_max / 10);
            if let Some(next) = bumped(prev, fresh, bump, ceiling) {
                prop_assert!(next.max_fee <= ceiling);
                prop_assert!(next.priority <= next.max_fee);
                prop_assert!(next.max_fee * 100 >= prev.max_fee * 110);
                prop_assert!(next.priority * 100 >= prev.priority * 110);
            } else {
                // Refused only when a 10 % raise of the max fee or the priority fee does not fit.
                prop_assert!(raised(prev.max_fee, 10) > ceiling || raised(prev.priority, 10) > ceiling);
            }
        }
    }
}
