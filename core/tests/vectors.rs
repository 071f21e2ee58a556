//! Cross-implementation vectors: data made by independent libraries (Python
//! `eth-account`, JS `multiformats` and `ipfs-unixfs-importer`, a plain Python Merkle tree; see
//! `tests/vectors/README.md`) must come out of this crate bit for bit. Reads the
//! committed JSON only; needs neither Python nor Node.

use std::path::PathBuf;

use alloy_primitives::{Address, B256};
use sequencer_core::cids::{canonical_cid, document_cid, parse_cid, raw_cid};
use sequencer_core::eip712::{
    self, recover_k256, recover_libsecp256k1, Domain, RawSignature, Verifier,
};
use sequencer_core::finalize::{
    consensus, finalize_epoch, inspect_roots, Accepted, BatchDocument, FinalizeConfig,
};
use sequencer_core::merkle::{self, IncrementalTree, MerkleProof, ZERO_HASHES};
use sequencer_core::submission::{Request, SnapshotSubmission};
use serde_json::Value;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(rel: &str) -> Value {
    let path = workspace().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} is not a string in {v}"))
}

fn b256(v: &Value, k: &str) -> B256 {
    s(v, k).parse().unwrap_or_else(|e| panic!("{k}: {e}"))
}

#[test]
fn eip712_digests_signatures_and_signers() {
    let doc = load("tests/vectors/eip712.json");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10);
    for c in cases {
        let name = s(c, "name");
        let d = &c["domain"];
        assert_eq!(s(d, "name"), eip712::DOMAIN_NAME);
        assert_eq!(s(d, "version"), eip712::DOMAIN_VERSION);
        let domain = Domain {
            chain_id: d["chainId"].as_u64().expect("chainId"),
            verifying_contract: s(d, "verifyingContract")
                .parse::<Address>()
                .expect("address"),
        };
        let request: Request = serde_json::from_value(c["request"].clone()).expect("request");
        assert_eq!(domain.separator(), b256(c, "domainSeparator"), "{name}");
        assert_eq!(
            eip712::struct_hash(&request),
            b256(c, "structHash"),
            "{name}"
        );
        let digest = eip712::signing_digest(&domain, &request);
        assert_eq!(digest, b256(c, "digest"), "{name}");
        let signer: Address = s(c, "signer").parse().expect("signer");
        let sig = RawSignature::parse(s(c, "signature")).expect("signature parses");
        assert_eq!(recover_k256(&digest, &sig), Ok(signer), "{name} (k256)");
        assert_eq!(
            recover_libsecp256k1(&digest, &sig),
            Ok(signer),
            "{name} (libsecp256k1)"
        );
        let sub = SnapshotSubmission {
            request: request.clone(),
            signature: s(c, "signature").to_string(),
            ..Default::default()
        };
        assert_eq!(
            Verifier::new(domain).recover(&sub).map(|r| r.signer),
            Ok(signer),
            "{name}"
        );
        // Our own signing reproduces eth-account's signature (RFC 6979 is deterministic).
        let key_bytes = hex::decode(s(c, "privateKey").trim_start_matches("0x")).expect("key hex");
        let key = k256::ecdsa::SigningKey::from_slice(&key_bytes).expect("key");
        assert_eq!(eip712::address_of(&key), signer, "{name}");
        assert_eq!(
            eip712::sign_request(&domain, &request, &key).expect("signs"),
            s(c, "signature"),
            "{name}"
        );
    }
}

#[test]
fn eip712_invalid_signatures_are_rejected_with_their_reason() {
    let doc = load("tests/vectors/eip712.json");
    let invalid = doc["invalid"].as_array().expect("invalid");
    assert!(!invalid.is_empty());
    for c in invalid {
        let err = RawSignature::parse(s(c, "signature")).expect_err(s(c, "name"));
        assert_eq!(err.reason(), s(c, "reason"), "{}", s(c, "name"));
    }
}

fn rule_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// `ipfs add --cid-version=1 --raw-leaves` as npm's UnixFS importer does it: the root CID and
/// every dag-pb node, byte for byte, from one byte to a two-level tree.
#[test]
fn unixfs_files_match_the_importer() {
    let doc = load("tests/vectors/unixfs.json");
    let opts = &doc["options"];
    assert_eq!(
        opts["chunkSize"].as_u64(),
        Some(sequencer_core::unixfs::CHUNK_BYTES as u64)
    );
    assert_eq!(
        opts["maxChildrenPerNode"].as_u64(),
        Some(sequencer_core::unixfs::MAX_LINKS as u64)
    );
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10);
    for c in cases {
        let name = s(c, "name");
        let bytes = match c.get("file") {
            Some(f) => {
                let path = workspace().join(f.as_str().expect("file"));
                std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            }
            None => {
                assert_eq!(s(c, "generatorRule"), "bytes[i] = (i*31+7) % 251");
                rule_bytes(c["length"].as_u64().expect("length") as usize)
            }
        };
        let dag = sequencer_core::unixfs::file_dag(&bytes);
        assert_eq!(dag.root.to_string(), s(c, "cid"), "{name}");
        assert_eq!(document_cid(&bytes).to_string(), s(c, "cid"), "{name}");
        // The importer stores identical chunks once; count distinct leaves.
        let distinct: std::collections::BTreeSet<_> = dag.leaves.iter().collect();
        assert_eq!(
            distinct.len() as u64,
            c["leafBlocks"].as_u64().expect("leaves"),
            "{name}"
        );
        let mut ours: Vec<(String, String)> = dag
            .nodes
            .iter()
            .map(|n| (n.cid.to_string(), hex::encode(&n.bytes)))
            .collect();
        ours.sort();
        let theirs: Vec<(String, String)> = c["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| (s(n, "cid").to_string(), s(n, "bytesHex").to_string()))
            .collect();
        assert_eq!(ours, theirs, "{name}: dag-pb nodes");
    }
}

#[test]
fn cids_match_multiformats() {
    let doc = load("tests/vectors/cids.json");
    for c in doc["cases"].as_array().expect("cases") {
        let bytes = if let Some(h) = c.get("dataHex") {
            hex::decode(h.as_str().expect("hex")).expect("hex")
        } else if let Some(len) = c.get("length") {
            assert_eq!(s(c, "generatorRule"), "bytes[i] = (i*31+7) % 251");
            rule_bytes(len.as_u64().expect("length") as usize)
        } else {
            let path = workspace().join(s(c, "file"));
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        assert_eq!(
            raw_cid(&bytes).to_string(),
            s(c, "cidV1Raw"),
            "{}",
            s(c, "name")
        );
    }
    for p in doc["parse"].as_array().expect("parse") {
        let cid = parse_cid(s(p, "cid")).expect("parses");
        assert_eq!(
            cid.version() as u64,
            p["version"].as_u64().expect("version")
        );
        assert_eq!(cid.codec(), p["codec"].as_u64().expect("codec"));
        assert_eq!(
            cid.hash().code(),
            p["multihashCode"].as_u64().expect("code")
        );
        assert_eq!(hex::encode(cid.hash().digest()), s(p, "digestHex"));
        assert_eq!(cid.to_string(), s(p, "cid"));
    }
    for bad in doc["invalidCids"].as_array().expect("invalid") {
        let bad = bad.as_str().expect("string");
        assert!(parse_cid(bad).is_err(), "{bad:?} parsed");
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

#[test]
fn merkle_roots_proofs_and_growth_match_the_python_tree() {
    let doc = load("tests/vectors/merkle.json");
    let zeros = strings(&doc["zeroHashes"]);
    for (z, expected) in ZERO_HASHES.iter().zip(&zeros) {
        assert_eq!(format!("0x{}", hex::encode(z)), *expected);
    }
    for c in doc["cases"].as_array().expect("cases") {
        let leaves = strings(&c["leaves"]);
        let mut t = IncrementalTree::new();
        for l in &leaves {
            t.push(l).expect("fits");
        }
        assert_eq!(B256::from(t.root()), b256(c, "root"), "{}", s(c, "name"));
        assert_eq!(t.published_root(), b256(c, "published"), "{}", s(c, "name"));
    }
    for p in doc["proofs"].as_array().expect("proofs") {
        let leaves: Vec<_> = strings(&p["leaves"])
            .iter()
            .map(|l| merkle::leaf_hash(l))
            .collect();
        let index = p["index"].as_u64().expect("index") as usize;
        let proof = merkle::prove(&leaves, index).expect("proves");
        let expected: Vec<B256> = strings(&p["siblings"])
            .iter()
            .map(|h| h.parse().expect("hex"))
            .collect();
        let got: Vec<B256> = proof.siblings.iter().map(|n| B256::from(*n)).collect();
        assert_eq!(got, expected, "siblings of leaf {index}");
        let theirs = MerkleProof {
            leaf_index: index as u64,
            siblings: expected.iter().map(|b| b.0).collect(),
        };
        assert!(merkle::verify(
            &leaves[index],
            &theirs,
            &b256(p, "published")
        ));
    }
    let growing = &doc["growing"];
    let mut t = IncrementalTree::new();
    let published = strings(&growing["publishedAfterEachBatch"]);
    for (batch, expected) in growing["batches"]
        .as_array()
        .expect("batches")
        .iter()
        .zip(&published)
    {
        for id in strings(batch) {
            t.push(&id).expect("fits");
        }
        assert_eq!(t.published_root().to_string(), *expected);
    }
}

#[test]
fn real_batch_gives_its_published_roothash() {
    let path = workspace().join("tests/vectors/sample-batch-epoch-11267.json");
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: BatchDocument = serde_json::from_slice(&text).expect("batch document");
    assert_eq!(doc.submission_ids.len(), 51);
    let roots = inspect_roots(&doc, &[]).expect("fits");
    assert_eq!(roots.roothash.to_string(), doc.roothash);
    assert_eq!(
        roots.finalized_cids_root.to_string(),
        "0x04a066d979147a36eca07812c338f429fba6334baeef10c25ec428ffc48c821a"
    );
    // Its submissions are the protojson form (integers as strings): they parse.
    for text in &doc.submissions {
        let sub: SnapshotSubmission = serde_json::from_str(text).expect("submission");
        assert_eq!(sub.request.epoch_id, 11267);
        assert!(parse_cid(&sub.request.snapshot_cid).is_ok());
    }
}

#[test]
fn every_spelling_of_a_cid_has_the_generators_canonical_form() {
    let doc = load("tests/vectors/cids.json");
    let spellings = doc["spellings"].as_array().expect("spellings");
    assert!(!spellings.is_empty());
    let mut checked = 0;
    for sp in spellings {
        let canonical = s(sp, "canonical");
        let codec = sp["codec"].as_u64().expect("codec");
        for f in sp["forms"].as_array().expect("forms") {
            let (name, text) = (s(f, "spelling"), s(f, "cid"));
            let cid = parse_cid(text).unwrap_or_else(|e| panic!("{name} {text:?}: {e}"));
            assert_eq!(cid.codec(), codec, "{name} {text:?}");
            assert_eq!(canonical_cid(text), canonical, "{name} {text:?}");
            checked += 1;
        }
        // The canonical form is a fixed point.
        assert_eq!(canonical_cid(canonical), canonical);
    }
    assert!(checked >= spellings.len() * 20, "{checked} spellings");
}

#[test]
fn strings_that_are_not_a_bare_cid_are_rejected_with_a_reason() {
    let doc = load("tests/vectors/cids.json");
    let invalid = doc["invalidSpellings"]
        .as_array()
        .expect("invalidSpellings");
    assert!(!invalid.is_empty());
    for x in invalid {
        let (why, text) = (s(x, "why"), s(x, "cid"));
        match parse_cid(text) {
            Ok(c) => panic!("{why}: {text:?} parsed as {c}"),
            Err(e) => assert!(!e.to_string().is_empty(), "{why}: no reason"),
        }
        // Such a string is never given a canonical form it does not have.
        assert_eq!(canonical_cid(text), text, "{why}");
    }
}

fn vote(i: usize, cid: &str) -> Accepted {
    Accepted {
        submission_id: format!("00000000-0000-4000-8000-{i:012}"),
        submission: SnapshotSubmission {
            request: Request {
                slot_id: i as u64 + 1,
                deadline: 1,
                snapshot_cid: cid.to_string(),
                epoch_id: 7,
                project_id: "project".into(),
            },
            ..Default::default()
        },
    }
}

#[test]
fn consensus_counts_spellings_as_one_vote_and_ties_on_canonical_cids() {
    let doc = load("tests/vectors/cids.json");
    let cases = doc["consensus"].as_array().expect("consensus");
    assert!(!cases.is_empty());
    for c in cases {
        let name = s(c, "name");
        let votes: Vec<Accepted> = strings(&c["votes"])
            .iter()
            .enumerate()
            .map(|(i, v)| vote(i, v))
            .collect();
        let got = consensus(&votes);
        let p = &got["project"];
        assert_eq!(p.cid, s(c, "winner"), "{name}");
        assert_eq!(
            p.votes as u64,
            c["winnerVotes"].as_u64().expect("votes"),
            "{name}"
        );
        assert_eq!(
            p.total as u64,
            c["total"].as_u64().expect("total"),
            "{name}"
        );
        // Counting raw strings would have chosen another winner in the rigged cases.
        if s(c, "stringWinner") != s(c, "winner") {
            assert_ne!(p.cid, s(c, "stringWinner"), "{name}");
        }
        // The batch lists (and the chain is sent) the canonical spelling; each submission's
        // own text keeps the spelling it was signed with.
        let fin = finalize_epoch(&votes, &FinalizeConfig::default()).expect("finalizes");
        let d = &fin.batches[0].document;
        assert_eq!(d.cids, vec![s(c, "winner").to_string()], "{name}");
        let mut listed: Vec<String> = d
            .submissions
            .iter()
            .map(|t| {
                serde_json::from_str::<SnapshotSubmission>(t)
                    .expect("submission")
                    .request
                    .snapshot_cid
            })
            .collect();
        let mut sent = strings(&c["votes"]);
        listed.sort();
        sent.sort();
        assert_eq!(listed, sent, "{name}");
    }
}

/// The content id of a submission (docs/gossipsub.md, "Content id"), computed from the rule by
/// `tests/vectors/gen_content_id.py` with Python's standard library.
#[test]
fn content_ids_match_the_rule_computed_elsewhere() {
    let v = load("tests/vectors/content_id.json");
    assert_eq!(
        s(&v, "domain").as_bytes(),
        sequencer_core::gossip::CONTENT_ID_DOMAIN
    );
    let cases = v["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10);
    for c in cases {
        let sub: SnapshotSubmission =
            serde_json::from_str(s(c, "submission")).unwrap_or_else(|e| panic!("{c}: {e}"));
        assert_eq!(
            sequencer_core::gossip::content_id(&sub).to_string(),
            s(c, "contentId"),
            "{}",
            s(c, "name")
        );
    }
}
