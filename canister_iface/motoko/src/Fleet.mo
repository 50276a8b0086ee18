/// A fleet: the canisters an application created or was told about (one
/// per user, say), listed in pages for the orchestrator
/// (`icrp_fleet_members`), so it can back every one of them up.
///
/// The members live in the application's key-value store, under a key
/// prefix: key = prefix ‖ principal bytes, value = be64(added_at) ‖
/// anything the application keeps with the member. So the index is part of
/// the application's replicable state (its image and journal), and pages
/// come out in ascending principal order (bytewise) for free.

import Array "mo:core/Array";
import Blob "mo:core/Blob";
import List "mo:core/List";
import Nat "mo:core/Nat";
import Nat8 "mo:core/Nat8";
import Nat64 "mo:core/Nat64";
import Principal "mo:core/Principal";
import Types "Types";

module {

  /// Most members per page.
  public let MAX_PAGE = 5_000;

  /// What a node needs to list a fleet.
  public type Fleet = {
    /// Members from `cursor` on (inclusive), at most `limit` of them.
    page : (cursor : ?Principal, limit : Nat) -> Types.FleetPage;
  };

  /// The store key of a member.
  public func key(prefix : Blob, canister : Principal) : Blob {
    Blob.fromArray(Array.concat(Blob.toArray(prefix), Blob.toArray(Principal.toBlob(canister))));
  };

  /// The stored value of a member: when it was added, then `extra`.
  public func value(addedAt : Nat64, extra : Blob) : Blob {
    let time = Array.tabulate<Nat8>(8, func i = Nat8.fromNat64((addedAt >> Nat64.fromNat(56 - 8 * i)) & 0xff));
    Blob.fromArray(Array.concat(time, Blob.toArray(extra)));
  };

  /// What the application keeps with a member (after the time).
  public func extra(value : Blob) : Blob {
    let bytes = Blob.toArray(value);
    Blob.fromArray(Array.sliceToArray(bytes, Nat.min(8, bytes.size()), bytes.size()));
  };

  /// A fleet kept in `store` under `prefix`.
  public func inStore(store : Types.Store, prefix : Blob) : Fleet {
    {
      page = func(cursor : ?Principal, limit : Nat) : Types.FleetPage {
        let from = switch cursor { case (?c) key(prefix, c); case null prefix };
        let max = Nat.max(1, Nat.min(limit, MAX_PAGE));
        let out = List.empty<Types.FleetMember>();
        for ((k, v) in store.entriesFrom(from)) {
          if (not hasPrefix(k, prefix)) return { members = List.toArray(out); next_cursor = null };
          let canister = Principal.fromBlob(suffix(k, prefix.size()));
          if (List.size(out) == max) return { members = List.toArray(out); next_cursor = ?canister };
          List.add(out, { canister; added_at = time(v) });
        };
        { members = List.toArray(out); next_cursor = null };
      };
    };
  };

  /// How many members `store` holds under `prefix` (walks them all).
  public func count(store : Types.Store, prefix : Blob) : Nat {
    var n = 0;
    label walk for ((k, _) in store.entriesFrom(prefix)) {
      if (not hasPrefix(k, prefix)) break walk;
      n += 1;
    };
    n;
  };

  func hasPrefix(key : Blob, prefix : Blob) : Bool {
    if (key.size() < prefix.size()) return false;
    var i = 0;
    while (i < prefix.size()) {
      if (key[i] != prefix[i]) return false;
      i += 1;
    };
    true;
  };

  func suffix(key : Blob, from : Nat) : Blob {
    let bytes = Blob.toArray(key);
    Blob.fromArray(Array.sliceToArray(bytes, from, bytes.size()));
  };

  func time(value : Blob) : Nat64 {
    var x : Nat64 = 0;
    var i = 0;
    while (i < 8 and i < value.size()) {
      x := (x << 8) | Nat64.fromNat(Nat8.toNat(value[i]));
      i += 1;
    };
    x;
  };

};
