// Compile ProtocolState.sol with the pinned solcjs (package-lock.json) through its standard-JSON
// API, offline, and write <outDir>/ProtocolState.json = { contractName, compiler, settings, abi,
// bytecode, deployedBytecode }. Usage: node build.mjs [outDir]   (default: out)
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const solc = require("solc");
const here = dirname(fileURLToPath(import.meta.url));
const outDir = process.argv[2] ?? join(here, "out");

const SOURCE = "ProtocolState.sol";
const NAME = "ProtocolState";
const settings = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 200 },
  viaIR: true,
  // No metadata hash: the bytecode depends on the source and the settings only, not on paths.
  metadata: { bytecodeHash: "none", appendCBOR: false },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "evm.methodIdentifiers"] } },
};
const input = {
  language: "Solidity",
  sources: { [SOURCE]: { content: readFileSync(join(here, SOURCE), "utf8") } },
  settings,
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const problems = (output.errors ?? []).filter((e) => e.severity === "error" || e.type === "Warning");
for (const e of output.errors ?? []) console.error(e.formattedMessage);
if (problems.length > 0) {
  console.error(`build failed: ${problems.length} error(s)/warning(s)`);
  process.exit(1);
}
const c = output.contracts[SOURCE][NAME];
const artifact = {
  contractName: NAME,
  compiler: `solc ${solc.version()}`,
  settings: { evmVersion: settings.evmVersion, optimizer: settings.optimizer, viaIR: settings.viaIR },
  abi: c.abi,
  bytecode: "0x" + c.evm.bytecode.object,
  deployedBytecode: "0x" + c.evm.deployedBytecode.object,
  methodIdentifiers: c.evm.methodIdentifiers,
};
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, `${NAME}.json`), JSON.stringify(artifact, null, 2) + "\n");
console.log(`wrote ${join(outDir, NAME + ".json")} (${(c.evm.deployedBytecode.object.length / 2) | 0} bytes runtime)`);
