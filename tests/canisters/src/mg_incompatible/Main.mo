// Management-canister tests: `count` changed from Nat to Text, which the Motoko
// runtime refuses on an upgrade from mg_state (memory-incompatible upgrade).
persistent actor State {
  var count : Text = "";
  var notes : [Text] = [];

  public func set_text(t : Text) : async () { count := t };
  public query func get_text() : async Text { count };
  public query func note_count() : async Nat { notes.size() };
  public func clear_notes() : async () { notes := [] };
  public query func version() : async Text { "incompatible" };
};
