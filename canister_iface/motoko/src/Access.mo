/// Who may use the protocol: the canister's controllers plus the peers it
/// was told to trust. Everyone else is rejected, reads of state included:
/// canister state is private data.
///
/// Controllers are asked from the system (`Principal.isController`) on
/// every call, so a change of the controllers takes effect at once; peers
/// are kept in stable state and changed by controllers only.

import Iter "mo:core/Iter";
import Nat64 "mo:core/Nat64";
import Principal "mo:core/Principal";
import Set "mo:core/pure/Set";
import Time "mo:core/Time";
import Types "Types";

module {

  /// Stable state: the trusted peers.
  public type State = { var peers : Set.Set<Principal> };

  public func new(peers : [Principal]) : State {
    let state : State = { var peers = Set.empty() };
    setPeers(state, peers);
    state;
  };

  /// Replaces the peer set. The anonymous principal is never trusted, so it
  /// is dropped rather than stored.
  public func setPeers(self : State, peers : [Principal]) {
    var set = Set.empty<Principal>();
    for (p in peers.vals()) {
      if (not Principal.isAnonymous(p)) set := Set.add(set, Principal.compare, p);
    };
    self.peers := set;
  };

  public func peers(self : State) : [Principal] {
    Iter.toArray(Set.values(self.peers));
  };

  public func isPeer(self : State, p : Principal) : Bool {
    Set.contains(self.peers, Principal.compare, p);
  };

  /// The version of the peer set, for compare-and-set (`icrp_update_peers`).
  ///
  /// It lives in transient memory, so the stable state keeps its type, and
  /// starts at the time the code was loaded (nanoseconds): after an upgrade
  /// it is still larger than any version handed out before, unless the set
  /// changed more than once per nanosecond. Every change of the set
  /// (`setPeers` through `icrp_set_peers` too) must `bump` it.
  public class Version() {
    var value : Nat64 = Nat64.fromIntWrap(Time.now());
    public func get() : Nat64 = value;
    public func bump() { value += 1 };
  };

  public func versioned(self : State, version : Version) : Types.Peers {
    { peers = peers(self); version = version.get() };
  };

  /// Removes `remove`, then adds `add` (the anonymous principal is dropped)
  /// — unless `expected` names another version than the current one: then
  /// nothing changes (#conflict). A call that adds or removes anything
  /// bumps the version even when the set stays the same (adding a present
  /// peer), so a caller that re-grants a peer makes a concurrent
  /// compare-and-set of the same peer fail; empty lists only compare.
  public func update(self : State, version : Version, add : [Principal], remove : [Principal], expected : ?Nat64) : Types.PeersUpdate {
    switch expected {
      case (?v) if (v != version.get()) return #conflict(versioned(self, version));
      case null {};
    };
    if (add.size() == 0 and remove.size() == 0) return #updated(versioned(self, version));
    var set = self.peers;
    for (p in remove.vals()) set := Set.remove(set, Principal.compare, p);
    for (p in add.vals()) {
      if (not Principal.isAnonymous(p)) set := Set.add(set, Principal.compare, p);
    };
    self.peers := set;
    version.bump();
    #updated(versioned(self, version));
  };

  /// Controllers and peers.
  public func isTrusted(self : State, caller : Principal) : Bool {
    not Principal.isAnonymous(caller) and (Principal.isController(caller) or isPeer(self, caller));
  };

  /// #ok when `caller` is trusted, #NotAuthorized otherwise.
  public func requireTrusted(self : State, caller : Principal) : Types.Result<()> {
    if (isTrusted(self, caller)) #ok else #err(#NotAuthorized { caller });
  };

  /// #ok when `caller` is a controller (configuration methods).
  public func requireController(caller : Principal) : Types.Result<()> {
    if (Principal.isController(caller)) #ok else #err(#NotAuthorized { caller });
  };

};
