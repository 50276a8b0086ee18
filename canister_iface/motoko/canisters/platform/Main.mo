/// A small platform that gives every user a canister of their own (a
/// fleet): the canister the fleet jobs of the orchestrator start from.
///
/// - `create_user_canister()` creates the caller's canister
///   (`UserCanister.mo`, an ICRP application) with `user_cycles` cycles;
///   its controllers are the platform and the configured
///   `fleet_controllers`, its trusted peers the configured `fleet_peers`.
/// - `register_user_canister(user, canister)` indexes a canister that
///   exists elsewhere (controllers only): a platform may also just know
///   its users' canisters.
/// - `icrp_fleet_members(cursor, limit)` lists the fleet for the
///   orchestrator (ICRP, capability "fleet"); `list_user_canisters(after,
///   limit)` is the plain `vec principal` index many apps already have;
///   `user_canister(user)` finds one user's canister (public).
///
/// The index is the platform's replicable state: a KvState with
///   "m" ‖ canister → be64(added_at) ‖ owner       (the fleet, see mo:icrp/Fleet)
///   "u" ‖ owner    → canister
/// so the platform itself is backed up and restored through ICRP like any
/// application, index included.

import Blob "mo:core/Blob";
import Error "mo:core/Error";
import List "mo:core/List";
import Nat "mo:core/Nat";
import Principal "mo:core/Principal";
import Result "mo:core/Result";
import Set "mo:core/pure/Set";
import Time "mo:core/Time";
import Nat64 "mo:core/Nat64";
import ICRP "mo:icrp";
import Fleet "mo:icrp/Fleet";
import KvState "mo:icrp/KvState";
import Types "mo:icrp/Types";
import UserCanister "UserCanister";

persistent actor Platform {

  type Result<T> = Types.Result<T>;

  public type WriteError = {
    #refused : Types.Error; // NotWritable (standby, fenced) from the ICRP node
    #invalid : Text;
  };

  public type PlatformConfig = {
    user_cycles : Nat; // cycles a new user canister gets (creation fee included)
    fleet_controllers : [Principal]; // controllers of new user canisters besides the platform
    fleet_peers : [Principal]; // trusted ICRP peers of new user canisters
  };

  public type PlatformInfo = {
    config : PlatformConfig;
    members : Nat;
    creating : Nat; // creations in flight
    unindexed : [Principal]; // created while the platform refused writes: index them by hand
  };

  let MEMBERS : Blob = "m";
  let USERS : Blob = "u";

  let kv = KvState.empty();
  let icrpState = ICRP.init(ICRP.defaultSettings, []);
  transient let icrp = do {
    let node = ICRP.Node(icrpState, KvState.hooks(kv));
    node.setFleet(Fleet.inStore(KvState.store(kv), MEMBERS));
    node.declare("read_for_write"); // icrp_read_for_write below
    node;
  };

  var config : PlatformConfig = { user_cycles = 1_000_000_000_000; fleet_controllers = []; fleet_peers = [] };
  var creating = Set.empty<Principal>(); // users whose canister is being created
  let unindexed = List.empty<Principal>();

  func now() : Nat64 = Nat64.fromIntWrap(Time.now());

  func userKey(user : Principal) : Blob = Fleet.key(USERS, user);

  func canisterOf(user : Principal) : ?Principal {
    switch (KvState.get(kv, userKey(user))) {
      case (?bytes) ?Principal.fromBlob(bytes);
      case null null;
    };
  };

  /// Both index entries of a member; the caller checked the writes.
  func index(user : Principal, canister : Principal) {
    icrp.put(Fleet.key(MEMBERS, canister), Fleet.value(now(), Principal.toBlob(user)));
    icrp.put(userKey(user), Principal.toBlob(canister));
  };

  func writable(user : Principal, canister : ?Principal) : Result.Result<(), WriteError> {
    switch (icrp.checkWrite(userKey(user))) { case (#err e) return #err(#refused e); case (#ok) {} };
    switch canister {
      case (?c) switch (icrp.checkWrite(Fleet.key(MEMBERS, c))) { case (#err e) #err(#refused e); case (#ok) #ok };
      case null #ok;
    };
  };

  // ---- the platform's API --------------------------------------------------------

  /// Creates the caller's canister (or returns the one it has).
  public shared ({ caller }) func create_user_canister() : async Result.Result<Principal, WriteError> {
    if (Principal.isAnonymous(caller)) return #err(#invalid "sign in to get a canister");
    switch (canisterOf(caller)) { case (?c) return #ok c; case null {} };
    if (Set.contains(creating, Principal.compare, caller)) return #err(#invalid "your canister is being created; ask again in a moment");
    switch (writable(caller, null)) { case (#err e) return #err e; case (#ok) {} };
    creating := Set.add(creating, Principal.compare, caller);
    let controllers = List.fromArray<Principal>(config.fleet_controllers);
    List.add(controllers, Principal.fromActor(Platform));
    let created = try {
      await (with cycles = config.user_cycles) (system UserCanister.UserCanister)(
        #new { settings = ?{ controllers = ?List.toArray(controllers); compute_allocation = null; memory_allocation = null; freezing_threshold = null } }
      )({ owner = caller; peers = config.fleet_peers });
    } catch (e) {
      creating := Set.remove(creating, Principal.compare, caller);
      return #err(#invalid("creating the canister failed: " # Error.message(e)));
    };
    creating := Set.remove(creating, Principal.compare, caller);
    let canister = Principal.fromActor(created);
    // The mode may have changed while the canister was being created.
    switch (writable(caller, ?canister)) {
      case (#err e) { List.add(unindexed, canister); return #err e };
      case (#ok) {};
    };
    index(caller, canister);
    #ok canister;
  };

  /// Indexes a canister that exists elsewhere (controllers only).
  public shared ({ caller }) func register_user_canister(user : Principal, canister : Principal) : async Result.Result<(), WriteError> {
    if (not Principal.isController(caller)) return #err(#refused(#NotAuthorized { caller }));
    switch (canisterOf(user)) {
      case (?c) return if (c == canister) #ok else #err(#invalid("user already has canister " # Principal.toText(c)));
      case null {};
    };
    switch (writable(user, ?canister)) { case (#err e) return #err e; case (#ok) {} };
    index(user, canister);
    #ok;
  };

  /// One user's canister, for anyone (clients must find theirs).
  public query func user_canister(user : Principal) : async ?Principal {
    canisterOf(user);
  };

  /// The plain index: up to `limit` (at most 5,000) canister ids after
  /// `after`, in ascending order; continue with the last one. Controllers
  /// and trusted peers only.
  public shared query ({ caller }) func list_user_canisters(after : ?Principal, limit : Nat) : async [Principal] {
    if (not icrp.isTrusted(caller)) throw Error.reject("list_user_canisters is for controllers and trusted peers of the platform");
    let max = Nat.min(limit, Fleet.MAX_PAGE - 1);
    let page = Fleet.inStore(KvState.store(kv), MEMBERS).page(after, max + 1);
    let out = List.empty<Principal>();
    for (m in page.members.vals()) {
      if (List.size(out) < max and ?m.canister != after) List.add(out, m.canister);
    };
    List.toArray(out);
  };

  public shared ({ caller }) func platform_configure(c : PlatformConfig) : async Result.Result<(), Text> {
    if (not Principal.isController(caller)) return #err("platform_configure is for controllers only");
    if (c.user_cycles < 600_000_000_000) return #err("user_cycles must cover the creation fee (500 B cycles) and leave some");
    config := c;
    #ok;
  };

  public shared query ({ caller }) func platform_info() : async Result.Result<PlatformInfo, Text> {
    if (not icrp.isTrusted(caller)) return #err("platform_info is for controllers and trusted peers");
    #ok { config; members = Fleet.count(KvState.store(kv), MEMBERS); creating = Set.size(creating); unindexed = List.toArray(unindexed) };
  };

  // ---- ICRP (see canister_iface/icrp.did) ------------------------------------

  public shared query ({ caller }) func icrp_info() : async Types.Info { icrp.info(caller) };
  public shared ({ caller }) func icrp_begin_export() : async Result<Types.ExportTicket> { icrp.beginExport(caller) };
  public shared ({ caller }) func icrp_begin_export_at(seq : Nat64) : async Result<Types.ExportTicket> { icrp.beginExportAt(caller, seq) };
  public shared ({ caller }) func icrp_export_status(id : Nat64) : async Result<Types.ExportTicket> { icrp.exportStatus(caller, id) };
  public shared query ({ caller }) func icrp_list_images() : async Result<[Types.ExportTicket]> { icrp.listImages(caller) };
  public shared query ({ caller }) func icrp_read(id : Nat64, offset : Nat64, len : Nat64) : async Result<Blob> { icrp.read(caller, id, offset, len) };
  public shared query ({ caller }) func icrp_read_for_write(id : Nat64, importId : Nat64, offset : Nat64, len : Nat64) : async (Nat64, Nat64, Blob) {
    switch (icrp.readForWrite(caller, id, importId, offset, len)) {
      case (#ok answer) answer;
      case (#err e) throw Error.reject(ICRP.readForWriteRefusal(e));
    };
  };
  public shared query ({ caller }) func icrp_chunk_digests(id : Nat64, first : Nat64, count : Nat64) : async Result<[Blob]> { icrp.chunkDigests(caller, id, first, count) };
  public shared ({ caller }) func icrp_push(target : Principal, id : Nat64, importId : Nat64, offset : Nat64, len : Nat64) : async Result<Types.PushAck> {
    await* icrp.push(caller, target, id, importId, offset, len);
  };
  public shared ({ caller }) func icrp_end_export(id : Nat64) : async Result<()> { icrp.endExport(caller, id) };
  public shared ({ caller }) func icrp_begin_import(spec : Types.ImportSpec) : async Result<Nat64> { icrp.beginImport(caller, spec) };
  public shared ({ caller }) func icrp_write(id : Nat64, offset : Nat64, data : Blob) : async Result<Nat64> { icrp.write(caller, id, offset, data) };
  public shared query ({ caller }) func icrp_import_status(id : Nat64) : async Result<Types.ImportStatus> { icrp.importStatus(caller, id) };
  public shared ({ caller }) func icrp_commit_import(id : Nat64) : async Result<Types.CommitState> { icrp.commitImport(caller, id) };
  public shared ({ caller }) func icrp_abort_import(id : Nat64) : async Result<()> { icrp.abortImport(caller, id) };
  public shared query ({ caller }) func icrp_changes(since : Nat64, maxBytes : Nat64, range : ?Types.KeyRange) : async Result<Types.ChangeBatch> {
    icrp.changes(caller, since, maxBytes, range);
  };
  public shared ({ caller }) func icrp_apply(batch : Types.ChangeBatch) : async Result<Nat64> { icrp.apply(caller, batch) };
  public shared ({ caller }) func icrp_push_changes(target : Principal, since : Nat64, maxBytes : Nat64, range : ?Types.KeyRange) : async Result<Types.PushChangesAck> {
    await* icrp.pushChanges(caller, target, since, maxBytes, range);
  };
  public shared query ({ caller }) func icrp_backlog(since : Nat64) : async Result<Types.Backlog> { icrp.backlog(caller, since) };
  public shared query ({ caller }) func icrp_export_range(range : Types.KeyRange, cursor : ?Blob, maxBytes : Nat64) : async Result<Types.RecordBatch> {
    icrp.exportRange(caller, range, cursor, maxBytes);
  };
  public shared ({ caller }) func icrp_import_records(records : [Types.Record]) : async Result<Nat64> { icrp.importRecords(caller, records) };
  public shared ({ caller }) func icrp_delete_range(range : Types.KeyRange, cursor : ?Blob, maxRecords : Nat64) : async Result<Types.DeleteProgress> {
    icrp.deleteRange(caller, range, cursor, maxRecords);
  };
  public shared query ({ caller }) func icrp_key_distribution(range : Types.KeyRange, cursor : ?Blob, bucketBytes : Nat64) : async Result<Types.KeyDistribution> {
    icrp.keyDistribution(caller, range, cursor, bucketBytes);
  };
  public shared query ({ caller }) func icrp_range_digest(range : Types.KeyRange, cursor : ?Blob) : async Result<Types.RangeDigest> {
    icrp.rangeDigest(caller, range, cursor);
  };
  public shared query ({ caller }) func icrp_fleet_members(cursor : ?Principal, limit : Nat32) : async Result<Types.FleetPage> {
    icrp.fleetMembers(caller, cursor, limit);
  };
  public shared query ({ caller }) func icrp_routing() : async Result<Types.Routing> { icrp.routing(caller) };
  public shared ({ caller }) func icrp_set_peers(peers : [Principal]) : async Result<()> { icrp.setPeers(caller, peers) };
  public shared ({ caller }) func icrp_set_key_range(range : ?Types.KeyRange) : async Result<()> { icrp.setKeyRange(caller, range) };
  public shared ({ caller }) func icrp_reset_journal(seq : Nat64) : async Result<()> { icrp.resetJournal(caller, seq) };
  public shared ({ caller }) func icrp_set_mode(mode : Types.Mode, redirect : ?Principal) : async Result<Types.ModeInfo> {
    icrp.setMode(caller, mode, redirect);
  };
  public shared ({ caller }) func icrp_set_fences(fences : [Types.Fence]) : async Result<Nat64> { icrp.setFences(caller, fences) };
  public shared ({ caller }) func icrp_set_routing(routing : Types.Routing) : async Result<()> { icrp.setRouting(caller, routing) };
  public shared query ({ caller }) func icrp_config() : async Result<Types.Config> { icrp.config(caller) };
  public shared query ({ caller }) func icrp_peers() : async Result<Types.Peers> { icrp.peers(caller) };
  public shared ({ caller }) func icrp_update_peers(add : [Principal], remove : [Principal], expected_version : ?Nat64) : async Result<Types.PeersUpdate> {
    icrp.updatePeers(caller, add, remove, expected_version);
  };

};
