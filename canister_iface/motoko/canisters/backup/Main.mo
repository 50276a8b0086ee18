/// A generic ICRP backup canister.
///
/// It receives images of one source canister through the import side of
/// ICRP (relay writes from the orchestrator or direct pushes from the
/// source), keeps the newest `keep` distinct images with their metadata
/// (source, source snapshot id, time received, size, digest) and serves any
/// of them back through the export side, so a restore is: export from the
/// backup, import into the app.
///
/// Init argument:
///   record {
///     source : principal;      // the only canister whose images are accepted;
///                              // it is trusted like a peer (it may push)
///     keep : opt nat;          // images kept (default 3, at least 1)
///     peers : vec principal;   // further trusted peers (e.g. restore targets)
///   }
/// The source is fixed at install; `keep` and the peers can be changed by
/// controllers (`backup_set_keep`, `icrp_set_peers`).
///
/// Each image lives in its own region; regions of evicted images are reused
/// for the next import, so stable memory holds at most keep + 1 images.
/// Images are immutable once stored: a stored image's snapshot id stays
/// readable until it is evicted.

import Error "mo:core/Error";
import List "mo:core/List";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import Option "mo:core/Option";
import Principal "mo:core/Principal";
import Region "mo:core/Region";
import Time "mo:core/Time";
import Access "mo:icrp/Access";
import Image "mo:icrp/Image";
import Push "mo:icrp/Push";
import Types "mo:icrp/Types";

persistent actor class Backup(init : { source : Principal; keep : ?Nat; peers : [Principal] }) {

  type Result<T> = Types.Result<T>;

  /// An image held by this canister.
  type Stored = {
    id : Types.SnapshotId; // local snapshot id
    image : Image.Image;
    origin : Types.ImageOrigin;
    journalSeq : Nat64;
  };

  let DEFAULT_KEEP = 3;

  let source = init.source;
  var keep = Nat.max(1, Option.get(init.keep, DEFAULT_KEEP));
  let access = Access.new(init.peers);
  transient let peersVersion = Access.Version();
  let images = List.empty<Stored>(); // oldest first
  let freeRegions = List.empty<Region.Region>();
  var staging : ?Image.Staging = null;
  var lastSnapshot : Types.SnapshotId = 0;
  var lastImport : Types.ImportId = 0;

  func now() : Nat64 = Nat64.fromIntWrap(Time.now());

  /// Controllers, peers and the source.
  func trusted(caller : Principal) : Result<()> {
    if (caller == source and not Principal.isAnonymous(caller)) #ok else Access.requireTrusted(access, caller);
  };

  // ---- discovery -------------------------------------------------------------

  public shared query ({ caller }) func icrp_info() : async Types.Info {
    let ok = Option.isNull(errorOf(trusted(caller)));
    {
      protocol_version = Types.PROTOCOL_VERSION;
      role = #backup;
      capabilities = ["image", "import", "push", "multi_image", "read_for_write"];
      trusted = ok;
      max_transfer_bytes = Types.MAX_TRANSFER;
      image = if ok Option.map<Stored, Types.ImageInfo>(newest(), imageInfo) else null;
      journal = null;
      key_range = null;
      mode = null;
    };
  };

  func imageInfo(s : Stored) : Types.ImageInfo {
    { snapshot_id = s.id; size = s.image.size; chunk_size = s.image.chunkSize; digest = s.image.digest };
  };

  // ---- export side -----------------------------------------------------------

  public shared ({ caller }) func icrp_begin_export() : async Result<Types.ExportTicket> {
    switch (trusted(caller)) { case (#err e) return #err e; case (#ok) {} };
    switch (newest()) {
      case (?s) #ok(ticket(s));
      case null #err(#NotFound("this backup canister holds no image yet"));
    };
  };

  /// A backup canister's images are the ones it received; it cannot make
  /// one at a chosen journal sequence.
  public shared ({ caller }) func icrp_begin_export_at(_seq : Nat64) : async Result<Types.ExportTicket> {
    unsupported(caller, "a backup canister serves the images it received; it cannot freeze one at a journal sequence");
  };

  public shared ({ caller }) func icrp_export_status(id : Types.SnapshotId) : async Result<Types.ExportTicket> {
    switch (stored(caller, id)) {
      case (#ok s) #ok(ticket(s));
      case (#err e) #err e;
    };
  };

  public shared query ({ caller }) func icrp_list_images() : async Result<[Types.ExportTicket]> {
    switch (trusted(caller)) { case (#err e) return #err e; case (#ok) {} };
    #ok(List.toArray(List.map<Stored, Types.ExportTicket>(images, ticket)));
  };

  public shared query ({ caller }) func icrp_read(id : Types.SnapshotId, offset : Nat64, len : Nat64) : async Result<Blob> {
    switch (stored(caller, id)) {
      case (#ok s) Image.read(s.image, offset, len);
      case (#err e) #err e;
    };
  };

  /// icrp_read, answered as the argument of the target's icrp_write (icrp.did).
  public shared query ({ caller }) func icrp_read_for_write(id : Types.SnapshotId, importId : Types.ImportId, offset : Nat64, len : Nat64) : async (Types.ImportId, Nat64, Blob) {
    let read = switch (stored(caller, id)) {
      case (#ok s) Image.read(s.image, offset, len);
      case (#err e) #err e;
    };
    switch (read) {
      case (#ok data) (importId, offset, data);
      case (#err e) throw Error.reject("icrp_read_for_write refused: " # debug_show e # " (icrp_read answers the same error as an ICRP Error)");
    };
  };

  public shared query ({ caller }) func icrp_chunk_digests(id : Types.SnapshotId, first : Nat64, count : Nat64) : async Result<[Blob]> {
    switch (stored(caller, id)) {
      case (#ok s) Image.chunkDigests(s.image, first, count);
      case (#err e) #err e;
    };
  };

  public shared ({ caller }) func icrp_push(target : Principal, id : Types.SnapshotId, importId : Types.ImportId, offset : Nat64, len : Nat64) : async Result<Types.PushAck> {
    let s = switch (stored(caller, id)) { case (#ok s) s; case (#err e) return #err e };
    if (not Access.isPeer(access, target)) {
      return #err(#InvalidArgument("push target " # Principal.toText(target) # " is not a trusted peer of this backup canister; add it with icrp_set_peers"));
    };
    let bytes = switch (Image.read(s.image, offset, len)) { case (#ok b) b; case (#err e) return #err e };
    await* Push.write(target, importId, offset, bytes);
  };

  /// Stored images stay readable until evicted, so ending an export has
  /// nothing to release.
  public shared ({ caller }) func icrp_end_export(_id : Types.SnapshotId) : async Result<()> {
    trusted(caller);
  };

  func newest() : ?Stored = List.last(images);

  func ticket(s : Stored) : Types.ExportTicket {
    {
      snapshot_id = s.id;
      state = #ready;
      size = s.image.size;
      chunk_size = s.image.chunkSize;
      chunk_count = Image.chunkCount(s.image.size, s.image.chunkSize);
      digest = s.image.digest;
      journal_seq = s.journalSeq;
      created_at = s.origin.received_at;
      origin = ?s.origin;
    };
  };

  /// Stored image `id`, if `caller` may read it.
  func stored(caller : Principal, id : Types.SnapshotId) : Result<Stored> {
    switch (trusted(caller)) { case (#err e) return #err e; case (#ok) {} };
    switch (List.find<Stored>(images, func s = s.id == id)) {
      case (?s) #ok s;
      case null #err(#StaleSnapshot { requested = id; current = Option.map<Stored, Types.SnapshotId>(newest(), func s = s.id) });
    };
  };

  // ---- import side -----------------------------------------------------------

  public shared ({ caller }) func icrp_begin_import(spec : Types.ImportSpec) : async Result<Types.ImportId> {
    switch (trusted(caller)) { case (#err e) return #err e; case (#ok) {} };
    if (spec.source != source) {
      return #err(#InvalidArgument("this backup canister accepts images from " # Principal.toText(source) # " only"));
    };
    switch (Image.validateSpec(spec)) { case (?msg) return #err(#InvalidArgument msg); case null {} };
    // The region of an unfinished import is reused; a committed one's
    // region belongs to a stored image now.
    var region : ?Region.Region = null;
    switch staging {
      case (?st) {
        switch (st.state) {
          case (#receiving or #committing _) {
            if (Image.sameImage(st, spec)) return #ok(st.id);
            region := ?st.image.region;
          };
          case (#aborted _) region := ?st.image.region;
          case (#committed _) {};
        };
      };
      case null {};
    };
    let r = switch region { case (?r) r; case null takeRegion() };
    let id = lastImport + 1;
    switch (Image.stage(id, spec, r)) {
      case (#ok st) {
        lastImport := id;
        staging := ?st;
        #ok id;
      };
      case (#err e) {
        // Keep the region for the next attempt.
        if (Option.isNull(region)) List.add(freeRegions, r);
        #err e;
      };
    };
  };

  public shared ({ caller }) func icrp_write(id : Types.ImportId, offset : Nat64, data : Blob) : async Result<Nat64> {
    switch (staged(caller, id)) {
      case (#ok st) Image.write(st, offset, data);
      case (#err e) #err e;
    };
  };

  public shared query ({ caller }) func icrp_import_status(id : Types.ImportId) : async Result<Types.ImportStatus> {
    switch (staged(caller, id)) {
      case (#ok st) #ok(Image.status(st));
      case (#err e) #err e;
    };
  };

  /// Stores the verified image as the newest one (no rebuild is needed, so
  /// this is a single step) and evicts the oldest beyond `keep`. An image
  /// identical to the newest stored one is not stored twice.
  public shared ({ caller }) func icrp_commit_import(id : Types.ImportId) : async Result<Types.CommitState> {
    let st = switch (staged(caller, id)) { case (#ok st) st; case (#err e) return #err e };
    switch (st.state) {
      case (#receiving or #committing _) {};
      case (#committed { snapshot_id }) return #ok(committed(snapshot_id));
      case (#aborted { reason }) return #err(#NotFound("import " # Nat64.toText(id) # " was aborted: " # reason));
    };
    switch (Image.verify(st)) {
      case (#err(#DigestMismatch m)) {
        st.state := #aborted { reason = "image digest mismatch" };
        return #err(#DigestMismatch m);
      };
      case (#err e) return #err e;
      case (#ok) {};
    };
    let snapshotId = switch (newest()) {
      case (?n) if (n.image.digest == st.image.digest and n.image.chunkSize == st.image.chunkSize) {
        List.add(freeRegions, st.image.region);
        n.id;
      } else store(st);
      case null store(st);
    };
    st.state := #committed { snapshot_id = ?snapshotId };
    #ok(committed(?snapshotId));
  };

  /// A commit's answer: the snapshot the image is stored as and that
  /// image's digest (what `icrp_export_status` reports for it), so the
  /// orchestrator checks what this canister now serves without another call.
  func committed(snapshotId : ?Types.SnapshotId) : Types.CommitState {
    let digest = switch snapshotId {
      case (?id) switch (List.find<Stored>(images, func s = s.id == id)) {
        case (?s) s.image.digest;
        case null null; // evicted since
      };
      case null null;
    };
    #committed { snapshot_id = snapshotId; digest };
  };

  public shared ({ caller }) func icrp_abort_import(id : Types.ImportId) : async Result<()> {
    let st = switch (staged(caller, id)) { case (#ok st) st; case (#err e) return #err e };
    switch (st.state) {
      case (#committed _) #err(#InvalidArgument("import " # Nat64.toText(id) # " is already committed"));
      case (#aborted _) #ok;
      case (#receiving or #committing _) {
        st.state := #aborted { reason = "aborted by the caller" };
        #ok;
      };
    };
  };

  func store(st : Image.Staging) : Types.SnapshotId {
    let id = lastSnapshot + 1;
    lastSnapshot := id;
    List.add(
      images,
      {
        id;
        image = st.image;
        origin = { source = st.spec.source; snapshot_id = st.spec.snapshot_id; received_at = now() };
        journalSeq = st.spec.journal_seq;
      },
    );
    evict();
    id;
  };

  /// Drops the oldest images beyond `keep`; their regions are reused.
  func evict() {
    while (List.size(images) > keep) {
      let oldest = List.at(images, 0);
      List.add(freeRegions, oldest.image.region);
      let rest = List.sliceToArray<Stored>(images, 1, List.size(images));
      List.clear(images);
      for (s in rest.vals()) List.add(images, s);
    };
  };

  func takeRegion() : Region.Region {
    switch (List.removeLast(freeRegions)) {
      case (?r) r;
      case null Region.new();
    };
  };

  func staged(caller : Principal, id : Types.ImportId) : Result<Image.Staging> {
    switch (trusted(caller)) { case (#err e) return #err e; case (#ok) {} };
    switch staging {
      case (?st) if (st.id == id) return #ok st;
      case null {};
    };
    #err(#NotFound("no import " # Nat64.toText(id) # " (the most recent is " # Nat64.toText(lastImport) # ")"));
  };

  // ---- not supported by a backup canister --------------------------------------

  public shared query ({ caller }) func icrp_changes(_since : Nat64, _maxBytes : Nat64, _range : ?Types.KeyRange) : async Result<Types.ChangeBatch> {
    unsupported(caller, "a backup canister keeps images, not a change journal");
  };

  public shared ({ caller }) func icrp_apply(_batch : Types.ChangeBatch) : async Result<Nat64> {
    unsupported(caller, "a backup canister keeps images; it does not replay changes");
  };

  public shared ({ caller }) func icrp_push_changes(_target : Principal, _since : Nat64, _maxBytes : Nat64, _range : ?Types.KeyRange) : async Result<Types.PushChangesAck> {
    unsupported(caller, "a backup canister keeps images, not a change journal");
  };

  public shared query ({ caller }) func icrp_backlog(_since : Nat64) : async Result<Types.Backlog> {
    unsupported(caller, "a backup canister keeps images, not a change journal");
  };

  public shared query ({ caller }) func icrp_export_range(_range : Types.KeyRange, _cursor : ?Blob, _maxBytes : Nat64) : async Result<Types.RecordBatch> {
    unsupported(caller, "a backup canister has no key-value state");
  };

  public shared ({ caller }) func icrp_import_records(_records : [Types.Record]) : async Result<Nat64> {
    unsupported(caller, "a backup canister has no key-value state");
  };

  public shared ({ caller }) func icrp_delete_range(_range : Types.KeyRange, _cursor : ?Blob, _maxRecords : Nat64) : async Result<Types.DeleteProgress> {
    unsupported(caller, "a backup canister has no key-value state");
  };

  public shared query ({ caller }) func icrp_key_distribution(_range : Types.KeyRange, _cursor : ?Blob, _bucketBytes : Nat64) : async Result<Types.KeyDistribution> {
    unsupported(caller, "a backup canister has no key-value state");
  };

  public shared query ({ caller }) func icrp_range_digest(_range : Types.KeyRange, _cursor : ?Blob) : async Result<Types.RangeDigest> {
    unsupported(caller, "a backup canister has no key-value state");
  };

  public shared query ({ caller }) func icrp_fleet_members(_cursor : ?Principal, _limit : Nat32) : async Result<Types.FleetPage> {
    unsupported(caller, "a backup canister keeps no fleet of canisters");
  };

  /// Public, like every canister's routing table; a backup canister has none.
  public shared query func icrp_routing() : async Result<Types.Routing> {
    #err(#Unsupported("a backup canister routes no keys"));
  };

  public shared ({ caller }) func icrp_set_mode(_mode : Types.Mode, _redirect : ?Principal) : async Result<Types.ModeInfo> {
    switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
    #err(#Unsupported("a backup canister has no application writes to refuse; it accepts images from its source only"));
  };

  public shared ({ caller }) func icrp_set_fences(_fences : [Types.Fence]) : async Result<Nat64> {
    switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
    #err(#Unsupported("a backup canister has no key-value state"));
  };

  public shared ({ caller }) func icrp_set_routing(_routing : Types.Routing) : async Result<()> {
    switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
    #err(#Unsupported("a backup canister routes no keys"));
  };

  public shared ({ caller }) func icrp_set_key_range(_range : ?Types.KeyRange) : async Result<()> {
    switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
    #err(#Unsupported("a backup canister owns no key range"));
  };

  public shared ({ caller }) func icrp_reset_journal(_seq : Nat64) : async Result<()> {
    switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
    #err(#Unsupported("a backup canister keeps images, not a change journal"));
  };

  func unsupported<T>(caller : Principal, why : Text) : Result<T> {
    switch (trusted(caller)) { case (#err e) #err e; case (#ok) #err(#Unsupported why) };
  };

  // ---- configuration -----------------------------------------------------------

  public shared ({ caller }) func icrp_set_peers(peers : [Principal]) : async Result<()> {
    switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
    Access.setPeers(access, peers);
    peersVersion.bump();
    #ok;
  };

  public shared query ({ caller }) func icrp_peers() : async Result<Types.Peers> {
    switch (trusted(caller)) { case (#err e) return #err e; case (#ok) {} };
    #ok(Access.versioned(access, peersVersion));
  };

  public shared ({ caller }) func icrp_update_peers(add : [Principal], remove : [Principal], expected_version : ?Nat64) : async Result<Types.PeersUpdate> {
    switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
    #ok(Access.update(access, peersVersion, add, remove, expected_version));
  };

  public shared query ({ caller }) func icrp_config() : async Result<Types.Config> {
    switch (trusted(caller)) { case (#err e) return #err e; case (#ok) {} };
    #ok {
      role = #backup;
      peers = Access.peers(access);
      key_range = null;
      chunk_size = Types.DEFAULT_CHUNK_SIZE;
      journal_max_entries = 0;
      journal_max_bytes = 0;
      fences = [];
      mode = null;
    };
  };

  /// The source, how many images are kept and which are held.
  public shared query ({ caller }) func backup_info() : async Result<{ source : Principal; keep : Nat; images : [Types.ExportTicket] }> {
    switch (trusted(caller)) { case (#err e) return #err e; case (#ok) {} };
    #ok { source; keep; images = List.toArray(List.map<Stored, Types.ExportTicket>(images, ticket)) };
  };

  /// Changes how many images are kept (controllers only); lowering it
  /// evicts the oldest images at once.
  public shared ({ caller }) func backup_set_keep(n : Nat) : async Result<()> {
    switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
    if (n == 0) return #err(#InvalidArgument("keep must be at least 1"));
    keep := n;
    evict();
    #ok;
  };

  func errorOf(r : Result<()>) : ?Types.Error {
    switch r { case (#ok) null; case (#err e) ?e };
  };

};
