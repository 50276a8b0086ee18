// A plain canister that does not speak ICRP: the subject of the snapshot jobs'
// tests and benchmark (tests/integration/test_snapshot_*.py,
// benchmarks/snapshot_bench.py). Snapshots need no cooperation from it.
//
// State in both places a canister keeps it:
// - the heap: a map key -> blob, managed by Motoko's garbage collector, which
//   may move objects between snapshots;
// - stable memory: a Region written at offsets, where bytes stay in place.
// Every write also sets the certified data (the write count, 8 bytes big
// endian), and `arm` sets a one-shot global timer, so a snapshot carries
// both. `stats` reports counts and a fingerprint of the whole state: equal
// state => equal fingerprint, which a restored copy must answer as well.
import Blob "mo:core/Blob";
import CertifiedData "mo:core/CertifiedData";
import Map "mo:core/Map";
import Nat "mo:core/Nat";
import Nat32 "mo:core/Nat32";
import Nat64 "mo:core/Nat64";
import Nat8 "mo:core/Nat8";
import Region "mo:core/Region";
import Runtime "mo:core/Runtime";
import Timer "mo:core/Timer";

persistent actor PlainKv {
  type Stats = {
    entries : Nat;
    heap_bytes : Nat;
    stable_bytes : Nat64; // bytes up to the highest offset written
    writes : Nat;
    ticks : Nat; // timer firings
    fingerprint : Nat64;
  };

  let page : Nat64 = 65536;
  let map = Map.empty<Nat, Blob>();
  let region = Region.new();
  var stableBytes : Nat64 = 0;
  var heapBytes = 0;
  var writes = 0;
  var ticks = 0;

  func wrote() {
    writes += 1;
    let n = Nat64.fromNat(writes);
    CertifiedData.set(
      Blob.fromArray([
        Nat8.fromNat(Nat64.toNat((n >> 56) & 255)),
        Nat8.fromNat(Nat64.toNat((n >> 48) & 255)),
        Nat8.fromNat(Nat64.toNat((n >> 40) & 255)),
        Nat8.fromNat(Nat64.toNat((n >> 32) & 255)),
        Nat8.fromNat(Nat64.toNat((n >> 24) & 255)),
        Nat8.fromNat(Nat64.toNat((n >> 16) & 255)),
        Nat8.fromNat(Nat64.toNat((n >> 8) & 255)),
        Nat8.fromNat(Nat64.toNat(n & 255)),
      ])
    );
  };

  // Heap: insert or replace entries (one ingress message carries up to 2 MiB).
  public func put(entries : [(Nat, Blob)]) : async Nat {
    for ((key, value) in entries.values()) {
      switch (Map.swap(map, Nat.compare, key, value)) {
        case (?old) { heapBytes -= old.size() };
        case null {};
      };
      heapBytes += value.size();
    };
    wrote();
    Map.size(map);
  };

  public func delete(keys : [Nat]) : async Nat {
    for (key in keys.values()) {
      switch (Map.take(map, Nat.compare, key)) {
        case (?old) { heapBytes -= old.size() };
        case null {};
      };
    };
    wrote();
    Map.size(map);
  };

  // Stable memory: write `data` at `offset` of the region, growing it as needed.
  public func store(offset : Nat64, data : Blob) : async Nat64 {
    let end = offset + Nat64.fromNat(data.size());
    let pages = (end + page - 1) / page;
    let have = Region.size(region);
    if (pages > have and Region.grow(region, pages - have) == 0xFFFF_FFFF_FFFF_FFFF) {
      Runtime.trap("stable memory is full");
    };
    Region.storeBlob(region, offset, data);
    if (end > stableBytes) { stableBytes := end };
    wrote();
    stableBytes;
  };

  public query func get(key : Nat) : async ?Blob { Map.get(map, Nat.compare, key) };

  public query func load(offset : Nat64, size : Nat) : async Blob {
    if (offset + Nat64.fromNat(size) > stableBytes) { Runtime.trap("beyond what was written") };
    Region.loadBlob(region, offset, size);
  };

  // A one-shot timer `seconds` from now; it counts a tick when it fires.
  public func arm(seconds : Nat) : async () {
    ignore Timer.setTimer<system>(#seconds seconds, func() : async () { ticks += 1 });
  };

  public query func stats() : async Stats {
    {
      entries = Map.size(map);
      heap_bytes = heapBytes;
      stable_bytes = stableBytes;
      writes;
      ticks;
      fingerprint = fingerprint();
    };
  };

  // FNV-1a over (key, hash of value) of every entry in key order, then over
  // the hashes of the written stable memory in 1 MiB pieces.
  func fingerprint() : Nat64 {
    var h : Nat64 = 0xcbf29ce484222325;
    func mix(x : Nat64) { h := (h ^ x) *% 0x100000001b3 };
    for ((key, value) in Map.entries(map)) {
      mix(Nat64.fromNat(key));
      mix(Nat64.fromNat(value.size()));
      mix(Nat64.fromNat(Nat32.toNat(Blob.hash(value))));
    };
    let piece : Nat64 = 1_048_576;
    var offset : Nat64 = 0;
    while (offset < stableBytes) {
      let n = if (stableBytes - offset < piece) stableBytes - offset else piece;
      mix(Nat64.fromNat(Nat32.toNat(Blob.hash(Region.loadBlob(region, offset, Nat64.toNat(n))))));
      offset += n;
    };
    mix(Nat64.fromNat(writes));
    h;
  };
};
