// Management-canister tests: a canister whose pre_upgrade traps after changing
// its state, so an upgrade away from it fails (unless pre_upgrade is skipped).
import Runtime "mo:core/Runtime";

persistent actor State {
  var count : Nat = 0;

  system func preupgrade() {
    count += 1000;
    Runtime.trap("pre_upgrade refuses");
  };

  public func inc() : async Nat { count += 1; count };
  public query func get() : async Nat { count };
  public query func version() : async Text { "trap_pre" };
};
