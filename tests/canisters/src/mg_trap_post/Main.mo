// Management-canister tests: compatible with mg_state, but its post_upgrade traps.
import Region "mo:core/Region";
import Runtime "mo:core/Runtime";

persistent actor State {
  var count : Nat = 0;
  var notes : [Text] = [];
  let region : Region = Region.new();

  system func postupgrade() { Runtime.trap("post_upgrade refuses") };

  public func inc() : async Nat { count += 1; count };
  public query func get() : async Nat { count };
  public query func get_notes() : async [Text] { notes };
  public query func pages() : async Nat64 { Region.size(region) };
  public func clear_notes() : async () { notes := [] };
  public query func version() : async Text { "trap_post" };
};
