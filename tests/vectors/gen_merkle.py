#!/usr/bin/env python3
"""Generate tests/vectors/merkle.json: Merkle root / proof vectors for docs/protocol.md section 6.

Tree: fixed height 32, leaf = SHA-256(UTF-8 string), node = SHA-256(left || right),
empty subtree z_0 = 32 zero bytes, z_{l+1} = SHA-256(z_l || z_l); published = keccak256(root).

This is deliberately the simplest possible implementation (level by level, pad an odd level with
that level's zero hash), independent of the incremental (frontier-based) tree in the Rust code.
hashlib for SHA-256, pycryptodome for keccak256.

Run from the workspace root (same venv as gen_eip712.py):
    .tools/vectors-venv/bin/python tests/vectors/gen_merkle.py
"""

import hashlib
import json
import os

from Crypto.Hash import keccak as _keccak

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "merkle.json")
SAMPLE = os.path.join(HERE, "sample-batch-epoch-11267.json")

HEIGHT = 32


def sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def keccak256(b: bytes) -> bytes:
    return _keccak.new(digest_bits=256, data=b).digest()


ZEROS = [bytes(32)]
for _ in range(HEIGHT):
    ZEROS.append(sha256(ZEROS[-1] + ZEROS[-1]))


def leaf_hash(s: str) -> bytes:
    return sha256(s.encode("utf-8"))


def levels(leaves):
    """All levels bottom-up; level l padded to even length with ZEROS[l]. levels[HEIGHT] = [root]."""
    level = [leaf_hash(s) for s in leaves]
    out = []
    for l in range(HEIGHT):
        if len(level) == 0:
            level = [ZEROS[l]]
        if len(level) % 2 == 1:
            level = level + [ZEROS[l]]
        out.append(level)
        level = [sha256(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    assert len(level) == 1
    out.append(level)
    return out


def root(leaves) -> bytes:
    return levels(leaves)[HEIGHT][0]


def proof(leaves, index):
    lv = levels(leaves)
    sibs = []
    i = index
    for l in range(HEIGHT):
        j = i ^ 1
        sibs.append(lv[l][j] if j < len(lv[l]) else ZEROS[l])
        i >>= 1
    return sibs


def verify(leaf: str, index: int, sibs, expected_root: bytes) -> bool:
    h = leaf_hash(leaf)
    for l in range(HEIGHT):
        h = sha256(sibs[l] + h) if (index >> l) & 1 else sha256(h + sibs[l])
    return h == expected_root


def hx(b: bytes) -> str:
    return "0x" + b.hex()


def main():
    with open(SAMPLE, "rb") as f:
        sample = json.loads(f.read().decode("utf-8"))
    sample_ids = sample["submissionIDs"]
    assert len(sample_ids) == 51

    # Spec checks (docs/protocol.md section 6).
    assert hx(keccak256(root(["a"]))) == "0x11c2aabbbd479c860fcf2ef671a8b9aa08efdaed6ad9008b42970873d55b4aaa"
    assert hx(keccak256(root(sample_ids))) == sample["roothash"], "submission-id tree != sample roothash"
    assert hx(keccak256(root(sample["cids"]))) == "0x04a066d979147a36eca07812c338f429fba6334baeef10c25ec428ffc48c821a"

    ids = lambda n: [f"id-{i}" for i in range(n)]  # noqa: E731
    case_inputs = [
        ("empty-tree", []),
        ("one-leaf-a", ["a"]),
        ("two-leaves", ["a", "b"]),
        ("three-leaves", ["a", "b", "c"]),
        ("five-leaves", ids(5)),
        ("eight-leaves", ids(8)),
        ("sample-batch-epoch-11267-submission-ids", sample_ids),
        ("sample-batch-epoch-11267-cids", sample["cids"]),
        ("unicode-leaves", ["projét", "データ", "🚀", ""]),
        ("hundred-leaves", ids(100)),
        ("thousand-leaves", ids(1000)),
    ]
    cases = []
    for name, leaves in case_inputs:
        r = root(leaves)
        cases.append({"name": name, "leaves": leaves, "root": hx(r), "published": hx(keccak256(r))})
    assert cases[0]["root"] == hx(ZEROS[HEIGHT])

    proofs = []
    for leaves, indices in ((ids(5), (0, 1, 3, 4)), (sample_ids, (0, 1, 25, 49, 50))):
        r = root(leaves)
        for idx in indices:
            sibs = proof(leaves, idx)
            assert len(sibs) == HEIGHT and verify(leaves[idx], idx, sibs, r)
            assert not verify(leaves[idx], idx ^ 1, sibs, r)
            proofs.append({
                "leaves": leaves,
                "index": idx,
                "leafHash": hx(leaf_hash(leaves[idx])),
                "siblings": [hx(s) for s in sibs],
                "root": hx(r),
                "published": hx(keccak256(r)),
            })

    # The submission-id tree grows across the batches of one epoch: after batch k the root is over
    # the ids of batches 1..k in order.
    batches = [["id1", "id2"], ["id3"], ["id4", "id5", "id6"]]
    published_after, acc = [], []
    for b in batches:
        acc += b
        published_after.append(hx(keccak256(root(acc))))

    doc = {
        "height": HEIGHT,
        "zeroHashes": [hx(z) for z in ZEROS],
        "cases": cases,
        "proofs": proofs,
        "growing": {"batches": batches, "publishedAfterEachBatch": published_after},
    }
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} cases, {len(proofs)} proofs")


if __name__ == "__main__":
    main()
