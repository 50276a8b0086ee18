/// The direct data path: the source canister writes a byte range of its
/// image into the target's import with an inter-canister call to
/// `icrp_write` (or a batch of its journal into the target with
/// `icrp_apply`), so the bytes never leave the IC and the orchestrator only
/// paces and acknowledges.

import Error "mo:core/Error";
import Nat64 "mo:core/Nat64";
import Principal "mo:core/Principal";
import Types "Types";

module {

  /// The part of the ICRP service the direct path calls.
  public type Target = actor {
    icrp_write : shared (Types.ImportId, Nat64, Blob) -> async Types.Result<Nat64>;
    icrp_apply : shared Types.ChangeBatch -> async Types.Result<Nat64>;
  };

  /// Calls `target.icrp_write(importId, offset, data)`. A target error is
  /// wrapped in #Target, a failed call in #CallFailed with its reject code,
  /// so the orchestrator can tell them from errors of the source.
  public func write(target : Principal, importId : Types.ImportId, offset : Nat64, data : Blob) : async* Types.Result<Types.PushAck> {
    let callee : Target = Principal.toActor(target);
    try {
      switch (await callee.icrp_write(importId, offset, data)) {
        case (#ok committed) #ok { bytes = Nat64.fromNat(data.size()); committed_bytes = committed };
        case (#err e) #err(#Target e);
      };
    } catch (e) {
      #err(#CallFailed { code = rejectCode(Error.code(e)); message = Error.message(e) });
    };
  };

  /// Calls `target.icrp_apply(batch)`; returns the target's sequence
  /// number afterwards. Errors are wrapped as for `write`.
  public func apply(target : Principal, batch : Types.ChangeBatch) : async* Types.Result<Nat64> {
    let callee : Target = Principal.toActor(target);
    try {
      switch (await callee.icrp_apply(batch)) {
        case (#ok applied) #ok applied;
        case (#err e) #err(#Target e);
      };
    } catch (e) {
      #err(#CallFailed { code = rejectCode(Error.code(e)); message = Error.message(e) });
    };
  };

  /// The IC reject code (1..6) of a failed call.
  func rejectCode(code : Error.ErrorCode) : Nat32 {
    switch code {
      case (#system_fatal) 1;
      case (#system_transient) 2;
      case (#destination_invalid) 3;
      case (#canister_reject) 4;
      case (#canister_error) 5;
      case (#system_unknown) 6;
      case (#future n) n;
      // The call could not be made (queue full, freezing threshold): the
      // system's transient condition.
      case (#call_error _) 2;
    };
  };

};
