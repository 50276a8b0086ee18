// Test canister for localnet's inter-canister calls and timers.
import Error "mo:core/Error";
import List "mo:core/List";
import Nat "mo:core/Nat";
import Principal "mo:core/Principal";
import Timer "mo:core/Timer";

persistent actor Caller {
  type Target = actor {
    inc : () -> async Nat;
    boom : () -> async ();
    refuse : () -> async Nat;
    append : Nat -> async ();
    missing_method : () -> async ();
  };

  type Reader = actor { get : query () -> async Nat; boom_query : query () -> async Nat };

  var timer_fired : Nat = 0;
  var after_await : Nat = 0;

  func target(p : Principal) : Target = actor (Principal.toText(p));

  public func call_inc(p : Principal) : async Nat { await target(p).inc() };

  // Returns "code:message" of the reject, or "ok".
  public func call_boom(p : Principal) : async Text {
    try { await target(p).boom(); "ok" } catch (e) { describe(e) }
  };
  public func call_refuse(p : Principal) : async Text {
    try { ignore await target(p).refuse(); "ok" } catch (e) { describe(e) }
  };
  public func call_missing(p : Principal) : async Text {
    try { await target(p).missing_method(); "ok" } catch (e) { describe(e) }
  };

  // Sends `n` calls before awaiting any: their order must be preserved.
  public func send_many(p : Principal, n : Nat) : async () {
    let t = target(p);
    let futures = List.empty<async ()>();
    var i = 0;
    while (i < n) {
      List.add(futures, t.append(i));
      i += 1;
    };
    for (f in List.values(futures)) { await f };
  };

  // Changes state after an await, then traps: only the part before the await persists.
  public func trap_after_await(p : Principal) : async () {
    after_await += 1;
    ignore await target(p).inc();
    after_await += 100;
    assert false;
  };
  public query func after_await_count() : async Nat { after_await };

  public func schedule(seconds : Nat) : async () {
    ignore Timer.setTimer<system>(#seconds seconds, func() : async () { timer_fired += 1 });
  };
  public query func fired() : async Nat { timer_fired };

  // A best-effort call: the caller gives up after `seconds` (reject code 6).
  public func call_inc_within(p : Principal, seconds : Nat32) : async Text {
    try { Nat.toText(await (with timeout = seconds) target(p).inc()) } catch (e) { describe(e) }
  };

  // Composite queries: query other canisters, then combine (never persists).
  public composite query func sum_of(p : Principal, q : Principal) : async Nat {
    let a : Reader = actor (Principal.toText(p));
    let b : Reader = actor (Principal.toText(q));
    (await a.get()) + (await b.get()) + 1000
  };
  public composite query func cq_reject(p : Principal) : async Text {
    let a : Reader = actor (Principal.toText(p));
    try { ignore await a.boom_query(); "ok" } catch (e) { describe(e) }
  };

  func describe(e : Error) : Text {
    let code = switch (Error.code(e)) {
      case (#system_fatal) "1";
      case (#system_transient) "2";
      case (#destination_invalid) "3";
      case (#canister_reject) "4";
      case (#canister_error) "5";
      case (#system_unknown) "6";
      case (#future _) "future";
      case (#call_error _) "call_error";
    };
    code # ":" # Error.message(e)
  };
};
