/// Key ranges of key-value state: export, import and delete by range, for
/// splitting a canister into shards.
///
/// A range holds the keys k with lower <= k < upper (byte-wise order);
/// `upper = null` is unbounded. Cursors are inclusive: a cursor is the key
/// to continue at, so a repeated call with the same cursor returns the same
/// records (retries are harmless).

import List "mo:core/List";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import Types "Types";

module {

  /// Room left in a response for the Candid envelope of a batch.
  let ENVELOPE = 65_536;

  /// Per-record overhead in byte budgets.
  let RECORD_OVERHEAD = 16;

  public func contains(range : Types.KeyRange, key : Blob) : Bool {
    key >= range.lower and (
      switch (range.upper) {
        case null true;
        case (?upper) key < upper;
      }
    );
  };

  /// Null when the range is well-formed.
  public func validate(range : Types.KeyRange) : ?Text {
    switch (range.upper) {
      case (?upper) if (upper <= range.lower) return ?"key range is empty: upper must be greater than lower";
      case null {};
    };
    null;
  };

  /// Where a scan of `range` starts: at the cursor if it lies past `lower`.
  public func startKey(range : Types.KeyRange, cursor : ?Blob) : Blob {
    switch cursor {
      case (?c) if (c > range.lower) c else range.lower;
      case null range.lower;
    };
  };

  /// Records of `range` from `cursor` on, about `maxBytes` of them (at least
  /// one if any). `next` is the key to continue at, null at the end.
  public func export(store : Types.Store, range : Types.KeyRange, cursor : ?Blob, maxBytes : Nat64) : {
    records : [Types.Record];
    next : ?Blob;
  } {
    let limit = Nat.min(Nat64.toNat(maxBytes), Nat64.toNat(Types.MAX_TRANSFER) - ENVELOPE);
    let out = List.empty<Types.Record>();
    var taken = 0;
    for ((key, value) in store.entriesFrom(startKey(range, cursor))) {
      if (not contains(range, key)) return { records = List.toArray(out); next = null };
      let size = key.size() + value.size() + RECORD_OVERHEAD;
      if (List.size(out) > 0 and taken + size > limit) {
        return { records = List.toArray(out); next = ?key };
      };
      List.add(out, { key; value });
      taken += size;
    };
    { records = List.toArray(out); next = null };
  };

  /// The keys of up to `maxRecords` records of `range` from `cursor` on,
  /// their sizes (key and value bytes), and the key to continue at (null
  /// when none are left). Collected before deleting, since deleting while
  /// iterating is not safe for every store.
  public func keysToDelete(store : Types.Store, range : Types.KeyRange, cursor : ?Blob, maxRecords : Nat) : {
    keys : [Blob];
    sizes : [Nat];
    next : ?Blob;
  } {
    let keys = List.empty<Blob>();
    let sizes = List.empty<Nat>();
    func done(next : ?Blob) : { keys : [Blob]; sizes : [Nat]; next : ?Blob } {
      { keys = List.toArray(keys); sizes = List.toArray(sizes); next };
    };
    for ((key, value) in store.entriesFrom(startKey(range, cursor))) {
      if (not contains(range, key)) return done(null);
      if (List.size(keys) == maxRecords) return done(?key);
      List.add(keys, key);
      List.add(sizes, key.size() + value.size());
    };
    done(null);
  };

};
