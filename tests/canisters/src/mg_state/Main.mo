// Management-canister tests: a canister with state in the heap and in stable
// memory (a Region), version 1 of an upgrade sequence (see mg_state_v2).
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import Region "mo:core/Region";
import Timer "mo:core/Timer";

persistent actor State {
  var count : Nat = 0;
  var notes : [Text] = [];
  let region : Region = Region.new();

  public func inc() : async Nat { count += 1; count };
  public query func get() : async Nat { count };
  public func add_note(t : Text) : async () { notes := Array.concat(notes, [t]) };
  public query func get_notes() : async [Text] { notes };
  public query func version() : async Text { "v1" };

  // Writes `b` at the start of the region, growing it to one page if needed.
  public func store(b : Blob) : async () {
    if (Region.size(region) == 0) { ignore Region.grow(region, 1) };
    Region.storeBlob(region, 0, b);
  };
  public query func load(n : Nat) : async Blob { Region.loadBlob(region, 0, n) };

  public func arm_timer(seconds : Nat) : async () {
    ignore Timer.setTimer<system>(#seconds seconds, func() : async () { count += 100 });
  };
};
