//! Snapshotter identity (docs/protocol.md §3): the EIP-712 digest of a submission's
//! request, signature parsing, and signer recovery.
//!
//! Recovery has two implementations: [`recover_k256`] (pure Rust, RustCrypto) and
//! [`recover_libsecp256k1`] (bitcoin-core's C library). `benches/verify.rs` measures
//! both; the hot path [`Verifier::recover`] uses the faster one, libsecp256k1, and
//! the tests check that both agree on every vector.

use std::sync::LazyLock;

use alloy_primitives::{keccak256, Address, B256, U256};
use alloy_sol_types::{sol, Eip712Domain, SolStruct};

use crate::submission::{Request, SnapshotSubmission};

sol! {
    /// The signed request, field for field as on chain.
    #[derive(Debug)]
    struct EIPRequest {
        uint256 slotId;
        uint256 deadline;
        string snapshotCid;
        uint256 epochId;
        string projectId;
    }
}

/// Domain name the protocol state contract signs with.
pub const DOMAIN_NAME: &str = "PowerloomProtocolContract";
/// Domain version.
pub const DOMAIN_VERSION: &str = "0.1";

/// secp256k1 group order n.
const SECP256K1_N: U256 = U256::from_be_bytes([
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
]);

/// The signing domain: protocol chain id and the **ProtocolState** contract address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Domain {
    pub chain_id: u64,
    pub verifying_contract: Address,
}

impl Domain {
    pub fn eip712(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(DOMAIN_NAME.into()),
            Some(DOMAIN_VERSION.into()),
            Some(U256::from(self.chain_id)),
            Some(self.verifying_contract),
            None,
        )
    }

    pub fn separator(&self) -> B256 {
        self.eip712().separator()
    }
}

/// Why a signature is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature is not hex")]
    BadHex,
    #[error("signature is {0} bytes, expected 65")]
    BadLength(usize),
    #[error("signature v is {0}, expected 27 or 28")]
    BadV(u8),
    #[error("signature s is in the upper half of the curve order")]
    HighS,
    #[error("signature r or s is zero or not below the curve order")]
    OutOfRange,
    #[error("no public key recovers from this signature")]
    Unrecoverable,
}

impl SignatureError {
    /// Stable label for metrics and rejection records.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::BadHex => "bad_hex",
            SignatureError::BadLength(_) => "bad_length",
            SignatureError::BadV(_) => "bad_v",
            SignatureError::HighS => "high_s",
            SignatureError::OutOfRange => "signature_out_of_range",
            SignatureError::Unrecoverable => "unrecoverable_signature",
        }
    }
}

/// A parsed, range-checked 65-byte `r ‖ s ‖ v` signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawSignature {
    /// `r ‖ s`.
    pub rs: [u8; 64],
    /// Recovery id, `v − 27` (0 or 1).
    pub recovery_id: u8,
}

impl RawSignature {
    /// Parses lowercase or uppercase hex, with or without `0x`; rejects malformed
    /// length, `v` outside {27, 28}, zero or out-of-range `r`/`s`, and high `s`.
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let hex_part = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        if !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) || hex_part.len() % 2 == 1 {
            return Err(SignatureError::BadHex);
        }
        if hex_part.len() != 130 {
            return Err(SignatureError::BadLength(hex_part.len() / 2));
        }
        let mut bytes = [0u8; 65];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| SignatureError::BadHex)?;
        let v = bytes[64];
        if v != 27 && v != 28 {
            return Err(SignatureError::BadV(v));
        }
        let r = U256::from_be_slice(&bytes[..32]);
        let s = U256::from_be_slice(&bytes[32..64]);
        if r.is_zero() || s.is_zero() || r >= SECP256K1_N || s >= SECP256K1_N {
            return Err(SignatureError::OutOfRange);
        }
        if s > SECP256K1_N >> 1 {
            return Err(SignatureError::HighS);
        }
        let mut rs = [0u8; 64];
        rs.copy_from_slice(&bytes[..64]);
        Ok(RawSignature {
            rs,
            recovery_id: v - 27,
        })
    }

    /// `r ‖ s ‖ v` as lowercase hex without `0x` (the wire form).
    pub fn to_hex(&self) -> String {
        let mut bytes = [0u8; 65];
        bytes[..64].copy_from_slice(&self.rs);
        bytes[64] = self.recovery_id + 27;
        hex::encode(bytes)
    }
}

impl From<&Request> for EIPRequest {
    fn from(r: &Request) -> Self {
        EIPRequest {
            slotId: U256::from(r.slot_id),
            deadline: U256::from(r.deadline),
            snapshotCid: r.snapshot_cid.clone(),
            epochId: U256::from(r.epoch_id),
            projectId: r.project_id.clone(),
        }
    }
}

/// `hashStruct(request)`.
pub fn struct_hash(request: &Request) -> B256 {
    EIPRequest::from(request).eip712_hash_struct()
}

/// Digest from a precomputed domain separator: `keccak256(0x1901 ‖ separator ‖ hashStruct)`.
pub fn digest_with_separator(separator: &B256, request: &Request) -> B256 {
    let mut buf = [0u8; 66];
    buf[0] = 0x19;
    buf[1] = 0x01;
    buf[2..34].copy_from_slice(separator.as_slice());
    buf[34..].copy_from_slice(struct_hash(request).as_slice());
    keccak256(buf)
}

/// The EIP-712 signing digest of `request` under `domain`.
pub fn signing_digest(domain: &Domain, request: &Request) -> B256 {
    EIPRequest::from(request).eip712_signing_hash(&domain.eip712())
}

/// Recovers the signer with RustCrypto's `k256`.
pub fn recover_k256(digest: &B256, sig: &RawSignature) -> Result<Address, SignatureError> {
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
    let signature = Signature::from_slice(&sig.rs).map_err(|_| SignatureError::OutOfRange)?;
    let recid =
        RecoveryId::from_byte(sig.recovery_id).ok_or(SignatureError::BadV(sig.recovery_id + 27))?;
    let key = VerifyingKey::recover_from_prehash(digest.as_slice(), &signature, recid)
        .map_err(|_| SignatureError::Unrecoverable)?;
    Ok(Address::from_public_key(&key))
}

static SECP: LazyLock<secp256k1::Secp256k1<secp256k1::VerifyOnly>> =
    LazyLock::new(secp256k1::Secp256k1::verification_only);

/// Recovers the signer with libsecp256k1.
pub fn recover_libsecp256k1(digest: &B256, sig: &RawSignature) -> Result<Address, SignatureError> {
    use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
    let recid = RecoveryId::try_from(i32::from(sig.recovery_id))
        .map_err(|_| SignatureError::BadV(sig.recovery_id + 27))?;
    let signature = RecoverableSignature::from_compact(&sig.rs, recid)
        .map_err(|_| SignatureError::OutOfRange)?;
    let msg = secp256k1::Message::from_digest(digest.0);
    let key = SECP
        .recover_ecdsa(&msg, &signature)
        .map_err(|_| SignatureError::Unrecoverable)?;
    let uncompressed = key.serialize_uncompressed();
    Ok(Address::from_raw_public_key(&uncompressed[1..]))
}

/// A signer recovered from a well-formed signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovered {
    pub digest: B256,
    pub signer: Address,
}

/// Verifies submissions for one domain; holds the domain separator so each
/// submission costs one struct hash, one keccak and one recovery.
#[derive(Clone, Debug)]
pub struct Verifier {
    domain: Domain,
    separator: B256,
}

impl Verifier {
    pub fn new(domain: Domain) -> Self {
        Verifier {
            domain,
            separator: domain.separator(),
        }
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    pub fn digest(&self, request: &Request) -> B256 {
        digest_with_separator(&self.separator, request)
    }

    /// Parses the submission's signature and recovers its signer.
    pub fn recover(&self, submission: &SnapshotSubmission) -> Result<Recovered, SignatureError> {
        let sig = RawSignature::parse(&submission.signature)?;
        let digest = self.digest(&submission.request);
        let signer = recover_libsecp256k1(&digest, &sig)?;
        Ok(Recovered { digest, signer })
    }
}

/// Signs `request` (for simulators and tests): returns the wire-form hex signature
/// with low `s` and `v` ∈ {27, 28}.
pub fn sign_request(
    domain: &Domain,
    request: &Request,
    key: &k256::ecdsa::SigningKey,
) -> Result<String, SignatureError> {
    let digest = signing_digest(domain, request);
    let (sig, recid) = key
        .sign_prehash_recoverable(digest.as_slice())
        .map_err(|_| SignatureError::Unrecoverable)?;
    // k256 already returns low-s; normalize defensively and flip the parity if so.
    let (sig, recid) = match sig.normalize_s() {
        Some(n) => (
            n,
            k256::ecdsa::RecoveryId::from_byte(recid.to_byte() ^ 1).unwrap_or(recid),
        ),
        None => (sig, recid),
    };
    let mut rs = [0u8; 64];
    rs.copy_from_slice(&sig.to_bytes());
    Ok(RawSignature {
        rs,
        recovery_id: recid.to_byte(),
    }
    .to_hex())
}

/// The address of a signing key.
pub fn address_of(key: &k256::ecdsa::SigningKey) -> Address {
    Address::from_public_key(key.verifying_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Domain {
        Domain {
            chain_id: 11169,
            verifying_contract: Address::repeat_byte(0x42),
        }
    }

    fn request() -> Request {
        Request {
            slot_id: 4036,
            deadline: 6624038,
            snapshot_cid: "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy".into(),
            epoch_id: 11267,
            project_id: "aggregate_pairContract_24h_trade_volume:0x8ef79d6c328c25da633559c20c75f638a4863462:UNISWAPV2".into(),
        }
    }

    fn key(n: u8) -> k256::ecdsa::SigningKey {
        k256::ecdsa::SigningKey::from_slice(&[n; 32]).expect("valid scalar")
    }

    #[test]
    fn typehash_matches_spec() {
        assert_eq!(
            EIPRequest::eip712_type_hash(&EIPRequest::from(&request())),
            "0x12a489cc5c1a68e5513e624e343a209abc2b5628112a27567f67cbaa5e919db4"
                .parse::<B256>()
                .expect("hex")
        );
    }

    #[test]
    fn precomputed_separator_gives_the_same_digest() {
        let v = Verifier::new(domain());
        assert_eq!(v.digest(&request()), signing_digest(&domain(), &request()));
    }

    #[test]
    fn sign_then_recover_with_both_backends() {
        let k = key(7);
        let sig = sign_request(&domain(), &request(), &k).expect("signs");
        let raw = RawSignature::parse(&sig).expect("parses");
        let digest = signing_digest(&domain(), &request());
        assert_eq!(recover_k256(&digest, &raw), Ok(address_of(&k)));
        assert_eq!(recover_libsecp256k1(&digest, &raw), Ok(address_of(&k)));
        let sub = SnapshotSubmission {
            request: request(),
            signature: format!("0x{sig}"),
            ..Default::default()
        };
        assert_eq!(
            Verifier::new(domain()).recover(&sub).map(|r| r.signer),
            Ok(address_of(&k))
        );
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let k = key(9);
        let good = sign_request(&domain(), &request(), &k).expect("signs");
        assert_eq!(RawSignature::parse("zz"), Err(SignatureError::BadHex));
        assert_eq!(
            RawSignature::parse(&good[..128]),
            Err(SignatureError::BadLength(64))
        );
        let mut bad_v = good.clone();
        bad_v.replace_range(128.., "1d");
        assert_eq!(RawSignature::parse(&bad_v), Err(SignatureError::BadV(29)));
        // High s: s' = n − s with the parity flipped recovers the same key in
        // naive code; it must be refused.
        let raw = RawSignature::parse(&good).expect("parses");
        let s = U256::from_be_slice(&raw.rs[32..]);
        let high = SECP256K1_N - s;
        let mut rs = raw.rs;
        rs[32..].copy_from_slice(&high.to_be_bytes::<32>());
        let flipped = RawSignature {
            rs,
            recovery_id: raw.recovery_id ^ 1,
        };
        assert_eq!(
            RawSignature::parse(&flipped.to_hex()),
            Err(SignatureError::HighS)
        );
        let zero = format!("{}1b", "00".repeat(64));
        assert_eq!(RawSignature::parse(&zero), Err(SignatureError::OutOfRange));
    }

    #[test]
    fn another_domain_recovers_another_signer() {
        let k = key(3);
        let sig = sign_request(&domain(), &request(), &k).expect("signs");
        let other = Domain {
            chain_id: 1,
            ..domain()
        };
        let sub = SnapshotSubmission {
            request: request(),
            signature: sig,
            ..Default::default()
        };
        let got = Verifier::new(other).recover(&sub).map(|r| r.signer);
        assert_ne!(got, Ok(address_of(&k)));
    }
}
