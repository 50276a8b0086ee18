/// ICRP for application canisters: the facade an app embeds.
///
/// The app keeps a stable `State` and a transient `Node` that wraps it with
/// the app's `Hooks` (how to serialise, restore and replay its state), then
/// forwards each ICRP method to the node, passing the caller:
///
/// ```motoko
/// import ICRP "mo:icrp";
/// import KvState "mo:icrp/KvState";
///
/// persistent actor {
///   let kv = KvState.empty();
///   let icrpState = ICRP.init(ICRP.defaultSettings, []);
///   transient let icrp = ICRP.Node(icrpState, KvState.hooks(kv));
///
///   public shared query ({ caller }) func icrp_info() : async ICRP.Info {
///     icrp.info(caller);
///   };
///   // ... one line per method, see canisters/demo_app/Main.mo
///
///   public shared func set(key : Blob, value : Blob) : async () {
///     icrp.put(key, value); // changes go through the node: journaled
///   };
/// };
/// ```
///
/// Every change of the replicable state must go through `put`, `delete` or
/// `record`: the journal feeds hot standbys, and `icrp_begin_export` reuses
/// a ready image only while the journal head has not moved.
///
/// Before an application write, ask `checkWrite(key)` (or
/// `checkAppWrite()` for a change without a key): it refuses writes in the
/// standby and read_only modes (`NotWritable`), to keys outside a shard's
/// range and to fenced ranges (`OutOfRange`, naming the owner), and the
/// app returns that error to its client. `put`, `delete` and `record` trap
/// on a refused write, so a forgotten check cannot make replicas diverge.
///
/// Long work runs in steps bounded by `Config.stepInstructions` and
/// `Config.stepBytes`: freezing an image (continued by
/// `icrp_begin_export` / `icrp_export_status`) and rebuilding state from an
/// import (continued by `icrp_commit_import`). The producer and restorer of
/// a step in progress are transient: after an upgrade the step restarts
/// from the beginning (an export re-freezes the then current state).
///
/// A restore replaces the state as a whole when its last step runs: changes
/// the app makes between the first and the last step of a commit are
/// discarded with the old state, and the journal continues from the
/// image's `journal_seq`.

import Array "mo:core/Array";
import InternetComputer "mo:core/InternetComputer";
import List "mo:core/List";
import Nat32 "mo:core/Nat32";
import Nat64 "mo:core/Nat64";
import Option "mo:core/Option";
import Principal "mo:core/Principal";
import Region "mo:core/Region";
import Runtime "mo:core/Runtime";
import Time "mo:core/Time";
import Access "Access";
import Fleet "Fleet";
import Image "Image";
import Journal "Journal";
import KeyRange "KeyRange";
import Push "Push";
import RangeStats "RangeStats";
import Routing "Routing";
import Types "Types";

module {

  public type Info = Types.Info;
  public type ExportTicket = Types.ExportTicket;
  public type ImportSpec = Types.ImportSpec;
  public type ImportStatus = Types.ImportStatus;
  public type CommitState = Types.CommitState;
  public type ChangeBatch = Types.ChangeBatch;
  public type KeyRange = Types.KeyRange;
  public type Record = Types.Record;
  public type RecordBatch = Types.RecordBatch;
  public type DeleteProgress = Types.DeleteProgress;
  public type PushAck = Types.PushAck;
  public type Config = Types.Config;
  public type Mode = Types.Mode;
  public type ModeInfo = Types.ModeInfo;
  public type Peers = Types.Peers;
  public type PeersUpdate = Types.PeersUpdate;
  public type Op = Types.Op;
  public type Error = Types.Error;
  public type Result<T> = Types.Result<T>;
  public type Hooks = Types.Hooks;

  /// Tuning of a node.
  public type Settings = {
    chunkSize : Nat64; // image chunk size
    journalMaxEntries : Nat; // 0 disables the journal
    journalMaxBytes : Nat;
    stepInstructions : Nat64; // instruction budget of one step of long work
    stepBytes : Nat64; // bytes serialised (or restored) per step at most
    queryInstructions : Nat64; // instruction budget of one page of a range scan (a query)
  };

  public let defaultSettings : Settings = {
    chunkSize = Types.DEFAULT_CHUNK_SIZE;
    journalMaxEntries = 100_000;
    journalMaxBytes = 67_108_864; // 64 MiB
    // Half of an update's 40 B limit: a record or chunk hash may overshoot.
    stepInstructions = 20_000_000_000;
    stepBytes = 67_108_864;
    // Of a query's 5 B: hashing one large record may overshoot.
    queryInstructions = 3_000_000_000;
  };

  /// The export in progress or ready.
  type Export = {
    id : Types.SnapshotId;
    var ready : Bool;
    var journalSeq : Nat64;
    var createdAt : Nat64;
    // Asked for at one journal sequence (icrp_begin_export_at): it must
    // not be re-frozen at another.
    exact : Bool;
    // Not frozen yet: the journal head has not reached journalSeq.
    var waiting : Bool;
  };

  /// The stable part of a node.
  public type State = {
    access : Access.State;
    journal : Journal.State;
    var settings : Settings;
    var keyRange : ?Types.KeyRange;
    var mode : Types.ModeInfo;
    routing : Routing.State; // routing table and fences
    var lastSnapshot : Types.SnapshotId;
    var lastImport : Types.ImportId;
    image : Image.Image; // the export image; its region is reused
    var export : ?Export;
    stagingRegion : Region.Region;
    var staging : ?Image.Staging; // the current or most recent import
  };

  public func init(settings : Settings, peers : [Principal]) : State {
    {
      access = Access.new(peers);
      journal = Journal.new(settings.journalMaxEntries, settings.journalMaxBytes);
      var settings = settings;
      var keyRange = null;
      var mode = { mode = #primary; redirect = null; changed_at = 0; journal_seq = 0 };
      routing = Routing.new();
      var lastSnapshot = 0;
      var lastImport = 0;
      image = Image.new(Region.new(), settings.chunkSize);
      var export = null;
      stagingRegion = Region.new();
      var staging = null;
    };
  };

  /// Unhashed bytes after which the producer pauses so chunk hashing keeps
  /// up (in chunks).
  let HASH_LAG_CHUNKS : Nat64 = 4;

  /// Largest batch of deletions per icrp_delete_range call.
  let MAX_DELETE_BATCH : Nat64 = 10_000;

  /// What a change is, for the modes: which of them refuse it.
  type WriteKind = {
    #app; // the application's own write
    #replication; // icrp_apply, icrp_import_records
    #delete; // icrp_delete_range
    #commit; // icrp_commit_import
  };

  func now() : Nat64 = Nat64.fromIntWrap(Time.now());

  /// Limits one step of long work to the node's budget.
  class Budget(settings : Settings, progress : () -> Nat64) {
    let startBytes = progress();
    public func more() : Bool {
      InternetComputer.performanceCounter(0) < settings.stepInstructions and progress() - startBytes < settings.stepBytes;
    };
  };

  /// Whether a range scan (a query) may look at one more record.
  func queryBudget(settings : Settings) : () -> Bool {
    func() : Bool = InternetComputer.performanceCounter(0) < settings.queryInstructions;
  };

  /// A serialisation in progress (transient).
  type Building = { producer : Types.Producer; var produced : Bool };

  /// A restore in progress (transient).
  type Restoring = { restorer : Types.Restorer; source : Types.Source };

  /// The reject message of `icrp_read_for_write` for an ICRP error (the
  /// reply type has no room for one; `icrp_read` answers it typed).
  public func readForWriteRefusal(e : Types.Error) : Text {
    "icrp_read_for_write refused: " # debug_show e # " (icrp_read answers the same error as an ICRP Error)";
  };

  /// An ICRP node: implements every `icrp_*` method for an app whose state
  /// `hooks` describe. Methods take the caller and check access themselves.
  public class Node(state : State, hooks : Types.Hooks) {

    var building : ?Building = null;
    var restoring : ?Restoring = null;
    var fleet : ?Fleet.Fleet = null;
    var declared : [Text] = [];
    let peersVersion = Access.Version();

    // ---- app-facing ---------------------------------------------------------

    /// #ok when the application may write `key` now; otherwise the error to
    /// return to its client: NotWritable (standby, read_only) or
    /// OutOfRange (another canister owns the key; `owner` names it).
    public func checkWrite(key : Blob) : Types.Result<()> {
      switch (refusedIn(#app)) { case (?e) return #err e; case null {} };
      switch (keyRefused(key)) { case (?e) #err e; case null #ok };
    };

    /// #ok when the application may make a change that names no key.
    public func checkAppWrite() : Types.Result<()> {
      switch (refusedIn(#app)) { case (?e) #err e; case null #ok };
    };

    /// Stores a record and journals it (requires a `store` hook). Traps
    /// when `checkWrite(key)` refuses it.
    public func put(key : Blob, value : Blob) {
      allowed(checkWrite(key));
      putJournaled(key, value);
    };

    /// Deletes a record and journals it (requires a `store` hook). Traps
    /// when `checkWrite(key)` refuses it.
    public func delete(key : Blob) {
      allowed(checkWrite(key));
      deleteJournaled(key);
    };

    /// Journals a change the app applied itself; returns its sequence
    /// number. Use #app for changes that are not plain puts and deletes.
    /// Traps when the mode refuses application writes (check first with
    /// `checkWrite` / `checkAppWrite`, before changing anything).
    public func record(op : Types.Op) : Nat64 {
      allowed(checkAppWrite());
      journal(op);
    };

    /// Adds `capability` to `icrp_info` for an optional method the actor
    /// exports itself (only the actor knows which it exports), e.g.
    /// "read_for_write" for `icrp_read_for_write` (see `readForWrite`).
    public func declare(capability : Text) {
      declared := Array.concat(declared, [capability]);
    };

    /// Makes `icrp_fleet_members` list `f` (an app that creates or indexes
    /// canisters, see `Fleet.inStore`).
    public func setFleet(f : Fleet.Fleet) {
      fleet := ?f;
    };

    /// Whether this canister owns `key` (always, unless it is a shard).
    public func ownsKey(key : Blob) : Bool {
      switch (state.keyRange) {
        case (?range) KeyRange.contains(range, key);
        case null true;
      };
    };

    /// The current mode (icrp_set_mode).
    public func mode() : Types.ModeInfo = state.mode;

    func allowed(check : Types.Result<()>) {
      switch check {
        case (#ok) {};
        case (#err e) Runtime.trap("ICRP: write refused (" # describe(e) # "); call checkWrite before writing");
      };
    };

    func putJournaled(key : Blob, value : Blob) {
      let store = requireStore();
      beforeChange(state.journal.head + 1);
      store.put(key, value);
      ignore journal(#put { key; value });
    };

    func deleteJournaled(key : Blob) {
      let store = requireStore();
      beforeChange(state.journal.head + 1);
      store.delete(key);
      ignore journal(#delete { key });
    };

    func journal(op : Types.Op) : Nat64 {
      let seq = Journal.record(state.journal, op, now());
      reached();
      seq;
    };

    /// The error a change of this kind gets in the current mode, if any.
    func refusedIn(kind : WriteKind) : ?Types.Error {
      let refused = switch (state.mode.mode, kind) {
        case (#primary, _) false;
        case (#standby, #app or #delete) true;
        case (#standby, #replication or #commit) false;
        case (#read_only, _) true;
      };
      if (refused) ?#NotWritable { mode = state.mode.mode; redirect = state.mode.redirect } else null;
    };

    /// OutOfRange when `key` is outside a shard's range or fenced.
    func keyRefused(key : Blob) : ?Types.Error {
      if (not ownsKey(key)) return ?#OutOfRange { key; owner = Routing.ownerOf(state.routing, key) };
      switch (Routing.fenceOf(state.routing, key)) {
        case (?fence) {
          let owner = switch (fence.owner) { case (?o) ?o; case null Routing.ownerOf(state.routing, key) };
          ?#OutOfRange { key; owner };
        };
        case null null;
      };
    };

    public func isTrusted(caller : Principal) : Bool = Access.isTrusted(state.access, caller);

    /// Changes the tuning (controllers only); the chunk size applies to
    /// the next export.
    public func setSettings(caller : Principal, settings : Settings) : Types.Result<()> {
      switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
      if (settings.chunkSize < Image.MIN_CHUNK_SIZE or settings.chunkSize > Image.MAX_CHUNK_SIZE) {
        return #err(#InvalidArgument("chunkSize must be between " # Nat64.toText(Image.MIN_CHUNK_SIZE) # " and " # Nat64.toText(Image.MAX_CHUNK_SIZE)));
      };
      if (settings.queryInstructions == 0) return #err(#InvalidArgument("queryInstructions must be positive"));
      state.settings := settings;
      Journal.configure(state.journal, settings.journalMaxEntries, settings.journalMaxBytes);
      #ok;
    };

    func requireStore() : Types.Store {
      switch (hooks.store) {
        case (?s) s;
        case null Runtime.trap("ICRP: put/delete need a `store` hook");
      };
    };

    // ---- discovery ------------------------------------------------------------

    public func info(caller : Principal) : Types.Info {
      let trusted = isTrusted(caller);
      {
        protocol_version = Types.PROTOCOL_VERSION;
        role = role();
        capabilities = capabilities();
        trusted;
        max_transfer_bytes = Types.MAX_TRANSFER;
        image = if trusted imageInfo() else null;
        journal = if trusted ?Journal.info(state.journal) else null;
        key_range = if trusted state.keyRange else null;
        mode = if trusted ?state.mode else null;
      };
    };

    func role() : Types.Role {
      if (Option.isSome(state.keyRange)) #shard else #app;
    };

    func capabilities() : [Text] {
      let caps = List.fromArray<Text>(["image", "import", "push", "mode", "export_at", "routing"]);
      let journaled = state.settings.journalMaxEntries > 0;
      if (journaled) {
        List.add(caps, "journal");
        List.add(caps, "backlog");
        List.add(caps, "push_changes");
        List.add(caps, "journal_reset");
      };
      if (Option.isSome(hooks.store) or Option.isSome(hooks.applyApp)) List.add(caps, "apply");
      if (Option.isSome(hooks.store)) {
        List.add(caps, "key_range");
        if (journaled) List.add(caps, "range_changes");
        List.add(caps, "key_distribution");
        List.add(caps, "range_digest");
        List.add(caps, "fences");
      };
      if (Option.isSome(fleet)) List.add(caps, "fleet");
      for (capability in declared.vals()) List.add(caps, capability);
      List.toArray(caps);
    };

    func imageInfo() : ?Types.ImageInfo {
      switch (state.export) {
        case null null;
        case (?e) ?{
          snapshot_id = e.id;
          size = if (e.waiting) 0 else state.image.size;
          chunk_size = state.image.chunkSize;
          digest = if (e.waiting) null else state.image.digest;
        };
      };
    };

    // ---- export side ----------------------------------------------------------

    public func beginExport(caller : Principal) : Types.Result<Types.ExportTicket> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      switch (state.export) {
        case (?e) {
          // An image waiting for a sequence is replaced by one of now.
          if (not e.ready and not e.waiting) return stepExport(e);
          // Nothing changed since the ready image was frozen: hand it out
          // again rather than disturb readers of it.
          if (e.ready and e.journalSeq == state.journal.head) return #ok(ticket(e));
        };
        case null {};
      };
      let e = newExport(false, state.journal.head);
      freeze(e, state.journal.head);
      stepExport(e);
    };

    public func beginExportAt(caller : Principal, seq : Nat64) : Types.Result<Types.ExportTicket> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      switch (state.export) {
        case (?e) if (e.journalSeq == seq) {
          // The current image is the one at `seq` (waiting, preparing or ready).
          return if (e.ready or e.waiting) #ok(ticket(e)) else stepExport(e);
        };
        case null {};
      };
      let head = state.journal.head;
      if (seq < head) return #err(#TooOld { oldest_seq = head });
      let e = newExport(true, seq);
      if (seq > head) {
        // Frozen by the change that brings the head to `seq`.
        e.waiting := true;
        building := null;
        return #ok(ticket(e));
      };
      freeze(e, head);
      stepExport(e);
    };

    func newExport(exact : Bool, seq : Nat64) : Export {
      let id = state.lastSnapshot + 1;
      state.lastSnapshot := id;
      let e : Export = { id; var ready = false; var journalSeq = seq; var createdAt = 0; exact; var waiting = false };
      state.export := ?e;
      e;
    };

    /// Before a change with sequence `seq` is made: an image waiting for a
    /// sequence below it is frozen now, while the state is still at it.
    func beforeChange(seq : Nat64) {
      switch (state.export) {
        case (?e) if (e.waiting and e.journalSeq < seq) freeze(e, e.journalSeq);
        case null {};
      };
    };

    /// After the journal head moved: an image waiting for a sequence it
    /// reached is frozen now (no change after that sequence was made yet).
    func reached() {
      switch (state.export) {
        case (?e) if (e.waiting and e.journalSeq <= state.journal.head) freeze(e, e.journalSeq);
        case null {};
      };
    };

    public func exportStatus(caller : Principal, id : Types.SnapshotId) : Types.Result<Types.ExportTicket> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      switch (state.export) {
        case (?e) if (e.id == id) {
          return if (e.ready or e.waiting) #ok(ticket(e)) else stepExport(e);
        };
        case null {};
      };
      #err(stale(id));
    };

    public func listImages(caller : Principal) : Types.Result<[Types.ExportTicket]> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      switch (state.export) {
        case (?e) if (e.ready) return #ok([ticket(e)]);
        case null {};
      };
      #ok([]);
    };

    public func read(caller : Principal, id : Types.SnapshotId, offset : Nat64, len : Nat64) : Types.Result<Blob> {
      switch (readable(caller, id)) { case (#err e) return #err e; case (#ok) {} };
      Image.read(state.image, offset, len);
    };

    /// `read`, answered as the argument of the target's
    /// `icrp_write(import_id, offset, data)`: the actor's
    /// `icrp_read_for_write` query returns it as its three reply values, or
    /// rejects with `readForWriteReject(e)` (see icrp.did).
    public func readForWrite(caller : Principal, id : Types.SnapshotId, importId : Types.ImportId, offset : Nat64, len : Nat64) : Types.Result<(Types.ImportId, Nat64, Blob)> {
      switch (read(caller, id, offset, len)) {
        case (#ok data) #ok((importId, offset, data));
        case (#err e) #err e;
      };
    };

    public func chunkDigests(caller : Principal, id : Types.SnapshotId, first : Nat64, count : Nat64) : Types.Result<[Blob]> {
      switch (readable(caller, id)) { case (#err e) return #err e; case (#ok) {} };
      Image.chunkDigests(state.image, first, count);
    };

    public func push(caller : Principal, target : Principal, id : Types.SnapshotId, importId : Types.ImportId, offset : Nat64, len : Nat64) : async* Types.Result<Types.PushAck> {
      switch (readable(caller, id)) { case (#err e) return #err e; case (#ok) {} };
      if (not Access.isPeer(state.access, target)) return #err(notAPeer(target));
      let bytes = switch (Image.read(state.image, offset, len)) {
        case (#ok b) b;
        case (#err e) return #err e;
      };
      await* Push.write(target, importId, offset, bytes);
    };

    public func endExport(caller : Principal, id : Types.SnapshotId) : Types.Result<()> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      switch (state.export) {
        case (?e) if (e.id == id) {
          state.export := null;
          building := null;
        };
        case null {};
      };
      #ok;
    };

    /// Captures the state, which corresponds to journal sequence `seq`,
    /// for export `e` and empties the image.
    func freeze(e : Export, seq : Nat64) {
      Image.reset(state.image, state.settings.chunkSize);
      e.ready := false;
      e.waiting := false;
      e.journalSeq := seq;
      e.createdAt := now();
      building := ?{ producer = hooks.freeze(); var produced = false };
    };

    /// Continues serialising and hashing `e` for one step.
    func stepExport(e : Export) : Types.Result<Types.ExportTicket> {
      let b = switch building {
        case (?b) b;
        case null {
          // The producer was lost in an upgrade: start over, from the
          // state as it is now, unless the image must show another
          // sequence (then it is gone: the caller asks again).
          let head = state.journal.head;
          if (e.exact and e.journalSeq != head) {
            state.export := null;
            return #err(stale(e.id));
          };
          freeze(e, head);
          switch building { case (?b) b; case null Runtime.trap("ICRP: freeze did not start") };
        };
      };
      let image = state.image;
      let budget = Budget(state.settings, func() : Nat64 = image.size);
      let status : Image.SinkStatus = { var failedAt = null };
      let sink = Image.sink(image, status);
      let lag = HASH_LAG_CHUNKS * image.chunkSize;
      let producerMore = func() : Bool {
        budget.more() and Option.isNull(status.failedAt) and Image.unhashedBytes(image) < lag;
      };
      label work while (budget.more()) {
        if (Image.unhashedBytes(image) >= image.chunkSize) {
          ignore Image.hashNextChunk(image);
        } else if (not b.produced) {
          b.produced := b.producer.next(sink, producerMore);
          switch (status.failedAt) {
            case (?n) {
              state.export := null;
              building := null;
              return #err(#OutOfMemory { requested_bytes = n });
            };
            case null {};
          };
        } else {
          Image.seal(image);
          e.ready := true;
          building := null;
          break work;
        };
      };
      #ok(ticket(e));
    };

    func ticket(e : Export) : Types.ExportTicket {
      let image = state.image;
      let size = if (e.waiting) 0 : Nat64 else image.size;
      {
        snapshot_id = e.id;
        state = if (e.ready) #ready else #preparing { done_bytes = size };
        size;
        chunk_size = if (e.waiting) state.settings.chunkSize else image.chunkSize;
        chunk_count = if (e.ready) Image.chunkCount(image.size, image.chunkSize) else 0;
        digest = if (e.waiting) null else image.digest;
        journal_seq = e.journalSeq;
        created_at = e.createdAt;
        origin = null;
      };
    };

    /// #ok when snapshot `id` can be read by `caller`.
    func readable(caller : Principal, id : Types.SnapshotId) : Types.Result<()> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      switch (state.export) {
        case (?e) if (e.id == id) {
          if (e.ready) return #ok;
          return #err(#NotReady { snapshot_id = id; done_bytes = if (e.waiting) 0 else state.image.size });
        };
        case null {};
      };
      #err(stale(id));
    };

    func stale(id : Types.SnapshotId) : Types.Error {
      #StaleSnapshot {
        requested = id;
        current = Option.map<Export, Types.SnapshotId>(state.export, func e = e.id);
      };
    };

    // ---- import side ----------------------------------------------------------

    public func beginImport(caller : Principal, spec : Types.ImportSpec) : Types.Result<Types.ImportId> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      switch (Image.validateSpec(spec)) { case (?msg) return #err(#InvalidArgument msg); case null {} };
      switch (state.staging) {
        case (?st) {
          let open = switch (st.state) {
            case (#receiving or #committing _) true;
            case (#committed _ or #aborted _) false;
          };
          if (open and Image.sameImage(st, spec)) return #ok(st.id);
        };
        case null {};
      };
      let id = state.lastImport + 1;
      switch (Image.stage(id, spec, state.stagingRegion)) {
        case (#ok st) {
          state.lastImport := id;
          state.staging := ?st;
          restoring := null;
          #ok(id);
        };
        case (#err e) #err e;
      };
    };

    public func write(caller : Principal, id : Types.ImportId, offset : Nat64, data : Blob) : Types.Result<Nat64> {
      switch (staged(caller, id)) {
        case (#ok st) Image.write(st, offset, data);
        case (#err e) #err e;
      };
    };

    public func importStatus(caller : Principal, id : Types.ImportId) : Types.Result<Types.ImportStatus> {
      switch (staged(caller, id)) {
        case (#ok st) #ok(Image.status(st));
        case (#err e) #err e;
      };
    };

    public func commitImport(caller : Principal, id : Types.ImportId) : Types.Result<Types.CommitState> {
      let st = switch (staged(caller, id)) { case (#ok st) st; case (#err e) return #err e };
      switch (st.state) {
        case (#receiving or #committing _) {
          switch (refusedIn(#commit)) { case (?e) return #err e; case null {} };
        };
        case (#committed _ or #aborted _) {};
      };
      switch (st.state) {
        case (#receiving) {
          switch (Image.verify(st)) {
            case (#err(#DigestMismatch m)) {
              st.state := #aborted { reason = "image digest mismatch" };
              return #err(#DigestMismatch m);
            };
            case (#err e) return #err e;
            case (#ok) {};
          };
          st.state := #committing { done_bytes = 0 };
          restoring := null;
        };
        case (#committing _) {};
        case (#committed { snapshot_id }) return #ok(#committed { snapshot_id; digest = null });
        case (#aborted { reason }) return #err(#NotFound("import " # Nat64.toText(id) # " was aborted: " # reason));
      };
      stepRestore(st);
    };

    public func abortImport(caller : Principal, id : Types.ImportId) : Types.Result<()> {
      let st = switch (staged(caller, id)) { case (#ok st) st; case (#err e) return #err e };
      switch (st.state) {
        case (#committed _) return #err(#InvalidArgument("import " # Nat64.toText(id) # " is already committed"));
        case (#aborted _) {};
        case (#receiving or #committing _) {
          st.state := #aborted { reason = "aborted by the caller" };
          restoring := null;
        };
      };
      #ok;
    };

    /// Continues rebuilding the state from import `st` for one step; on the
    /// last step swaps the rebuilt state in.
    func stepRestore(st : Image.Staging) : Types.Result<Types.CommitState> {
      let r = switch restoring {
        case (?r) r;
        case null {
          // First step, or the restorer was lost in an upgrade: start over.
          let fresh : Restoring = {
            restorer = hooks.restorer();
            source = { region = st.image.region; var pos = 0; end = st.spec.size };
          };
          restoring := ?fresh;
          fresh;
        };
      };
      let budget = Budget(state.settings, func() : Nat64 = r.source.pos);
      switch (r.restorer.next(r.source, budget.more)) {
        case (#err reason) {
          st.state := #aborted { reason = "image format: " # reason };
          restoring := null;
          #err(#ImageFormat reason);
        };
        case (#ok false) {
          st.state := #committing { done_bytes = r.source.pos };
          #ok(#restoring { done_bytes = r.source.pos });
        };
        case (#ok true) {
          r.restorer.install();
          restoring := null;
          Journal.reset(state.journal, st.spec.journal_seq);
          // The export image, if any, shows the replaced state.
          state.export := null;
          building := null;
          st.state := #committed { snapshot_id = null };
          #ok(#committed { snapshot_id = null; digest = null });
        };
      };
    };

    /// The staged import `id`, if `caller` may use it.
    func staged(caller : Principal, id : Types.ImportId) : Types.Result<Image.Staging> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      switch (state.staging) {
        case (?st) if (st.id == id) return #ok st;
        case null {};
      };
      #err(#NotFound("no import " # Nat64.toText(id) # " (the most recent is " # Nat64.toText(state.lastImport) # ")"));
    };

    // ---- incremental sync -----------------------------------------------------

    public func changes(caller : Principal, since : Nat64, maxBytes : Nat64, range : ?Types.KeyRange) : Types.Result<Types.ChangeBatch> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      readChanges(since, maxBytes, range);
    };

    func readChanges(since : Nat64, maxBytes : Nat64, range : ?Types.KeyRange) : Types.Result<Types.ChangeBatch> {
      switch range {
        case (?r) switch (KeyRange.validate(r)) { case (?msg) return #err(#InvalidArgument msg); case null {} };
        case null {};
      };
      Journal.changes(state.journal, since, maxBytes, range);
    };

    public func backlog(caller : Principal, since : Nat64) : Types.Result<Types.Backlog> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      Journal.backlog(state.journal, since);
    };

    /// The direct path of the journal: reads the changes after `since` and
    /// has `target` apply them.
    public func pushChanges(caller : Principal, target : Principal, since : Nat64, maxBytes : Nat64, range : ?Types.KeyRange) : async* Types.Result<Types.PushChangesAck> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      if (not Access.isPeer(state.access, target)) return #err(notAPeer(target));
      let batch = switch (readChanges(since, maxBytes, range)) { case (#ok b) b; case (#err e) return #err e };
      var bytes = 0;
      for (c in batch.changes.vals()) bytes += Journal.changeSize(c);
      switch (await* Push.apply(target, batch)) {
        case (#ok applied) #ok {
          to_seq = batch.to_seq;
          head_seq = batch.head_seq;
          changes = Nat64.fromNat(batch.changes.size());
          bytes = Nat64.fromNat(bytes);
          applied_seq = applied;
        };
        case (#err e) #err e;
      };
    };

    public func apply(caller : Principal, batch : Types.ChangeBatch) : Types.Result<Nat64> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      switch (refusedIn(#replication)) { case (?e) return #err e; case null {} };
      let applied = state.journal.head;
      if (batch.from_seq > applied) return #err(#Gap { applied_seq = applied; from_seq = batch.from_seq });
      if (batch.to_seq < batch.from_seq) return #err(#InvalidArgument("to_seq is below from_seq"));
      // Validate the whole batch before changing anything.
      var prev = batch.from_seq;
      for (c in batch.changes.vals()) {
        if (c.seq <= prev or c.seq > batch.to_seq) {
          return #err(#InvalidArgument("change " # Nat64.toText(c.seq) # " is out of order or outside (from_seq, to_seq]"));
        };
        prev := c.seq;
        if (c.seq > applied) {
          switch (checkReplayable(c.op)) { case (?e) return #err e; case null {} };
        };
      };
      for (c in batch.changes.vals()) {
        if (c.seq > applied) {
          beforeChange(c.seq);
          switch (replayOp(c.op)) {
            case (?e) return #err e;
            case null Journal.replay(state.journal, c);
          };
        };
      };
      Journal.advance(state.journal, batch.to_seq);
      reached();
      #ok(state.journal.head);
    };

    func checkReplayable(op : Types.Op) : ?Types.Error {
      switch op {
        case (#put { key }) checkKey(key);
        case (#delete { key }) checkKey(key);
        case (#app _) if (Option.isNull(hooks.applyApp)) ?#Unsupported("this canister cannot replay application-defined changes") else null;
      };
    };

    func checkKey(key : Blob) : ?Types.Error {
      if (Option.isNull(hooks.store)) return ?#Unsupported("this canister has no key-value store to replay puts and deletes");
      keyRefused(key);
    };

    func replayOp(op : Types.Op) : ?Types.Error {
      switch (op, hooks.store, hooks.applyApp) {
        case (#put { key; value }, ?s, _) { s.put(key, value); null };
        case (#delete { key }, ?s, _) { s.delete(key); null };
        case (#app change, _, ?f) {
          switch (f(change)) { case (#ok) null; case (#err msg) ?#InvalidArgument("application change rejected: " # msg) };
        };
        case _ ?#Unsupported("cannot replay this change");
      };
    };

    // ---- key ranges -----------------------------------------------------------

    public func exportRange(caller : Principal, range : Types.KeyRange, cursor : ?Blob, maxBytes : Nat64) : Types.Result<Types.RecordBatch> {
      let store = switch (rangeAccess(caller, range)) { case (#ok s) s; case (#err e) return #err e };
      let batch = KeyRange.export(store, range, cursor, maxBytes);
      #ok { records = batch.records; next_cursor = batch.next; journal_seq = state.journal.head };
    };

    public func importRecords(caller : Principal, records : [Types.Record]) : Types.Result<Nat64> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      if (Option.isNull(hooks.store)) return #err(noStore());
      switch (refusedIn(#replication)) { case (?e) return #err e; case null {} };
      for (r in records.vals()) switch (keyRefused(r.key)) { case (?e) return #err e; case null {} };
      for (r in records.vals()) putJournaled(r.key, r.value);
      #ok(Nat64.fromNat(records.size()));
    };

    public func deleteRange(caller : Principal, range : Types.KeyRange, cursor : ?Blob, maxRecords : Nat64) : Types.Result<Types.DeleteProgress> {
      let store = switch (rangeAccess(caller, range)) { case (#ok s) s; case (#err e) return #err e };
      switch (refusedIn(#delete)) { case (?e) return #err e; case null {} };
      let batch = KeyRange.keysToDelete(store, range, cursor, Nat64.toNat(Nat64.min(maxRecords, MAX_DELETE_BATCH)));
      let budget = Budget(state.settings, func() : Nat64 = 0);
      var deleted = 0;
      var bytes = 0;
      while (deleted < batch.keys.size()) {
        // At least one record per call, so the caller always progresses.
        if (deleted > 0 and not budget.more()) {
          return #ok { deleted = Nat64.fromNat(deleted); next_cursor = ?batch.keys[deleted]; bytes = Nat64.fromNat(bytes) };
        };
        deleteJournaled(batch.keys[deleted]);
        bytes += batch.sizes[deleted];
        deleted += 1;
      };
      #ok { deleted = Nat64.fromNat(deleted); next_cursor = batch.next; bytes = Nat64.fromNat(bytes) };
    };

    public func keyDistribution(caller : Principal, range : Types.KeyRange, cursor : ?Blob, bucketBytes : Nat64) : Types.Result<Types.KeyDistribution> {
      let store = switch (rangeAccess(caller, range)) { case (#ok s) s; case (#err e) return #err e };
      let page = RangeStats.distribution(store, range, cursor, bucketBytes, queryBudget(state.settings));
      #ok { buckets = page.buckets; next_cursor = page.next; journal_seq = state.journal.head };
    };

    public func rangeDigest(caller : Principal, range : Types.KeyRange, cursor : ?Blob) : Types.Result<Types.RangeDigest> {
      let store = switch (rangeAccess(caller, range)) { case (#ok s) s; case (#err e) return #err e };
      let page = RangeStats.digest(store, range, cursor, queryBudget(state.settings));
      #ok {
        records = page.records;
        bytes = page.bytes;
        digest = page.digest;
        next_cursor = page.next;
        journal_seq = state.journal.head;
      };
    };

    // ---- fleets and routing -----------------------------------------------------

    public func fleetMembers(caller : Principal, cursor : ?Principal, limit : Nat32) : Types.Result<Types.FleetPage> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      switch fleet {
        case (?f) #ok(f.page(cursor, Nat32.toNat(limit)));
        case null #err(#Unsupported("this canister keeps no fleet of canisters"));
      };
    };

    /// The routing table: public, clients need it to find a key's owner.
    public func routing(_caller : Principal) : Types.Result<Types.Routing> {
      #ok(state.routing.routing);
    };

    func rangeAccess(caller : Principal, range : Types.KeyRange) : Types.Result<Types.Store> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      switch (KeyRange.validate(range)) { case (?msg) return #err(#InvalidArgument msg); case null {} };
      switch (hooks.store) { case (?s) #ok s; case null #err(noStore()) };
    };

    func noStore() : Types.Error = #Unsupported("this canister's state is not a key-value store");

    // ---- configuration ----------------------------------------------------------

    public func setPeers(caller : Principal, peers : [Principal]) : Types.Result<()> {
      switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
      Access.setPeers(state.access, peers);
      peersVersion.bump();
      #ok;
    };

    public func setMode(caller : Principal, mode : Types.Mode, redirect : ?Principal) : Types.Result<Types.ModeInfo> {
      switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
      let current = state.mode;
      if (current.mode == mode and current.redirect == redirect) return #ok current;
      state.mode := { mode; redirect; changed_at = now(); journal_seq = state.journal.head };
      #ok(state.mode);
    };

    public func setFences(caller : Principal, fences : [Types.Fence]) : Types.Result<Nat64> {
      switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
      if (fences.size() > 0 and Option.isNull(hooks.store)) return #err(noStore());
      switch (Routing.setFences(state.routing, fences)) {
        case (#ok) #ok(state.journal.head);
        case (#err e) #err e;
      };
    };

    public func setRouting(caller : Principal, routing : Types.Routing) : Types.Result<()> {
      switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
      Routing.setRouting(state.routing, routing);
    };

    public func peers(caller : Principal) : Types.Result<Types.Peers> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      #ok(Access.versioned(state.access, peersVersion));
    };

    public func updatePeers(caller : Principal, add : [Principal], remove : [Principal], expected : ?Nat64) : Types.Result<Types.PeersUpdate> {
      switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
      #ok(Access.update(state.access, peersVersion, add, remove, expected));
    };

    public func setKeyRange(caller : Principal, range : ?Types.KeyRange) : Types.Result<()> {
      switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
      switch range {
        case (?r) switch (KeyRange.validate(r)) { case (?msg) return #err(#InvalidArgument msg); case null {} };
        case null {};
      };
      if (Option.isSome(range) and Option.isNull(hooks.store)) return #err(noStore());
      state.keyRange := range;
      #ok;
    };

    /// Forgets the journal and numbers the next change `seq + 1`: the state
    /// now corresponds to journal sequence `seq` of the canister it was
    /// copied from by key range (see icrp_reset_journal).
    public func resetJournal(caller : Principal, seq : Nat64) : Types.Result<()> {
      switch (Access.requireController(caller)) { case (#err e) return #err e; case (#ok) {} };
      switch (refusedIn(#commit)) { case (?e) return #err e; case null {} };
      Journal.reset(state.journal, seq);
      // An image names a sequence of the old numbering.
      state.export := null;
      building := null;
      #ok;
    };

    public func config(caller : Principal) : Types.Result<Types.Config> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      #ok {
        role = role();
        peers = Access.peers(state.access);
        key_range = state.keyRange;
        chunk_size = state.settings.chunkSize;
        journal_max_entries = Nat64.fromNat(state.settings.journalMaxEntries);
        journal_max_bytes = Nat64.fromNat(state.settings.journalMaxBytes);
        fences = state.routing.fences;
        mode = ?state.mode;
      };
    };

  };

  /// A short description of an error, for traps.
  func describe(e : Types.Error) : Text {
    switch e {
      case (#NotWritable { mode }) "the canister is " # modeName(mode);
      case (#OutOfRange { owner }) switch owner {
        case (?o) "the key belongs to " # Principal.toText(o);
        case null "the key is outside this canister's range";
      };
      case _ "refused";
    };
  };

  public func modeName(mode : Types.Mode) : Text {
    switch mode {
      case (#primary) "primary";
      case (#standby) "a standby";
      case (#read_only) "read-only (fenced)";
    };
  };

  func notAPeer(target : Principal) : Types.Error {
    #InvalidArgument("push target " # Principal.toText(target) # " is not a trusted peer of this canister; add it with icrp_set_peers");
  };

};
