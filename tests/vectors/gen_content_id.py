#!/usr/bin/env python3
"""Generate tests/vectors/content_id.json: the content id of a submission (docs/gossipsub.md,
"Content id"), computed from the rule's text with the Python standard library only (json,
hashlib, uuid), independent of the Rust code.

    content_id = UUIDv8 of the first 16 bytes of SHA-256(
        "powerloom-submission-content-id/v1" || 0x00 ||
        u64be(slotId) || u64be(deadline) || u64be(epochId) ||
        field(snapshotCid) || field(projectId) ||
        hexfield(signature) || hexfield(header) || hexfield(dataMarket) || hexfield(protocolState))
    field(s)    = u32be(len(s)) || s                   (UTF-8)
    hexfield(s) = 0x01 || field(bytes.fromhex(s))       s is hex ("0x" optional, any case, even, non-empty)
                | 0x02 || field(s)                      otherwise
                | 0x00                                  absent (protocolState only)

Integers may arrive as JSON numbers or decimal strings; absent ones are 0, absent strings "".

Run from the workspace root (no dependency beyond Python 3):
    python3 tests/vectors/gen_content_id.py
"""

import hashlib
import json
import os
import struct
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "content_id.json")
DOMAIN = b"powerloom-submission-content-id/v1"


def field(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def hexfield(s):
    if s is None:
        return b"\x00"
    digits = s[2:] if s[:2] in ("0x", "0X") else s
    if digits and len(digits) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in digits):
        return b"\x01" + field(bytes.fromhex(digits))
    return b"\x02" + field(s.encode())


def num(v) -> int:
    if v is None:
        return 0
    return int(v)


def content_id(text: str) -> str:
    sub = json.loads(text)
    req = sub.get("request") or {}
    h = hashlib.sha256()
    h.update(DOMAIN + b"\x00")
    for k in ("slotId", "deadline", "epochId"):
        h.update(struct.pack(">Q", num(req.get(k))))
    h.update(field((req.get("snapshotCid") or "").encode()))
    h.update(field((req.get("projectId") or "").encode()))
    h.update(hexfield(sub.get("signature") or ""))
    h.update(hexfield(sub.get("header") or ""))
    h.update(hexfield(sub.get("dataMarket") or ""))
    h.update(hexfield(sub.get("protocolState")))
    b = bytearray(h.digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x80  # version 8
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 9562 variant
    return str(uuid.UUID(bytes=bytes(b)))


SIG = "a" * 128 + "1b"
HEADER = "0x" + "ab" * 32
MARKET = "0x0b2b6f6721040e7f15a532a279aa1f48562e0be0"
CID = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"


def sub(**over):
    req = {"slotId": 7, "deadline": 120, "snapshotCid": CID, "epochId": 20,
           "projectId": "aggregate_pairContract_24h_trade_volume:0x8ef7:UNISWAPV2"}
    req.update(over.pop("request", {}))
    s = {"request": req, "signature": SIG, "header": HEADER, "dataMarket": MARKET,
         "nodeVersion": "v0.1.0"}
    s.update(over)
    return json.dumps({k: v for k, v in s.items() if v is not None}, separators=(",", ":"))


CASES = [
    ("as Go writes it", sub()),
    ("numbers as strings", sub(request={"slotId": "7", "deadline": "120", "epochId": "20"})),
    ("hex upper case and 0x added", sub(signature="0x" + SIG.upper(), dataMarket=MARKET.upper().replace("0X", "0x"))),
    ("another nodeVersion and an unknown key", sub(nodeVersion="v9", extra=1)),
    ("another header", sub(header="0x" + "cd" * 32)),
    ("another market", sub(dataMarket="0x000000000000000000000000000000000000dead")),
    ("protocolState present", sub(protocolState="0x" + "5a" * 20)),
    ("signature not hex", sub(signature="not-hex")),
    ("another slot", sub(request={"slotId": 8})),
    ("epoch 0 (simulation)", sub(request={"epochId": 0})),
    ("unicode project id", sub(request={"projectId": "p\u00e9:\u4e2d"})),
]


def main() -> None:
    out = {
        "rule": "docs/gossipsub.md#content-id",
        "domain": DOMAIN.decode(),
        "cases": [{"name": n, "submission": t, "contentId": content_id(t)} for n, t in CASES],
    }
    ids = [c["contentId"] for c in out["cases"]]
    # The rule's by-value promises, checked before anything is written.
    assert ids[0] == ids[1] == ids[2] == ids[3], "re-spellings keep the id"
    assert len(set(ids[3:])) == len(ids) - 3, "every judged value changes the id"
    assert all(uuid.UUID(i).version == 8 for i in ids)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}: {len(ids)} cases")


if __name__ == "__main__":
    main()
