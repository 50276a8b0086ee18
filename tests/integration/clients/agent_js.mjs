// localnet driven by @dfinity/agent (the JS agent every frontend uses), version
// pinned in tools/clients/package.json. Run by tests/integration/test_official_clients.py:
//
//   node agent_js.mjs CONFIG.json
//
// CONFIG: {"url", "seed_hex" (Ed25519 seed of a controller), "stranger_seed_hex",
// "canisters": [{"id", "subnet_id", "module_hash", "range": [first, last] (the subnet's
// canister range)}], "caller" (optional: a caller
// canister on the first canister's subnet)}. Every check prints one line; the last
// line is "N passed, N failed"; the exit code is 1 if any check failed.
//
// Signature verification stays ON (the agent's default): every query answer must
// carry a node signature that verifies with a node key the agent read from a
// certified read_state of /subnet, through the subnet delegation where there is one.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
// The packages live in tools/clients/node_modules, not beside this script.
const require = createRequire(path.join(config.node_modules, "noop.js"));
const { HttpAgent, Actor, CanisterStatus } = require("@dfinity/agent");
const { IDL } = require("@dfinity/candid");
const { Principal } = require("@dfinity/principal");
const { Ed25519KeyIdentity } = require("@dfinity/identity");

const fromHex = (hex) => Uint8Array.from(Buffer.from(hex, "hex"));
const toHex = (bytes) => Buffer.from(bytes).toString("hex");

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    const detail = await fn();
    passed += 1;
    console.log(`PASS ${name}${detail === undefined ? "" : `: ${detail}`}`);
  } catch (error) {
    failed += 1;
    console.log(`FAIL ${name}: ${error && error.stack ? error.stack : error}`);
  }
}
function expect(condition, message) {
  if (!condition) throw new Error(message);
}
async function expectReject(promise, pattern) {
  try {
    await promise;
  } catch (error) {
    const text = String(error && error.message ? error.message : error);
    expect(pattern.test(text), `rejected, but not with ${pattern}: ${text}`);
    return text.split("\n").find((line) => pattern.test(line)).trim().slice(0, 160);
  }
  throw new Error(`expected a rejection matching ${pattern}`);
}

const counterIdl = ({ IDL }) =>
  IDL.Service({
    inc: IDL.Func([], [IDL.Nat], []),
    get: IDL.Func([], [IDL.Nat], ["query"]),
    whoami: IDL.Func([], [IDL.Principal], ["query"]),
    boom_query: IDL.Func([], [IDL.Nat], ["query"]),
  });
const callerIdl = ({ IDL }) =>
  IDL.Service({ call_inc: IDL.Func([IDL.Principal], [IDL.Nat], []) });
// The part of the management canister's ic.did these checks use.
const managementIdl = ({ IDL }) => {
  const canisterId = IDL.Record({ canister_id: IDL.Principal });
  const snapshot = IDL.Record({
    id: IDL.Vec(IDL.Nat8),
    taken_at_timestamp: IDL.Nat64,
    total_size: IDL.Nat64,
  });
  return IDL.Service({
    canister_status: IDL.Func(
      [canisterId],
      [
        IDL.Record({
          status: IDL.Variant({ running: IDL.Null, stopping: IDL.Null, stopped: IDL.Null }),
          module_hash: IDL.Opt(IDL.Vec(IDL.Nat8)),
          cycles: IDL.Nat,
          memory_size: IDL.Nat,
        }),
      ],
      [],
    ),
    list_canister_snapshots: IDL.Func([canisterId], [IDL.Vec(snapshot)], []),
    provisional_create_canister_with_cycles: IDL.Func(
      [
        IDL.Record({
          amount: IDL.Opt(IDL.Nat),
          settings: IDL.Opt(IDL.Record({ controllers: IDL.Opt(IDL.Vec(IDL.Principal)) })),
          specified_id: IDL.Opt(IDL.Principal),
        }),
      ],
      [canisterId],
      [],
    ),
    take_canister_snapshot: IDL.Func(
      [
        IDL.Record({
          canister_id: IDL.Principal,
          replace_snapshot: IDL.Opt(IDL.Vec(IDL.Nat8)),
        }),
      ],
      [snapshot],
      [],
    ),
  });
};

async function agentFor(seedHex) {
  return HttpAgent.create({
    host: config.url,
    identity: Ed25519KeyIdentity.fromSecretKey(fromHex(seedHex)),
    shouldFetchRootKey: true, // a local network: trust the key /api/v2/status publishes
    verifyQuerySignatures: true,
  });
}

function management(agent, canisterId) {
  return Actor.createActor(managementIdl, {
    agent,
    canisterId: Principal.managementCanister(),
    effectiveCanisterId: canisterId,
  });
}

const controller = await agentFor(config.seed_hex);
const stranger = await agentFor(config.stranger_seed_hex);
const me = await controller.getPrincipal();

await check("root key fetched from /api/v2/status", async () => {
  expect(controller.rootKey && controller.rootKey.byteLength === 133, "no 133-byte BLS root key");
});

for (const [index, entry] of config.canisters.entries()) {
  const canisterId = Principal.fromText(entry.id);
  const label = `subnet ${index} (${entry.id})`;
  const counter = Actor.createActor(counterIdl, { agent: controller, canisterId });

  await check(`${label}: update call (certified reply)`, async () => {
    const before = await counter.inc();
    const after = await counter.inc();
    expect(after === before + 1n, `inc went from ${before} to ${after}`);
    return `inc -> ${after}`;
  });
  await check(`${label}: query with node signature verified`, async () => {
    const value = await counter.get();
    expect(value >= 2n, `get returned ${value}`);
    return `get -> ${value}`;
  });
  await check(`${label}: query sees the caller`, async () => {
    const caller = await counter.whoami();
    expect(caller.toText() === me.toText(), `whoami: ${caller.toText()} != ${me.toText()}`);
  });
  await check(`${label}: rejected query (signed reject) surfaces as an error`, async () =>
    expectReject(counter.boom_query(), /query boom|trapped/i),
  );
  await check(`${label}: CanisterStatus time, controllers, module_hash, subnet`, async () => {
    const status = await CanisterStatus.request({
      canisterId,
      agent: controller,
      paths: ["time", "controllers", "module_hash", "subnet"],
    });
    const controllers = status.get("controllers").map((p) => p.toText());
    expect(controllers.includes(me.toText()), `controllers ${controllers} lack ${me.toText()}`);
    expect(status.get("module_hash") === entry.module_hash, `module_hash ${status.get("module_hash")}`);
    const subnet = status.get("subnet");
    expect(subnet && subnet.subnetId === entry.subnet_id, `subnet ${subnet && subnet.subnetId}`);
    expect(subnet.nodeKeys.size >= 1, "no node keys");
    expect(status.get("time") instanceof Date, "no time");
    return `subnet ${subnet.subnetId}, ${subnet.nodeKeys.size} node key(s)`;
  });
  await check(`${label}: fetchSubnetKeys`, async () => {
    const subnet = await controller.fetchSubnetKeys(canisterId);
    expect(subnet && subnet.subnetId === entry.subnet_id, `subnet ${subnet && subnet.subnetId}`);
  });
  await check(`${label}: management canister_status as controller`, async () => {
    const status = await management(controller, canisterId).canister_status({
      canister_id: canisterId,
    });
    expect("running" in status.status, `status ${JSON.stringify(Object.keys(status.status))}`);
    expect(toHex(status.module_hash[0]) === entry.module_hash, "module hash differs");
    return `cycles ${status.cycles}`;
  });
  await check(`${label}: management snapshot take + list as controller`, async () => {
    const ic = management(controller, canisterId);
    const taken = await ic.take_canister_snapshot({ canister_id: canisterId, replace_snapshot: [] });
    const listed = await ic.list_canister_snapshots({ canister_id: canisterId });
    expect(
      listed.some((s) => toHex(s.id) === toHex(taken.id)),
      `snapshot ${toHex(taken.id)} not listed`,
    );
    return `${listed.length} snapshot(s)`;
  });
  await check(`${label}: create a canister on this subnet (effective canister id)`, async () => {
    // As on PocketIC: the effective canister id of the creation chooses the subnet.
    const [first, last] = entry.range.map((text) => Principal.fromText(text));
    const ic = management(controller, first);
    const { canister_id: created } = await ic.provisional_create_canister_with_cycles({
      amount: [],
      settings: [{ controllers: [[me]] }],
      specified_id: [],
    });
    expect(created.gtEq(first) && created.ltEq(last), `${created.toText()} outside ${entry.range}`);
    const status = await management(controller, created).canister_status({ canister_id: created });
    expect(status.module_hash.length === 0, "a new canister has no module");
    return `created ${created.toText()}`;
  });
  await check(`${label}: management canister_status as a stranger is refused`, async () =>
    expectReject(
      management(stranger, canisterId).canister_status({ canister_id: canisterId }),
      /controllers|not authorized|IC0512|Only/i,
    ),
  );
}

if (config.caller) {
  const target = config.canisters[config.canisters.length - 1];
  await check(`inter-canister call ${config.caller} -> ${target.id}`, async () => {
    const caller = Actor.createActor(callerIdl, {
      agent: controller,
      canisterId: Principal.fromText(config.caller),
    });
    const value = await caller.call_inc(Principal.fromText(target.id));
    expect(value > 0n, `call_inc returned ${value}`);
    return `call_inc -> ${value}`;
  });
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
