"""Extract the AWS provider's resource schema from the @cdktf/provider-aws npm tarball.

    python extract_schema.py cdktf-provider-aws-21.22.1.tgz schema.json

The package's bindings are generated from hashicorp/aws 6.25.0. For every
`package/lib/<name>/index.js` we take:
  - the Terraform type (`terraformResourceType: '...'`), and whether it is a data source
    (folder `data-aws-*`);
  - every argument and nested block in snake case, from `synthesizeHclAttributes()` and the
    `<struct>ToHclTerraform` converters (`isBlock: true` marks a block; the converter named in its
    `value:` is the block's own schema);
and from `index.d.ts` which of them are required (a property without `?`).

The tarball is read in ONE sequential pass (random access into a 37 MB gzip stream is very slow);
index.js and index.d.ts of a folder are paired in memory and parsed when both have been seen.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile

ENTRY = re.compile(r"^\s{8,}(\w+): \{\n\s*value: (.*?),\n\s*isBlock: (true|false),", re.M)
CONVERTER = re.compile(r"^function (\w+)ToHclTerraform\(struct\) \{$", re.M)
HCL_FN_REF = re.compile(r"(?<![.\w])(\w+)ToHclTerraform\b")
TYPE = re.compile(r"terraformResourceType: '([a-z0-9_]+)'")
CLASS = re.compile(r"^export declare class (\w+) extends cdktf\.Terraform(?:Resource|DataSource) ", re.M)
INTERFACE = re.compile(r"^export interface (\w+)(?: extends [\w.]+)? \{\n(.*?)^\}", re.M | re.S)
PROP = re.compile(r"(?:#(\w+)\}\s*\n\s*\*/\s*\n)?\s*readonly (\w+)(\?)?:", re.M)


def snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def entries(body: str) -> dict[str, dict]:
    out = {}
    for name, value, is_block in ENTRY.findall(body):
        ref = HCL_FN_REF.search(value) if is_block == "true" else None
        out[name] = {"block": is_block == "true", "nested": ref.group(1) if ref else None}
    return out


def required_props(dts: str) -> dict[str, set[str]]:
    """interface name -> snake names of its required properties."""
    req: dict[str, set[str]] = {}
    for iname, body in INTERFACE.findall(dts):
        names = set()
        for link_name, prop, optional in PROP.findall(body):
            if not optional:
                names.add(link_name or snake(prop))
        req[iname] = names
    return req


def parse_folder(folder: str, js: str, dts: str) -> tuple[str, dict] | None:
    m = TYPE.search(js)
    cls = CLASS.search(dts)
    if not m or not cls:
        return None
    rtype = m.group(1)
    req = required_props(dts)
    # Converters: name -> body (up to the next top-level function or class).
    structs: dict[str, dict] = {}
    starts = [(c.start(), c.group(1)) for c in CONVERTER.finditer(js)]
    for i, (pos, fname) in enumerate(starts):
        end_m = re.compile(r"^(?:function |class )", re.M).search(js, pos + 10)
        body = js[pos : end_m.start() if end_m else len(js)]
        iface = fname[0].upper() + fname[1:]
        structs[fname] = {"args": entries(body), "required": sorted(req.get(iface, set()))}
    syn = js.find("synthesizeHclAttributes() {")
    if syn < 0:
        return None
    body = js[syn : js.find("return Object.fromEntries", syn)]
    top = {"args": entries(body), "required": sorted(req.get(cls.group(1) + "Config", set()))}
    kind = "data" if folder.startswith("data-aws-") else "resource"
    return f"{kind}.{rtype}", {"schema": top, "structs": structs}


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    pending: dict[str, dict[str, str]] = {}
    out: dict[str, dict] = {}
    pat = re.compile(r"^package/lib/([^/]+)/index\.(js|d\.ts)$")
    with tarfile.open(src, mode="r|gz") as tar:
        for member in tar:
            m = pat.match(member.name)
            if not m or not member.isfile():
                continue
            folder, ext = m.groups()
            f = tar.extractfile(member)
            if f is None:
                continue
            slot = pending.setdefault(folder, {})
            slot[ext] = f.read().decode("utf-8")
            if "js" in slot and "d.ts" in slot:
                got = parse_folder(folder, slot["js"], slot["d.ts"])
                del pending[folder]
                if got:
                    out[got[0]] = got[1]
    with open(dst, "w") as fh:
        json.dump(out, fh, sort_keys=True, separators=(",", ":"))
    n_res = sum(1 for k in out if k.startswith("resource."))
    print(f"[schema] {n_res} resources, {len(out) - n_res} data sources -> {dst}", file=sys.stderr)


if __name__ == "__main__":
    main()
