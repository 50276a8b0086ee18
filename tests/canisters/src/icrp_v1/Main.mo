/// An ICRP app as built before `icrp_read_for_write` (capability
/// "read_for_write") existed: every other method of the library, none of
/// that one, and no capability for it. Deployed canisters stay like this
/// until upgraded, so the relay must still copy from them with `icrp_read`
/// (tests/integration/test_relay_forward.py). `put` (controllers only)
/// fills it.

import Principal "mo:core/Principal";
import Runtime "mo:core/Runtime";
import ICRP "mo:icrp";
import KvState "mo:icrp/KvState";
import Types "mo:icrp/Types";

persistent actor IcrpV1 {

  type Result<T> = Types.Result<T>;

  let kv = KvState.empty();
  let icrpState = ICRP.init(ICRP.defaultSettings, []);
  transient let icrp = ICRP.Node(icrpState, KvState.hooks(kv));

  public shared ({ caller }) func put(key : Blob, value : Blob) : async () {
    if (not Principal.isController(caller)) Runtime.trap("only controllers write to this canister");
    icrp.put(key, value);
  };

  // ---- ICRP (see canister_iface/icrp.did), icrp_read_for_write excepted --------

  public shared query ({ caller }) func icrp_info() : async Types.Info { icrp.info(caller) };
  public shared ({ caller }) func icrp_begin_export() : async Result<Types.ExportTicket> { icrp.beginExport(caller) };
  public shared ({ caller }) func icrp_begin_export_at(seq : Nat64) : async Result<Types.ExportTicket> { icrp.beginExportAt(caller, seq) };
  public shared ({ caller }) func icrp_export_status(id : Nat64) : async Result<Types.ExportTicket> { icrp.exportStatus(caller, id) };
  public shared query ({ caller }) func icrp_list_images() : async Result<[Types.ExportTicket]> { icrp.listImages(caller) };
  public shared query ({ caller }) func icrp_read(id : Nat64, offset : Nat64, len : Nat64) : async Result<Blob> { icrp.read(caller, id, offset, len) };
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
