// Management-canister tests: an init argument, and an init that traps on 0.
import Runtime "mo:core/Runtime";

persistent actor class Init(start : Nat) {
  var count : Nat = if (start == 0) { Runtime.trap("init refuses 0") } else { start };

  public func inc() : async Nat { count += 1; count };
  public query func get() : async Nat { count };
};
