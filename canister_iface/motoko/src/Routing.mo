/// Who owns which keys: the routing table a canister serves to clients
/// (`icrp_routing`), and the ranges it no longer accepts writes to
/// (`icrp_set_fences`, the cut-over of a split).
///
/// Both are lists of key ranges in key order that do not overlap, so a
/// key's entry is found by binary search on the lower bounds.

import Array "mo:core/Array";
import Blob "mo:core/Blob";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import KeyRange "KeyRange";
import Types "Types";

module {

  /// Largest routing table and fence set accepted.
  public let MAX_ROUTES = 10_000;
  public let MAX_FENCES = 1_000;

  /// Stable state.
  public type State = {
    var routing : Types.Routing;
    var fences : [Types.Fence]; // in key order, not overlapping
  };

  public func new() : State {
    { var routing = { version = 0; routes = [] }; var fences = [] };
  };

  /// Replaces the routing table: the version must grow (the same table at
  /// the same version again is accepted, so retries are harmless).
  public func setRouting(self : State, routing : Types.Routing) : Types.Result<()> {
    if (routing.routes.size() > MAX_ROUTES) {
      return #err(#InvalidArgument("a routing table holds at most " # Nat.toText(MAX_ROUTES) # " routes"));
    };
    let ranges = Array.map<Types.Route, Types.KeyRange>(routing.routes, func r = r.range);
    switch (checkOrdered(ranges, "route")) { case (?msg) return #err(#InvalidArgument msg); case null {} };
    let current = self.routing;
    if (routing.version == current.version and sameRoutes(routing.routes, current.routes)) return #ok;
    if (routing.version <= current.version) {
      return #err(#InvalidArgument("routing version " # Nat64.toText(routing.version) # " is not above the current version " # Nat64.toText(current.version) # ": fetch icrp_routing and publish a newer table"));
    };
    self.routing := routing;
    #ok;
  };

  /// Replaces the fenced ranges (given in any order).
  public func setFences(self : State, fences : [Types.Fence]) : Types.Result<()> {
    if (fences.size() > MAX_FENCES) {
      return #err(#InvalidArgument("at most " # Nat.toText(MAX_FENCES) # " ranges can be fenced"));
    };
    let sorted = Array.sort<Types.Fence>(fences, func(a, b) = Blob.compare(a.range.lower, b.range.lower));
    let ranges = Array.map<Types.Fence, Types.KeyRange>(sorted, func f = f.range);
    switch (checkOrdered(ranges, "fence")) { case (?msg) return #err(#InvalidArgument msg); case null {} };
    self.fences := sorted;
    #ok;
  };

  /// The fence covering `key`, if any.
  public func fenceOf(self : State, key : Blob) : ?Types.Fence {
    let fences = self.fences;
    if (fences.size() == 0) return null;
    switch (lastAtOrBelow<Types.Fence>(fences, key, func f = f.range.lower)) {
      case (?i) if (KeyRange.contains(fences[i].range, key)) ?fences[i] else null;
      case null null;
    };
  };

  /// The canister the routing table names for `key`, if any.
  public func ownerOf(self : State, key : Blob) : ?Principal {
    let routes = self.routing.routes;
    switch (lastAtOrBelow<Types.Route>(routes, key, func r = r.range.lower)) {
      case (?i) if (KeyRange.contains(routes[i].range, key)) ?routes[i].canister else null;
      case null null;
    };
  };

  /// Null when every range is well-formed and each ends at or before the
  /// next one begins.
  func checkOrdered(ranges : [Types.KeyRange], what : Text) : ?Text {
    var i = 0;
    while (i < ranges.size()) {
      switch (KeyRange.validate(ranges[i])) {
        case (?msg) return ?(what # " " # Nat.toText(i) # ": " # msg);
        case null {};
      };
      if (i > 0) {
        let before = ranges[i - 1];
        let overlaps = switch (before.upper) {
          case null true;
          case (?upper) upper > ranges[i].lower;
        };
        if (overlaps) return ?(what # "s " # Nat.toText(i - 1) # " and " # Nat.toText(i) # " overlap or are not in key order");
      };
      i += 1;
    };
    null;
  };

  func sameRoutes(a : [Types.Route], b : [Types.Route]) : Bool {
    Array.equal<Types.Route>(a, b, func(x, y) = x.canister == y.canister and x.range.lower == y.range.lower and x.range.upper == y.range.upper);
  };

  /// Index of the last element whose lower bound is <= key.
  func lastAtOrBelow<T>(items : [T], key : Blob, lower : T -> Blob) : ?Nat {
    var lo = 0;
    var hi = items.size();
    while (lo < hi) {
      let mid = (lo + hi) / 2;
      switch (Blob.compare(lower(items[mid]), key)) {
        case (#greater) hi := mid;
        case (#less or #equal) lo := mid + 1;
      };
    };
    if (lo == 0) null else ?(lo - 1);
  };

};
