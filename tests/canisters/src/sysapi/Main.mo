// Test canister for the sandbox's ic0 System API as moc-compiled code uses it
// (tests/localnet/test_sandbox_sysapi.py): identity, time, cycles,
// certified data, controllers, performance counter, replicated-execution
// check, timers, debug output, inter-canister calls with cycles, composite
// queries and ingress inspection.
import CertifiedData "mo:core/CertifiedData";
import Cycles "mo:core/Cycles";
import Debug "mo:core/Debug";
import IC "mo:core/InternetComputer";
import Principal "mo:core/Principal";
import Runtime "mo:core/Runtime";
import Time "mo:core/Time";
import Timer "mo:core/Timer";

persistent actor Self {
  type Counter = actor { inc : Nat -> async Nat; get : query () -> async Nat };

  var counter = 0;
  var timerFired = 0;

  public shared ({ caller }) func whoami() : async Principal { caller };
  public query func selfId() : async Principal { Principal.fromActor(Self) };
  public query func now() : async Int { Time.now() };
  public func certify(data : Blob) : async () { CertifiedData.set(data) };
  public query func certificate() : async ?Blob { CertifiedData.getCertificate() };
  public query func balance() : async Nat { Cycles.balance() };
  public query func isController(p : Principal) : async Bool { Principal.isController(p) };
  public query func replicated() : async Bool { IC.isReplicated() };
  public func replicatedUpdate() : async Bool { IC.isReplicated() };
  public query func instructions() : async Nat64 { IC.performanceCounter(0) };
  public func print(text : Text) : async () { Debug.print(text) };
  public func deadline() : async ?Nat { IC.replyDeadline() };
  public func fail(text : Text) : async () { Runtime.trap(text) };

  // Accepts up to `max` of the attached cycles: (available before, accepted).
  public func acceptCycles(max : Nat) : async (Nat, Nat) {
    let available = Cycles.available();
    (available, Cycles.accept<system>(max));
  };

  public func inc(n : Nat) : async Nat { counter += n; counter };
  public query func get() : async Nat { counter };

  // An inter-canister call with cycles; the reply callback adds the result.
  public func relay(target : Principal, n : Nat, cycles : Nat) : async (Nat, Nat) {
    let other : Counter = actor (Principal.toText(target));
    counter += 1;
    let r = await (with cycles) other.inc(n);
    counter += r;
    (counter, Cycles.refunded());
  };

  // Like relay, but a reject is caught and reported.
  public func relayCatching(target : Principal) : async Text {
    let other : Counter = actor (Principal.toText(target));
    try { ignore await other.inc(1); "replied" } catch (_) { "rejected" };
  };

  public composite query func peek(target : Principal) : async Nat {
    let other : Counter = actor (Principal.toText(target));
    let seen = await other.get();
    seen + counter;
  };

  public func startTimer(seconds : Nat) : async () {
    ignore Timer.setTimer<system>(#seconds seconds, func() : async () { timerFired += 1 });
  };
  public query func fired() : async Nat { timerFired };

  // Ingress inspection: refuse arguments larger than 100 bytes.
  system func inspect({ arg : Blob }) : Bool { arg.size() <= 100 };
};
