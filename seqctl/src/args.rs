//! Positional arguments of the commands that ask others: market, epoch and submission id,
//! checked strictly before anything is sent.

use anyhow::{bail, Context, Result};
use sequencer_chain::Address;
use sequencer_core::submission::parse_address;

pub(crate) fn market_arg(s: &str) -> Result<Address> {
    let hex = s.strip_prefix("0x").unwrap_or("");
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("market {s:?} is not an address (0x and 40 hex digits)");
    }
    parse_address(s).with_context(|| format!("market {s:?} is not an address"))
}

pub(crate) fn epoch_arg(s: &str) -> Result<u64> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => bail!("epoch {s:?} is not a positive epoch id"),
    }
}

pub(crate) fn id_arg(s: &str) -> Result<String> {
    let ok = s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if !ok {
        bail!("submission id {s:?} is not a UUID (8-4-4-4-12 hex digits)");
    }
    Ok(s.to_ascii_lowercase())
}
