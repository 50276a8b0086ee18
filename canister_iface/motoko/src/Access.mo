/// Who may use the protocol: the canister's controllers plus the peers it
/// was told to trust. Everyone else is rejected, reads of state included:
/// canister state is private data.
///
/// Controllers are asked from the system (`Principal.isController`) on
/// every call, so a change of the controllers takes effect at once; peers
/// are kept in stable state and changed by controllers only.

import Iter "mo:core/Iter";
import Principal "mo:core/Principal";
import Set "mo:core/pure/Set";
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
