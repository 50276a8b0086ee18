// Test canister for the sandbox's atomic executions (tests/localnet/test_sandbox_rollback.py).
//
// `apply` runs a batch of state changes (heap collections, a Region in stable
// memory, large allocations that grow the Wasm memory) and then ends as the
// test asks: commit, trap, or spin until the instruction limit stops it.
// `summary` and `regionRead` let the test compare the canister's logical
// state with its own model.
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Nat8 "mo:core/Nat8";
import Nat64 "mo:core/Nat64";
import Region "mo:core/Region";
import Runtime "mo:core/Runtime";

persistent actor {
  type Op = {
    #put : { key : Nat; size : Nat; fill : Nat8 };
    #remove : Nat;
    #regionWrite : { offset : Nat64; size : Nat; fill : Nat8 };
    #regionGrow : Nat64;
    #hold : { size : Nat; fill : Nat8 }; // keeps a large blob: grows the heap
    #release; // drops every held blob
  };
  type Ending = { #commit; #trap; #spin };
  type Summary = {
    applied : Nat;
    entries : [(Nat, Nat, Nat8)]; // key, value size, fill byte
    regionPages : Nat64;
    held : [(Nat, Nat8)];
  };

  let map = Map.empty<Nat, Blob>();
  let region = Region.new();
  var held : [Blob] = [];
  var applied = 0;

  func filled(size : Nat, fill : Nat8) : Blob = Blob.fromArray(Array.repeat<Nat8>(fill, size));

  func firstByte(b : Blob) : Nat8 = if (b.size() == 0) 0 else b.get(0);

  func run(op : Op) {
    switch op {
      case (#put { key; size; fill }) { Map.add(map, Nat.compare, key, filled(size, fill)) };
      case (#remove key) { Map.remove(map, Nat.compare, key) };
      case (#regionWrite { offset; size; fill }) {
        Region.storeBlob(region, offset, filled(size, fill));
      };
      case (#regionGrow pages) {
        if (Region.grow(region, pages) == 0xFFFF_FFFF_FFFF_FFFF) {
          Runtime.trap("region grow failed");
        };
      };
      case (#hold { size; fill }) { held := Array.concat(held, [filled(size, fill)]) };
      case (#release) { held := [] };
    };
  };

  public func apply(ops : [Op], ending : Ending) : async Nat {
    applied += 1;
    for (op in ops.vals()) { run(op) };
    switch ending {
      case (#commit) {};
      case (#trap) { Runtime.trap("trap requested after " # Nat.toText(ops.size()) # " ops") };
      case (#spin) { var i = 0; loop { i += 1 } };
    };
    applied;
  };

  public query func summary() : async Summary {
    {
      applied;
      entries = Array.map<(Nat, Blob), (Nat, Nat, Nat8)>(
        Map.toArray(map),
        func((k, v)) = (k, v.size(), firstByte(v)),
      );
      regionPages = Region.size(region);
      held = Array.map<Blob, (Nat, Nat8)>(held, func b = (b.size(), firstByte(b)));
    };
  };

  public query func regionRead(offset : Nat64, size : Nat) : async Blob {
    Region.loadBlob(region, offset, size);
  };

  // A query that changes state: the change must never persist.
  public query func mutateInQuery() : async Nat {
    applied += 1000;
    Map.add(map, Nat.compare, 999_999, filled(100, 9));
    held := Array.concat(held, [filled(1_000_000, 7)]);
    applied;
  };

  // A held blob as the reply (large replies, for throughput measurements).
  public query func heldBlob(index : Nat) : async Blob { held[index] };
};
