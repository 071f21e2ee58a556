"""Offline schema check of the Terraform in infra/terraform against hashicorp/aws 6.25.0.

    python schema_check.py SCHEMA.json DIR...

SCHEMA.json comes from extract_schema.py (the @cdktf/provider-aws 21.22.1 bindings). Every
`.tf` file under DIR is parsed with python-hcl2 (which also proves it is valid HCL), and every
`resource` and `data` block is checked:
  - its type exists in the provider;
  - every argument and nested block (also inside `dynamic` blocks) is one the provider knows,
    written as what it is (an attribute `k = v` or a block `k { }`);
  - every required argument and block is present.
Module calls are checked against the called module's variables (unknown, missing required).
Exit 1 with one line per problem; 0 when all held.
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

import hcl2

META_ARGS = {"count", "for_each", "provider", "depends_on", "lifecycle", "provisioner", "connection"}


def unq(s: str) -> str:
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] == '"' else s


def is_block(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) and x.get("__is_block__") for x in v)


class Checker:
    def __init__(self, schema: dict):
        self.schema = schema
        self.errors: list[str] = []
        self.checked = 0

    def err(self, where: str, msg: str) -> None:
        self.errors.append(f"{where}: {msg}")

    def check_body(self, where: str, body: dict, node: dict, structs: dict, top: bool) -> None:
        args: dict = node["args"]
        present = set()
        for key, value in body.items():
            if key.startswith("__"):
                continue
            if top and key in META_ARGS:
                continue
            if key == "dynamic":
                for dyn in value:
                    for label, spec in dyn.items():
                        if label.startswith("__"):
                            continue
                        name = unq(label)
                        present.add(name)
                        a = args.get(name)
                        if a is None:
                            self.unknown(where, name, args, "dynamic block")
                        elif not a["block"]:
                            self.err(where, f"dynamic \"{name}\": {name} is an argument, not a block")
                        else:
                            for content in spec.get("content", []):
                                self.check_body(f"{where}.{name}", content, structs.get(a["nested"], {"args": {}, "required": []}), structs, False)
                continue
            present.add(key)
            a = args.get(key)
            if a is None:
                self.unknown(where, key, args, "argument or block")
                continue
            if a["block"]:
                if not is_block(value):
                    self.err(where, f"{key} is a block: write `{key} {{ ... }}`, not `{key} = ...`")
                    continue
                nested = structs.get(a["nested"]) if a["nested"] else None
                if nested is None:
                    continue
                for i, blk in enumerate(value):
                    self.check_body(f"{where}.{key}", blk, nested, structs, False)
            elif is_block(value):
                self.err(where, f"{key} is an argument: write `{key} = ...`, not a block")
        for req in node.get("required", []):
            if req not in present:
                self.err(where, f"required argument or block `{req}` is missing")

    def unknown(self, where: str, key: str, args: dict, what: str) -> None:
        close = difflib.get_close_matches(key, list(args), n=1)
        hint = f" (did you mean `{close[0]}`?)" if close else ""
        self.err(where, f"unknown {what} `{key}`{hint}")

    def check_file(self, path: Path, root: Path) -> dict:
        rel = path.relative_to(root)
        try:
            with path.open() as fh:
                doc = hcl2.load(fh)
        except Exception as e:  # noqa: BLE001 - any parse error is the finding
            self.err(str(rel), f"not valid HCL: {e}")
            return {}
        for kind in ("resource", "data"):
            for entry in doc.get(kind, []):
                for rtype, named in entry.items():
                    if rtype.startswith("__"):
                        continue
                    rtype = unq(rtype)
                    for rname, body in named.items():
                        if rname.startswith("__"):
                            continue
                        where = f"{rel} {kind} {rtype}.{unq(rname)}"
                        entry_schema = self.schema.get(f"{kind}.{rtype}")
                        self.checked += 1
                        if entry_schema is None:
                            close = difflib.get_close_matches(
                                f"{kind}.{rtype}", [k for k in self.schema if k.startswith(kind + ".")], n=1
                            )
                            hint = f" (did you mean `{close[0].split('.', 1)[1]}`?)" if close else ""
                            self.err(where, f"unknown {kind} type in hashicorp/aws 6.25.0{hint}")
                            continue
                        self.check_body(where, body, entry_schema["schema"], entry_schema["structs"], True)
        return doc


def module_variables(module_dir: Path) -> tuple[set[str], set[str]]:
    names, required = set(), set()
    for f in sorted(module_dir.glob("*.tf")):
        with f.open() as fh:
            doc = hcl2.load(fh)
        for entry in doc.get("variable", []):
            for name, body in entry.items():
                if name.startswith("__"):
                    continue
                name = unq(name)
                names.add(name)
                if "default" not in body:
                    required.add(name)
    return names, required


def main() -> int:
    schema = json.loads(Path(sys.argv[1]).read_text())
    roots = [Path(p).resolve() for p in sys.argv[2:]]
    c = Checker(schema)
    files = 0
    for root in roots:
        for path in sorted(root.rglob("*.tf")):
            if ".terraform" in path.parts:
                continue
            files += 1
            doc = c.check_file(path, root)
            for entry in doc.get("module", []):
                for mname, body in entry.items():
                    if mname.startswith("__"):
                        continue
                    src = unq(str(body.get("source", "")))
                    if not src.startswith("."):
                        continue
                    mdir = (path.parent / src).resolve()
                    names, required = module_variables(mdir)
                    given = {k for k in body if not k.startswith("__") and k not in META_ARGS | {"source", "version"}}
                    where = f"{path.relative_to(root)} module {unq(mname)}"
                    c.checked += 1
                    for k in sorted(given - names):
                        c.unknown(where, k, {n: None for n in names}, "module variable")
                    for k in sorted(required - given):
                        c.err(where, f"required module variable `{k}` is missing")
    for e in c.errors:
        print(f"[schema] {e}")
    print(f"[schema] {files} files, {c.checked} resources/data sources/module calls checked against "
          f"hashicorp/aws 6.25.0: {len(c.errors)} problem(s)")
    return 1 if c.errors else 0


if __name__ == "__main__":
    sys.exit(main())
