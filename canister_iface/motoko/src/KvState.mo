/// A ready-made replicable state: an ordered key-value store (Blob → Blob)
/// in a persistent (immutable) map, with everything ICRP needs.
///
/// - Freezing for an export is O(1): the producer keeps the map's root,
///   which later changes do not touch, and serialises it in steps.
/// - Restoring builds a new map on the side and swaps it in at the end.
/// - `entriesFrom` walks the tree from a key, for key ranges.
/// - A fingerprint (a 64-bit sum of per-record hashes) is maintained
///   incrementally, so two replicas can be compared cheaply.
///
/// Image format (version 1): magic "ICRPKV" 0x00 0x01, record count (u64
/// LE), then per record: key length (u32 LE), key, value length (u32 LE),
/// value, in ascending key order.

import Blob "mo:core/Blob";
import Iter "mo:core/Iter";
import Map "mo:core/pure/Map";
import Nat "mo:core/Nat";
import Nat32 "mo:core/Nat32";
import Nat64 "mo:core/Nat64";
import Region "mo:core/Region";
import CoreTypes "mo:core/Types";
import Types "Types";

module {

  public type KvState = {
    var map : Map.Map<Blob, Blob>;
    var bytes : Nat; // sum of key and value sizes
    var fingerprint : Nat64;
  };

  let MAGIC : Blob = "ICRPKV\00\01";

  public func empty() : KvState {
    { var map = Map.empty<Blob, Blob>(); var bytes = 0; var fingerprint = 0 };
  };

  public func size(self : KvState) : Nat = Map.size(self.map);

  public func get(self : KvState, key : Blob) : ?Blob {
    Map.get(self.map, Blob.compare, key);
  };

  public func put(self : KvState, key : Blob, value : Blob) {
    let (map, old) = Map.swap(self.map, Blob.compare, key, value);
    self.map := map;
    switch old {
      case (?v) forget(self, key, v);
      case null {};
    };
    self.bytes += key.size() + value.size();
    self.fingerprint +%= recordHash(key, value);
  };

  /// Removes `key`; false if it was absent.
  public func delete(self : KvState, key : Blob) : Bool {
    let (map, old) = Map.take(self.map, Blob.compare, key);
    self.map := map;
    switch old {
      case (?v) { forget(self, key, v); true };
      case null false;
    };
  };

  func forget(self : KvState, key : Blob, value : Blob) {
    self.bytes -= key.size() + value.size();
    self.fingerprint -%= recordHash(key, value);
  };

  /// A 64-bit hash of one record. Built from the runtime's native blob hash
  /// (about 25 instructions per byte, an order of magnitude cheaper than
  /// SHA-256), mixed with the lengths and finalised with SplitMix64.
  public func recordHash(key : Blob, value : Blob) : Nat64 {
    let hk = Nat64.fromNat32(Blob.hash(key));
    let hv = Nat64.fromNat32(Blob.hash(value));
    var x = (hk << 32 | hv) ^ (Nat64.fromNat(value.size()) *% 0x9e37_79b9_7f4a_7c15) ^ Nat64.fromNat(key.size());
    x := (x ^ (x >> 30)) *% 0xbf58_476d_1ce4_e5b9;
    x := (x ^ (x >> 27)) *% 0x94d0_49bb_1331_11eb;
    x ^ (x >> 31);
  };

  // ---- ordered iteration ----------------------------------------------------

  type Tree = CoreTypes.Pure.Map.Tree<Blob, Blob>;
  type Node = (Tree, Blob, Blob, Tree);

  func node(t : Tree) : ?Node {
    switch t {
      case (#red n) ?n;
      case (#black n) ?n;
      case (#leaf) null;
    };
  };

  /// Records with key >= from, in ascending key order. The iterator walks
  /// an immutable tree, so it stays valid while the store changes.
  public func entriesFrom(self : KvState, from : Blob) : Iter.Iter<(Blob, Blob)> {
    var stack : CoreTypes.Pure.List<Node> = null;
    // The path to the first key >= from: every node on it with key >= from
    // is visited after its left subtree.
    var t = self.map.root;
    label descend loop {
      switch (node(t)) {
        case null break descend;
        case (?n) {
          if (n.1 >= from) {
            stack := ?(n, stack);
            t := n.0;
          } else t := n.3;
        };
      };
    };
    object {
      public func next() : ?(Blob, Blob) {
        switch stack {
          case null null;
          case (?((_, k, v, right), rest)) {
            stack := rest;
            var r = right;
            label spine loop {
              switch (node(r)) {
                case null break spine;
                case (?n) {
                  stack := ?(n, stack);
                  r := n.0;
                };
              };
            };
            ?(k, v);
          };
        };
      };
    };
  };

  /// The store interface for key ranges and journal replay.
  public func store(self : KvState) : Types.Store {
    {
      entriesFrom = func(from : Blob) : Iter.Iter<(Blob, Blob)> = entriesFrom(self, from);
      put = func(key : Blob, value : Blob) = put(self, key, value);
      delete = func(key : Blob) = ignore delete(self, key);
    };
  };

  /// Everything the ICRP node needs to replicate this store.
  public func hooks(self : KvState) : Types.Hooks {
    {
      freeze = func() : Types.Producer = producer(self);
      restorer = func() : Types.Restorer = restorer(self);
      store = ?store(self);
      applyApp = null;
    };
  };

  // ---- image ----------------------------------------------------------------

  /// Freezes the current map and returns a producer serialising it.
  public func producer(self : KvState) : Types.Producer {
    let frozen = self.map;
    let records = Map.entries(frozen);
    var headerDone = false;
    object {
      public func next(sink : Types.Sink, more : () -> Bool) : Bool {
        if (not headerDone) {
          sink.append(MAGIC);
          sink.appendNat64(Nat64.fromNat(Map.size(frozen)));
          headerDone := true;
        };
        while (more()) {
          switch (records.next()) {
            case null return true;
            case (?(key, value)) {
              sink.appendNat32(Nat32.fromNat(key.size()));
              sink.append(key);
              sink.appendNat32(Nat32.fromNat(value.size()));
              sink.append(value);
            };
          };
        };
        false;
      };
    };
  };

  /// A restorer building a new map from an image; `install` swaps it in.
  public func restorer(self : KvState) : Types.Restorer {
    var map = Map.empty<Blob, Blob>();
    var bytes = 0;
    var fingerprint : Nat64 = 0;
    var expected : ?Nat = null; // record count, once the header is read
    var read = 0;
    object {
      public func next(source : Types.Source, more : () -> Bool) : { #ok : Bool; #err : Text } {
        let r = source.region;
        if (expected == null) {
          if (source.end - source.pos < 16) return #err("image too short for a KvState header");
          if (Region.loadBlob(r, source.pos, 8) != MAGIC) return #err("not a KvState image (bad magic or format version)");
          expected := ?Nat64.toNat(Region.loadNat64(r, source.pos + 8));
          source.pos += 16;
        };
        let count = switch expected { case (?n) n; case null 0 };
        while (read < count) {
          if (not more()) return #ok(false);
          let key = switch (field(source)) { case (?b) b; case null return #err(truncated(read)) };
          let value = switch (field(source)) { case (?b) b; case null return #err(truncated(read)) };
          map := Map.add(map, Blob.compare, key, value);
          bytes += key.size() + value.size();
          fingerprint +%= recordHash(key, value);
          read += 1;
        };
        if (source.pos != source.end) {
          return #err(Nat64.toText(source.end - source.pos) # " bytes after the last record");
        };
        if (Map.size(map) != count) return #err("duplicate keys in the image");
        #ok(true);
      };
      public func install() {
        self.map := map;
        self.bytes := bytes;
        self.fingerprint := fingerprint;
      };
    };
  };

  /// A length-prefixed field at `source.pos`, or null if it overruns the
  /// image.
  func field(source : Types.Source) : ?Blob {
    if (source.end - source.pos < 4) return null;
    let n = Nat64.fromNat32(Region.loadNat32(source.region, source.pos));
    if (source.end - source.pos - 4 < n) return null;
    let b = Region.loadBlob(source.region, source.pos + 4, Nat64.toNat(n));
    source.pos += 4 + n;
    ?b;
  };

  func truncated(record : Nat) : Text {
    "image truncated in record " # Nat.toText(record);
  };

};
