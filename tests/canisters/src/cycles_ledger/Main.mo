// A local stand-in for the cycles ledger (um5iw-rqaaa-aaaaq-qaaba-cai) with the
// part of its interface the orchestrator uses on mainnet: `create_canister`,
// `withdraw` (cycles to a canister: top-ups), `icrc1_balance_of`, `icrc1_fee`
// and `deposit`, with the real ledger's Candid types, fee, deduplication and
// error variants. `create_canister` calls the management canister's
// `create_canister` with the requested cycles attached, as the real ledger does
// through the CMC; `withdraw` calls its `deposit_cycles`.
//
// Localnet has no CMC to mint cycles from ICP, so `test_fund` (controllers
// only) credits an account out of the cycles this canister holds and has not
// yet credited to anyone: balances are always backed by real cycles.
import Array "mo:core/Array";
import Blob "mo:core/Blob";
import Error "mo:core/Error";
import Int "mo:core/Int";
import Map "mo:core/Map";
import Nat64 "mo:core/Nat64";
import Order "mo:core/Order";
import Principal "mo:core/Principal";
import Text "mo:core/Text";
import Time "mo:core/Time";
import Cycles "mo:core/Cycles";

persistent actor CyclesLedger {
  type Account = { owner : Principal; subaccount : ?Blob };
  type BlockIndex = Nat;

  type CanisterSettings = {
    controllers : ?[Principal];
    compute_allocation : ?Nat;
    memory_allocation : ?Nat;
    freezing_threshold : ?Nat;
    reserved_cycles_limit : ?Nat;
  };
  type SubnetSelection = {
    #Subnet : { subnet : Principal };
    #Filter : { subnet_type : ?Text };
  };
  type CmcCreateCanisterArgs = {
    settings : ?CanisterSettings;
    subnet_selection : ?SubnetSelection;
  };
  type CreateCanisterArgs = {
    from_subaccount : ?Blob;
    created_at_time : ?Nat64;
    amount : Nat;
    creation_args : ?CmcCreateCanisterArgs;
  };
  type CreateCanisterSuccess = { block_id : BlockIndex; canister_id : Principal };
  type CreateCanisterError = {
    #InsufficientFunds : { balance : Nat };
    #TooOld;
    #CreatedInFuture : { ledger_time : Nat64 };
    #TemporarilyUnavailable;
    #Duplicate : { duplicate_of : Nat; canister_id : ?Principal };
    #FailedToCreate : { fee_block : ?BlockIndex; refund_block : ?BlockIndex; error : Text };
    #GenericError : { message : Text; error_code : Nat };
  };
  type RejectionCode = {
    #NoError;
    #SysFatal;
    #SysTransient;
    #DestinationInvalid;
    #CanisterReject;
    #CanisterError;
    #Unknown;
  };
  type WithdrawArgs = {
    amount : Nat;
    from_subaccount : ?Blob;
    to : Principal;
    created_at_time : ?Nat64;
  };
  type WithdrawError = {
    #GenericError : { message : Text; error_code : Nat };
    #TemporarilyUnavailable;
    #Duplicate : { duplicate_of : Nat };
    #BadFee : { expected_fee : Nat };
    #InvalidReceiver : { receiver : Principal };
    #CreatedInFuture : { ledger_time : Nat64 };
    #TooOld;
    #InsufficientFunds : { balance : Nat };
    #FailedToWithdraw : { fee_block : ?Nat; rejection_code : RejectionCode; rejection_reason : Text };
  };
  type DepositArgs = { to : Account; memo : ?Blob };
  type DepositResult = { balance : Nat; block_index : BlockIndex };

  type Management = actor {
    create_canister : ({
      settings : ?CanisterSettings;
      sender_canister_version : ?Nat64;
    }) -> async { canister_id : Principal };
    deposit_cycles : ({ canister_id : Principal }) -> async ();
  };

  // The real ledger's constants (cycles-ledger/src/config.rs).
  let FEE : Nat = 100_000_000;
  let TRANSACTION_WINDOW_NS : Nat = 24 * 3600 * 1_000_000_000;
  let PERMITTED_DRIFT_NS : Nat = 2 * 60 * 1_000_000_000;

  transient let ic : Management = actor "aaaaa-aa";
  transient let defaultSubaccount : Blob = Blob.fromArray(Array.repeat<Nat8>(0, 32));

  type Key = (Principal, Blob);
  let balances = Map.empty<Key, Nat>();
  // created transactions by (caller, subaccount, created_at_time, amount)
  let seen = Map.empty<Text, (BlockIndex, ?Principal)>();
  // withdrawals by (caller, subaccount, to, created_at_time, amount)
  let withdrawn = Map.empty<Text, BlockIndex>();
  var nextBlock : Nat = 0;
  var credited : Nat = 0; // sum of all balances

  func compareKey(a : Key, b : Key) : Order.Order {
    switch (Principal.compare(a.0, b.0)) {
      case (#equal) Blob.compare(a.1, b.1);
      case other other;
    };
  };

  func key(owner : Principal, subaccount : ?Blob) : Key {
    switch subaccount {
      case null (owner, defaultSubaccount);
      case (?s) (owner, s);
    };
  };

  func balanceOf(k : Key) : Nat {
    switch (Map.get(balances, compareKey, k)) { case null 0; case (?b) b };
  };

  func credit(k : Key, amount : Nat) : BlockIndex {
    Map.add(balances, compareKey, k, balanceOf(k) + amount);
    credited += amount;
    block();
  };

  // Callers check the balance first; the subtraction is done in Int to say so.
  func debit(k : Key, amount : Nat) : BlockIndex {
    Map.add(balances, compareKey, k, Int.abs(balanceOf(k) - amount));
    credited := Int.abs(credited - amount);
    block();
  };

  func block() : BlockIndex {
    let b = nextBlock;
    nextBlock += 1;
    b;
  };

  func checkTime(createdAt : ?Nat64) : ?CreateCanisterError {
    switch createdAt {
      case null null;
      case (?t) {
        let now : Int = Time.now();
        let at = Nat64.toNat(t);
        if (at + TRANSACTION_WINDOW_NS + PERMITTED_DRIFT_NS < now) return ?#TooOld;
        if (at > now + PERMITTED_DRIFT_NS) {
          return ?#CreatedInFuture({ ledger_time = Nat64.fromNat(Int.abs(now)) });
        };
        null;
      };
    };
  };

  func dedupKey(caller : Principal, args : CreateCanisterArgs) : ?Text {
    switch (args.created_at_time) {
      case null null;
      case (?t) ?debug_show ((caller, args.from_subaccount, t, args.amount));
    };
  };

  func withController(caller : Principal, args : ?CmcCreateCanisterArgs) : CanisterSettings {
    let given : CanisterSettings = switch args {
      case (?{ settings = ?s }) s;
      case _ {
        {
          controllers = null;
          compute_allocation = null;
          memory_allocation = null;
          freezing_threshold = null;
          reserved_cycles_limit = null;
        };
      };
    };
    switch (given.controllers) {
      case null ({ given with controllers = ?[caller] });
      case (?_) given;
    };
  };

  public shared ({ caller }) func create_canister(args : CreateCanisterArgs) : async {
    #Ok : CreateCanisterSuccess;
    #Err : CreateCanisterError;
  } {
    switch (checkTime(args.created_at_time)) { case (?e) return #Err e; case null {} };
    let dedup = dedupKey(caller, args);
    switch dedup {
      case (?d) switch (Map.get(seen, Text.compare, d)) {
        case (?(blockId, canister)) {
          return #Err(#Duplicate({ duplicate_of = blockId; canister_id = canister }));
        };
        case null {};
      };
      case null {};
    };
    let from = key(caller, args.from_subaccount);
    let balance = balanceOf(from);
    if (balance < args.amount + FEE) return #Err(#InsufficientFunds({ balance }));
    // Debit before the await: a concurrent call must not spend the same cycles.
    let burn = debit(from, args.amount + FEE);
    let settings = withController(caller, args.creation_args);
    try {
      let created = await (with cycles = args.amount) ic.create_canister({
        settings = ?settings;
        sender_canister_version = null;
      });
      switch dedup {
        case (?d) Map.add(seen, Text.compare, d, (burn, ?created.canister_id));
        case null {};
      };
      #Ok({ block_id = burn; canister_id = created.canister_id });
    } catch (e) {
      // As the real ledger: the fee is kept, the amount is refunded.
      let refund = credit(from, args.amount);
      #Err(#FailedToCreate({ fee_block = ?burn; refund_block = ?refund; error = Error.message(e) }));
    };
  };

  public shared ({ caller }) func withdraw(args : WithdrawArgs) : async {
    #Ok : BlockIndex;
    #Err : WithdrawError;
  } {
    switch (checkTime(args.created_at_time)) {
      case (?#TooOld) return #Err(#TooOld);
      case (?#CreatedInFuture t) return #Err(#CreatedInFuture t);
      case _ {};
    };
    let dedup = switch (args.created_at_time) {
      case null null;
      case (?t) ?debug_show ((caller, args.from_subaccount, args.to, t, args.amount));
    };
    switch dedup {
      case (?d) switch (Map.get(withdrawn, Text.compare, d)) {
        case (?blockId) return #Err(#Duplicate({ duplicate_of = blockId }));
        case null {};
      };
      case null {};
    };
    let from = key(caller, args.from_subaccount);
    let balance = balanceOf(from);
    if (balance < args.amount + FEE) return #Err(#InsufficientFunds({ balance }));
    // Debit before the await: a concurrent call must not spend the same cycles.
    let burn = debit(from, args.amount + FEE);
    try {
      await (with cycles = args.amount) ic.deposit_cycles({ canister_id = args.to });
      switch dedup {
        case (?d) Map.add(withdrawn, Text.compare, d, burn);
        case null {};
      };
      #Ok(burn);
    } catch (e) {
      // As the real ledger: the fee is kept, the amount is refunded.
      ignore credit(from, args.amount);
      #Err(#FailedToWithdraw({ fee_block = ?burn; rejection_code = rejection(e); rejection_reason = Error.message(e) }));
    };
  };

  func rejection(e : Error.Error) : RejectionCode {
    switch (Error.code(e)) {
      case (#system_fatal) #SysFatal;
      case (#system_transient) #SysTransient;
      case (#destination_invalid) #DestinationInvalid;
      case (#canister_reject) #CanisterReject;
      case (#canister_error) #CanisterError;
      case (#system_unknown) #Unknown;
      case (#future _) #Unknown;
      case (#call_error _) #Unknown;
    };
  };

  public shared func deposit(args : DepositArgs) : async DepositResult {
    let amount = Cycles.accept<system>(Cycles.available());
    let k = key(args.to.owner, args.to.subaccount);
    let blockIndex = credit(k, amount);
    { balance = balanceOf(k); block_index = blockIndex };
  };

  public shared ({ caller }) func test_fund(to : Account, amount : Nat) : async DepositResult {
    if (not Principal.isController(caller)) {
      throw Error.reject("test_fund: only a controller of the ledger may fund accounts");
    };
    // Keep what the ledger needs to run; never credit cycles it does not hold.
    let reserve = 1_000_000_000_000;
    let held = Cycles.balance();
    if (credited + amount + reserve > held) {
      throw Error.reject("test_fund: the ledger holds too few unassigned cycles; top it up first");
    };
    let k = key(to.owner, to.subaccount);
    let blockIndex = credit(k, amount);
    { balance = balanceOf(k); block_index = blockIndex };
  };

  public query func icrc1_balance_of(account : Account) : async Nat {
    balanceOf(key(account.owner, account.subaccount));
  };

  public query func icrc1_fee() : async Nat { FEE };
};
