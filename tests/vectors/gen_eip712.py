#!/usr/bin/env python3
"""Generate tests/vectors/eip712.json: EIP-712 vectors for the sequencer's submission identity
check (docs/protocol.md section 3), computed with eth-account (an implementation independent of ours).

Run from the workspace root:
    python3 -m venv .tools/vectors-venv
    .tools/vectors-venv/bin/pip install -r tests/vectors/requirements.txt
    .tools/vectors-venv/bin/python tests/vectors/gen_eip712.py

Deterministic: keys, domains and requests are fixed, ECDSA nonces are RFC 6979, so re-running gives
a byte-identical file.
"""

import json
import os
from importlib.metadata import version

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys import keys as eth_keys_keys
from eth_utils import keccak, to_checksum_address

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "eip712.json")

# secp256k1 group order
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
REQUEST_TYPE = (
    "EIPRequest(uint256 slotId,uint256 deadline,string snapshotCid,uint256 epochId,string projectId)"
)
EXPECTED_TYPEHASH = "0x12a489cc5c1a68e5513e624e343a209abc2b5628112a27567f67cbaa5e919db4"

TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "EIPRequest": [
        {"name": "slotId", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
        {"name": "snapshotCid", "type": "string"},
        {"name": "epochId", "type": "uint256"},
        {"name": "projectId", "type": "string"},
    ],
}

U64_MAX = 2**64 - 1
PID_UNI = "aggregate_pairContract_24h_trade_volume:0x8ef79d6c328c25da633559c20c75f638a4863462:UNISWAPV2"
PID_UNI_7D = "aggregate_pairContract_7d_trade_volume:0xeaabb2ee89221455302d9ffb5325689ff8f0c37b:UNISWAPV2"
PID_PAIR = "pairContract_trade_volume:0x570febdf89c07f256c75686caca215289bb11cfc:UNISWAPV2"
CID_V1_A = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy"
CID_V1_B = "bafkreiasr6gc7wdltoiakwqgiovqy6glo35dmmv6wjfe6o3ntr5tx36g74"
CID_V1_HELLO = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
CID_V0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
CID_V1_PB = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


def contract(label: str) -> str:
    """A deterministic, checksummed contract address: last 20 bytes of keccak(label)."""
    return to_checksum_address(keccak(text=label)[12:])


def private_key(i: int) -> bytes:
    k = keccak(text=f"vector-key-{i}")
    assert 0 < int.from_bytes(k, "big") < N
    return k


# (name, chainId, verifyingContract, request)
CASES = [
    ("powerloom-mainnet-chain-11169-typical", 11169, contract("protocol-state-11169"),
     dict(slotId=4036, deadline=6624038, snapshotCid=CID_V1_A, epochId=11267, projectId=PID_UNI)),
    ("powerloom-chain-11169-second-submission-same-slot", 11169, contract("protocol-state-11169"),
     dict(slotId=4036, deadline=6624039, snapshotCid=CID_V1_B, epochId=11267, projectId=PID_UNI_7D)),
    ("powerloom-chain-104-simulation-epoch-0", 104, contract("protocol-state-104"),
     dict(slotId=1, deadline=1000, snapshotCid=CID_V1_HELLO, epochId=0, projectId=PID_PAIR)),
    ("chain-1-cidv0", 1, contract("protocol-state-1"),
     dict(slotId=7, deadline=19000000, snapshotCid=CID_V0, epochId=123456, projectId=PID_UNI)),
    ("chain-100-dag-pb-cidv1", 100, contract("protocol-state-100"),
     dict(slotId=250, deadline=35000000, snapshotCid=CID_V1_PB, epochId=987654, projectId=PID_PAIR)),
    ("chain-31337-slot-0-deadline-0", 31337, contract("protocol-state-31337"),
     dict(slotId=0, deadline=0, snapshotCid=CID_V1_A, epochId=1, projectId=PID_UNI)),
    ("chain-31337-slot-u64-max", 31337, contract("protocol-state-31337"),
     dict(slotId=U64_MAX, deadline=12, snapshotCid=CID_V1_B, epochId=2, projectId=PID_UNI_7D)),
    ("chain-11169-all-u64-max", 11169, contract("protocol-state-11169"),
     dict(slotId=U64_MAX, deadline=U64_MAX, snapshotCid=CID_V1_HELLO, epochId=U64_MAX, projectId=PID_UNI)),
    ("chain-11169-large-epoch-2^63", 11169, contract("protocol-state-11169"),
     dict(slotId=2**32, deadline=2**40 + 3, snapshotCid=CID_V1_A, epochId=2**63, projectId=PID_PAIR)),
    ("chain-1-unicode-project-id", 1, contract("protocol-state-1"),
     dict(slotId=42, deadline=6624100, snapshotCid=CID_V1_B, epochId=11268,
          projectId="projét:データ市場:Ωμέγα:🚀")),
    ("chain-100-short-project-id", 100, contract("protocol-state-100"),
     dict(slotId=9999, deadline=77, snapshotCid=CID_V0, epochId=0, projectId="p")),
    ("chain-11169-long-project-id-256-bytes", 11169, contract("protocol-state-11169"),
     dict(slotId=12345, deadline=6624555, snapshotCid=CID_V1_A, epochId=11269,
          projectId=("x" * 256))),
]


def hx(b: bytes) -> str:
    return "0x" + b.hex()


def sign_case(i, name, chain_id, verifying_contract, request):
    domain = {
        "name": "PowerloomProtocolContract",
        "version": "0.1",
        "chainId": chain_id,
        "verifyingContract": verifying_contract,
    }
    full_message = {
        "types": TYPES,
        "primaryType": "EIPRequest",
        "domain": domain,
        "message": request,
    }
    signable = encode_typed_data(full_message=full_message)
    assert signable.version == b"\x01"
    domain_separator = bytes(signable.header)
    struct_hash = bytes(signable.body)
    digest = keccak(b"\x19\x01" + domain_separator + struct_hash)

    pk = private_key(i)
    acct = Account.from_key(pk)
    signed = Account.sign_message(signable, private_key=pk)
    assert bytes(signed.message_hash) == digest
    sig = bytes(signed.signature)
    assert len(sig) == 65
    r = int.from_bytes(sig[0:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    v = sig[64]
    assert v in (27, 28), v
    assert 0 < s <= N // 2, "eth-account must produce low-s"
    assert Account._recover_hash(digest, signature=sig) == acct.address

    # Independent recomputation of the domain separator and struct hash by hand (ABI encoding of
    # the EIP-712 spec), as a check on the library and on our reading of it.
    dom_manual = keccak(
        keccak(text=DOMAIN_TYPE)
        + keccak(text=domain["name"])
        + keccak(text=domain["version"])
        + chain_id.to_bytes(32, "big")
        + bytes(12) + bytes.fromhex(verifying_contract[2:])
    )
    assert dom_manual == domain_separator
    struct_manual = keccak(
        keccak(text=REQUEST_TYPE)
        + request["slotId"].to_bytes(32, "big")
        + request["deadline"].to_bytes(32, "big")
        + keccak(text=request["snapshotCid"])
        + request["epochId"].to_bytes(32, "big")
        + keccak(text=request["projectId"])
    )
    assert struct_manual == struct_hash

    case = {
        "name": name,
        "domain": domain,
        "domainSeparator": hx(domain_separator),
        "request": {
            "slotId": request["slotId"],
            "deadline": request["deadline"],
            "snapshotCid": request["snapshotCid"],
            "epochId": request["epochId"],
            "projectId": request["projectId"],
        },
        "structHash": hx(struct_hash),
        "digest": hx(digest),
        "privateKey": hx(pk),
        "signature": sig.hex(),
        "signer": acct.address,
    }
    return case, (digest, r, s, v, acct.address)


def naive_recover(digest: bytes, r: int, s: int, v: int) -> str:
    """Recovery without any low-s check (eth-keys native backend accepts high s)."""
    sig = eth_keys_keys.Signature(vrs=(v - 27, r, s))
    return sig.recover_public_key_from_msg_hash(digest).to_checksum_address()


def invalid_cases(signed):
    out = []

    def add(name, digest, sig_hex, reason):
        assert reason in ("high_s", "bad_v", "bad_length", "bad_hex")
        out.append({"name": name, "digest": hx(digest), "signature": sig_hex, "reason": reason})

    def raw(r, s, v):
        return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])

    # high-s: s -> n - s, v flipped. Recovers the same signer in a naive implementation.
    for idx in (0, 3, 7):
        digest, r, s, v, addr = signed[idx]
        hs, hv = N - s, 55 - v
        assert hs > N // 2
        assert naive_recover(digest, r, hs, hv) == addr, "high-s variant must recover same key naively"
        add(f"high-s-of-case-{idx}", digest, raw(r, hs, hv).hex(), "high_s")

    digest, r, s, v, _ = signed[1]
    for bad_v in (0, 1, 29, 255):
        add(f"v-{bad_v}-case-1", digest, raw(r, s, bad_v).hex(), "bad_v")

    good = raw(r, s, v)
    add("64-bytes-r-s-without-v", digest, good[:64].hex(), "bad_length")
    add("66-bytes-trailing-zero", digest, (good + b"\x00").hex(), "bad_length")
    add("empty", digest, "", "bad_length")
    add("32-bytes", digest, good[:32].hex(), "bad_length")

    h = good.hex()
    add("non-hex-chars-zz", digest, "zz" + h[2:], "bad_hex")
    add("non-hex-char-g-at-end", digest, h[:-1] + "g", "bad_hex")
    add("odd-length-hex-131-chars", digest, h + "0", "bad_hex")
    add("whitespace-inside", digest, h[:64] + " " + h[65:], "bad_hex")
    return out


def main():
    typehash = keccak(text=REQUEST_TYPE)
    assert hx(typehash) == EXPECTED_TYPEHASH, hx(typehash)
    # and eth-account's own type encoding agrees
    from eth_account._utils.encode_typed_data.encoding_and_hashing import hash_type

    assert hx(hash_type("EIPRequest", {k: v for k, v in TYPES.items() if k != "EIP712Domain"})) == EXPECTED_TYPEHASH

    cases, signed = [], []
    for i, (name, chain_id, vc, req) in enumerate(CASES):
        c, meta = sign_case(i, name, chain_id, vc, req)
        cases.append(c)
        signed.append(meta)

    doc = {
        "generator": f"eth-account {version('eth-account')}",
        "typehash": hx(typehash),
        "domainTypehash": hx(keccak(text=DOMAIN_TYPE)),
        "cases": cases,
        "invalid": invalid_cases(signed),
    }
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} cases, {len(doc['invalid'])} invalid")


if __name__ == "__main__":
    main()
