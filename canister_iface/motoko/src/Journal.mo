/// A bounded journal of state changes for incremental sync (hot standby).
///
/// Every change gets the next sequence number and the time it was made
/// (replicated changes keep their source's time, so a standby's journal
/// says how old the state it holds is). The journal keeps the newest
/// changes in a ring buffer bounded by a count and a byte budget; when it
/// drops old changes, readers that are further behind get `TooOld` and must
/// transfer a full image first.
///
/// Invariant: the journal holds *every* change with base < seq <= head.
/// A standby that replays filtered batches (see `advance`) keeps the
/// invariant because a batch covers its whole interval.

import List "mo:core/List";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import Option "mo:core/Option";
import Runtime "mo:core/Runtime";
import VarArray "mo:core/VarArray";
import KeyRange "KeyRange";
import Types "Types";

module {

  public type State = {
    var ring : [var ?Types.Change];
    var start : Nat; // ring index of the oldest change
    var count : Nat;
    var bytes : Nat;
    var head : Nat64; // newest sequence number covered
    var base : Nat64; // the journal covers (base, head]
    var maxEntries : Nat;
    var maxBytes : Nat;
  };

  /// Smallest ring allocated once the first change arrives.
  let MIN_RING = 16;

  /// Room left in a response for the Candid envelope of a batch.
  let ENVELOPE = 65_536;

  /// Changes a filtered read looks at per call at most: bounds its
  /// instructions (a few hundred per change) whatever the filter matches.
  public let MAX_SCAN = 100_000;

  public func new(maxEntries : Nat, maxBytes : Nat) : State {
    {
      var ring = [var];
      var start = 0;
      var count = 0;
      var bytes = 0;
      var head = 0;
      var base = 0;
      var maxEntries = maxEntries;
      var maxBytes = maxBytes;
    };
  };

  /// Approximate encoded size of a change, for byte budgets.
  public func changeSize(change : Types.Change) : Nat {
    48 + (
      switch (change.op) {
        case (#put { key; value }) key.size() + value.size();
        case (#delete { key }) key.size();
        case (#app bytes) bytes.size();
      }
    );
  };

  /// Records a local change and returns its sequence number.
  public func record(self : State, op : Types.Op, time : Nat64) : Nat64 {
    let seq = self.head + 1;
    push(self, { seq; time; op });
    seq;
  };

  /// Records a change replicated from a source, keeping its sequence
  /// number, which must be above `head`.
  public func replay(self : State, change : Types.Change) {
    assert change.seq > self.head;
    push(self, change);
  };

  /// Moves `head` forward to `seq` without changes: a filtered batch
  /// covered (head, seq] and nothing in it concerned this canister.
  public func advance(self : State, seq : Nat64) {
    if (seq > self.head) self.head := seq;
  };

  /// Forgets all changes; the state now corresponds to `seq` (after a full
  /// image was installed).
  public func reset(self : State, seq : Nat64) {
    self.ring := [var];
    self.start := 0;
    self.count := 0;
    self.bytes := 0;
    self.head := seq;
    self.base := seq;
  };

  /// Changes the bounds, dropping the oldest changes if needed.
  public func configure(self : State, maxEntries : Nat, maxBytes : Nat) {
    self.maxEntries := maxEntries;
    self.maxBytes := maxBytes;
    while (self.count > 0 and (self.count > maxEntries or self.bytes > maxBytes)) evictOldest(self);
    if (self.count == 0) self.base := self.head;
  };

  public func info(self : State) : Types.JournalInfo {
    {
      head_seq = self.head;
      oldest_seq = self.base;
      entries = Nat64.fromNat(self.count);
      bytes = Nat64.fromNat(self.bytes);
    };
  };

  /// Whether a change belongs to a range-filtered batch: puts and deletes
  /// of keys in the range, and every application-defined change (it names
  /// no key, so only the app can tell).
  public func inRange(change : Types.Change, range : Types.KeyRange) : Bool {
    switch (change.op) {
      case (#put { key }) KeyRange.contains(range, key);
      case (#delete { key }) KeyRange.contains(range, key);
      case (#app _) true;
    };
  };

  /// The changes after `since`, about `maxBytes` of them (at least one if
  /// any), only those in `range` if one is given. See `icrp_changes`.
  public func changes(self : State, since : Nat64, maxBytes : Nat64, range : ?Types.KeyRange) : Types.Result<Types.ChangeBatch> {
    switch (checkSince(self, since)) { case (?e) return #err e; case null {} };
    let limit = Nat.min(Nat64.toNat(maxBytes), Nat64.toNat(Types.MAX_TRANSFER) - ENVELOPE);
    let first = firstAfter(self, since);
    var i = first;
    var taken = 0;
    var toSeq = self.head;
    let out = List.empty<Types.Change>();
    label collect while (i < self.count) {
      let c = at(self, i);
      if (Option.isSome(range) and i - first >= MAX_SCAN) {
        // Scanned enough for one call: cover what was looked at.
        toSeq := at(self, i - 1).seq;
        break collect;
      };
      let wanted = switch range { case (?r) inRange(c, r); case null true };
      if (wanted) {
        let size = changeSize(c);
        if (List.size(out) > 0 and taken + size > limit) {
          // Something was left out: the batch covers up to the change
          // before it (changes skipped by the filter included).
          toSeq := c.seq - 1;
          break collect;
        };
        List.add(out, c);
        taken += size;
      };
      i += 1;
    };
    #ok {
      from_seq = since;
      to_seq = toSeq;
      head_seq = self.head;
      changes = List.toArray(out);
    };
  };

  /// How far a replica at `since` is behind. See `icrp_backlog`.
  public func backlog(self : State, since : Nat64) : Types.Result<Types.Backlog> {
    switch (checkSince(self, since)) { case (?e) return #err e; case null {} };
    let first = firstAfter(self, since);
    var bytes = 0;
    var i = first;
    while (i < self.count) {
      bytes += changeSize(at(self, i));
      i += 1;
    };
    #ok {
      since_seq = since;
      head_seq = self.head;
      changes = Nat64.fromNat(self.count - first);
      bytes = Nat64.fromNat(bytes);
      oldest_time = if (first < self.count) ?at(self, first).time else null;
      head_time = if (self.count > 0) ?at(self, self.count - 1).time else null;
    };
  };

  func checkSince(self : State, since : Nat64) : ?Types.Error {
    if (since > self.head) {
      return ?#InvalidArgument("since_seq " # Nat64.toText(since) # " is ahead of the journal head " # Nat64.toText(self.head));
    };
    if (since < self.base) return ?#TooOld { oldest_seq = self.base };
    null;
  };

  // ---- ring buffer --------------------------------------------------------

  func push(self : State, change : Types.Change) {
    self.head := change.seq;
    if (self.maxEntries == 0) {
      // Journal disabled: it covers nothing.
      self.base := self.head;
      return;
    };
    if (self.count == self.maxEntries) evictOldest(self);
    if (self.count == self.ring.size()) grow(self);
    let cap = self.ring.size();
    self.ring[(self.start + self.count) % cap] := ?change;
    self.count += 1;
    self.bytes += changeSize(change);
    while (self.count > 0 and self.bytes > self.maxBytes) evictOldest(self);
  };

  func evictOldest(self : State) {
    let c = unwrap(self.ring[self.start]);
    self.ring[self.start] := null;
    self.start := (self.start + 1) % self.ring.size();
    self.count -= 1;
    self.bytes -= changeSize(c);
    self.base := c.seq;
  };

  func grow(self : State) {
    let cap = Nat.min(Nat.max(2 * self.ring.size(), MIN_RING), self.maxEntries);
    let ring = VarArray.repeat<?Types.Change>(null, cap);
    var i = 0;
    while (i < self.count) {
      ring[i] := self.ring[(self.start + i) % self.ring.size()];
      i += 1;
    };
    self.ring := ring;
    self.start := 0;
  };

  /// The i-th oldest change held.
  func at(self : State, i : Nat) : Types.Change {
    unwrap(self.ring[(self.start + i) % self.ring.size()]);
  };

  /// Index of the first held change with seq > since (count if none).
  func firstAfter(self : State, since : Nat64) : Nat {
    var lo = 0;
    var hi = self.count;
    while (lo < hi) {
      let mid = (lo + hi) / 2;
      if (at(self, mid).seq <= since) lo := mid + 1 else hi := mid;
    };
    lo;
  };

  func unwrap(c : ?Types.Change) : Types.Change {
    switch c {
      case (?change) change;
      case null Runtime.trap("Journal: ring slot empty where a change must be");
    };
  };

};
