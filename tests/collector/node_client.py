"""Signs and sends snapshot submissions the way snapshotter-lite-v2 does, to a local collector.

What the node does, step by step (its generic worker): EIP-712 over
EIPRequest(slotId, deadline, snapshotCid, epochId, projectId) in the domain
PowerloomProtocolContract / 0.1 / the anchor chain's id / ProtocolState (EIP-55); deadline =
latest anchor block + a buffer; header = that latest block's hash; signature r||s||v with v in
{27, 28}, hex without 0x; then one unary gRPC SubmitSnapshot per submission, plaintext, with
dataMarket, nodeVersion and protocolState set. Here eth-account signs (the node uses
eip712-structs and coincurve; the bytes are the same) and grpcio sends, from a stub generated
from core/proto/submission.proto at start.

Usage: python node_client.py --collector 127.0.0.1:50051 --rpc-url URL --protocol-state 0x..
         --data-market 0x.. --epoch N --submission SLOT:KEYHEX:PROJECT:CONTENT [...]
Prints one JSON object: the submissions sent (with their signatures) and the collector's answers.
"""

import argparse
import base64
import hashlib
import json
import os
import sys
import tempfile
import urllib.request

import grpc
from eth_account import Account
from eth_utils import to_checksum_address
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "..", "core", "proto")


def stubs():
    out = tempfile.mkdtemp(prefix="submission-proto-")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}", os.path.join(PROTO_DIR, "submission.proto")])
    if rc != 0:
        sys.exit(f"protoc failed ({rc})")
    sys.path.insert(0, out)
    import submission_pb2  # noqa: E402
    import submission_pb2_grpc  # noqa: E402
    return submission_pb2, submission_pb2_grpc


def rpc(url, method, params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        out = json.load(r)
    if "error" in out:
        raise RuntimeError(out["error"])
    return out["result"]


def cid_v1_raw(data: bytes) -> str:
    """CIDv1, raw codec, sha2-256, base32 lower: what `ipfs add --cid-version=1` gives."""
    mh = bytes([0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(bytes([0x01, 0x55]) + mh).decode().lower().rstrip("=")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--collector", required=True)
    ap.add_argument("--rpc-url", required=True)
    ap.add_argument("--protocol-state", required=True)
    ap.add_argument("--data-market", required=True)
    ap.add_argument("--epoch", type=int, required=True)
    ap.add_argument("--deadline-buffer", type=int, default=5)
    ap.add_argument("--submission", action="append", required=True,
                    help="SLOT:KEYHEX:PROJECT:CONTENT")
    a = ap.parse_args()
    pb, pb_grpc = stubs()
    chain_id = int(rpc(a.rpc_url, "eth_chainId", []), 16)
    verifying = to_checksum_address(a.protocol_state)
    domain = {"name": "PowerloomProtocolContract", "version": "0.1", "chainId": chain_id,
              "verifyingContract": verifying}
    types = {"EIPRequest": [
        {"name": "slotId", "type": "uint256"}, {"name": "deadline", "type": "uint256"},
        {"name": "snapshotCid", "type": "string"}, {"name": "epochId", "type": "uint256"},
        {"name": "projectId", "type": "string"}]}
    channel = grpc.insecure_channel(a.collector)
    stub = pb_grpc.SubmissionStub(channel)
    sent = []
    for spec in a.submission:
        slot, key, project, content = spec.split(":", 3)
        block = rpc(a.rpc_url, "eth_getBlockByNumber", ["latest", False])
        number, header = int(block["number"], 16), block["hash"]
        cid = cid_v1_raw(content.encode())
        request = {"slotId": int(slot), "deadline": number + a.deadline_buffer, "snapshotCid": cid,
                   "epochId": a.epoch, "projectId": project}
        signed = Account.sign_typed_data(key, domain, types, request)
        sig = bytes(signed.signature)
        assert sig[64] in (27, 28), "v must be 27 or 28"
        msg = pb.SnapshotSubmission(
            request=pb.Request(**request), signature=sig.hex(), header=header,
            dataMarket=a.data_market, nodeVersion="v2.0.0-node-client", protocolState=verifying)
        answer = stub.SubmitSnapshot(msg, timeout=10)
        sent.append({"slot": int(slot), "signer": Account.from_key(key).address, "project": project,
                     "snapshot_cid": cid, "signature": sig.hex(), "header": header,
                     "header_block": number, "answer": answer.message})
    print(json.dumps({"chain_id": chain_id, "sent": sent}))


if __name__ == "__main__":
    main()
