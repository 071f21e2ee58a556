//! Reproducible identities for local chains, simulators and tests — never for a
//! real market. Anyone can derive them, so a local deployment (`seqctl chain
//! deploy`) and a snapshotter simulator agree on who owns which slot without
//! sharing files:
//!
//! - the key of simulated slot `n` is `keccak256("powerloom-sequencer/sim-snapshotter/" ‖ decimal(n))`;
//! - the local data market address is the last 20 bytes of
//!   `keccak256("powerloom-sequencer/local-data-market")`.

use alloy_primitives::{keccak256, Address};
use k256::ecdsa::SigningKey;

/// The secret scalar of simulated slot `slot`.
pub fn sim_snapshotter_secret(slot: u64) -> [u8; 32] {
    keccak256(format!("powerloom-sequencer/sim-snapshotter/{slot}")).0
}

/// The signing key of simulated slot `slot`; `None` in the (never observed) case
/// that the hash is not a valid secp256k1 scalar.
pub fn sim_snapshotter_key(slot: u64) -> Option<SigningKey> {
    SigningKey::from_slice(&sim_snapshotter_secret(slot)).ok()
}

/// The default data market address of local deployments.
pub fn local_market_address() -> Address {
    Address::from_slice(&keccak256("powerloom-sequencer/local-data-market")[12..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eip712::address_of;

    #[test]
    fn keys_are_distinct_and_reproducible() {
        let a = sim_snapshotter_key(1).map(|k| address_of(&k));
        let b = sim_snapshotter_key(2).map(|k| address_of(&k));
        assert!(a.is_some() && b.is_some());
        assert_ne!(a, b);
        assert_eq!(a, sim_snapshotter_key(1).map(|k| address_of(&k)));
        assert_ne!(local_market_address(), Address::ZERO);
    }
}
