// Test canister for localnet's replica: state, traps, rejects, callers, time,
// a large heap for throughput measurements, and an ordered log for call ordering.
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import Error "mo:core/Error";
import List "mo:core/List";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import Nat8 "mo:core/Nat8";
import Principal "mo:core/Principal";
import Region "mo:core/Region";
import Runtime "mo:core/Runtime";
import Time "mo:core/Time";

persistent actor Counter {
  var count : Nat = 0;
  let events = List.empty<Nat>();
  var chunks : [Blob] = [];
  let scratch : Region = Region.new();

  public func inc() : async Nat { count += 1; count };
  public query func get() : async Nat { count };
  public func set(n : Nat) : async () { count := n };

  // Changes state, then traps: the change must be rolled back.
  public func boom() : async () { count += 1000; Runtime.trap("boom") };

  // Rejects explicitly (reject code 4) after changing state, which persists.
  public func refuse() : async Nat { count += 1; throw Error.reject("refused on purpose") };

  // A query that changes state: the change must never persist.
  public query func mutating_query() : async Nat { count += 1; count };
  public query func boom_query() : async Nat { Runtime.trap("query boom") };

  public query ({ caller }) func whoami() : async Principal { caller };
  public shared ({ caller }) func whoami_update() : async Principal { caller };
  public query func now() : async Int { Time.now() };

  // Ordered log, to check that calls between a pair of canisters keep their order.
  public func append(x : Nat) : async () { List.add(events, x) };
  public query func log() : async [Nat] { List.toArray(events) };

  // Fill the heap with `count2` blobs of 2 MiB each (distinct contents).
  public func fill(count2 : Nat) : async Nat {
    let size : Nat = 2 * 1024 * 1024;
    if (Region.size(scratch) == 0) { ignore Region.grow(scratch, 32) };
    let seed = Blob.fromArray(Array.tabulate<Nat8>(size, func i = Nat8.fromNat(i % 251)));
    Region.storeBlob(scratch, 0, seed);
    var acc = chunks;
    var i = chunks.size();
    let target = chunks.size() + count2;
    while (i < target) {
      Region.storeNat64(scratch, 0, Nat64.fromNat(i));
      acc := Array.concat(acc, [Region.loadBlob(scratch, 0, size)]);
      i += 1;
    };
    chunks := acc;
    chunks.size()
  };
  public query func chunk(i : Nat) : async Blob { chunks[i] };
  public query func chunk_count() : async Nat { chunks.size() };

  // Spin for `n` iterations (instruction-limit tests).
  public func spin(n : Nat) : async Nat {
    var i = 0;
    var acc = 0;
    while (i < n) { acc := (acc + i * 7) % 1_000_003; i += 1 };
    acc
  };

  public query func echo_size(b : Blob) : async Nat { b.size() };
  public func store_size(b : Blob) : async Nat { b.size() };
  public query func big_reply(n : Nat) : async Blob {
    Blob.fromArray(Array.tabulate<Nat8>(n, func _ = 7))
  };
  public query func principal_text() : async Text { Principal.toText(Principal.fromActor(Counter)) };
  public query func text_of(n : Nat) : async Text { Nat.toText(n) };
};
