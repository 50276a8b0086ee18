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

import InternetComputer "mo:core/InternetComputer";
import List "mo:core/List";
import Nat64 "mo:core/Nat64";
import Option "mo:core/Option";
import Principal "mo:core/Principal";
import Region "mo:core/Region";
import Runtime "mo:core/Runtime";
import Time "mo:core/Time";
import Access "Access";
import Image "Image";
import Journal "Journal";
import KeyRange "KeyRange";
import Push "Push";
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
  };

  public let defaultSettings : Settings = {
    chunkSize = Types.DEFAULT_CHUNK_SIZE;
    journalMaxEntries = 100_000;
    journalMaxBytes = 67_108_864; // 64 MiB
    // Half of an update's 40 B limit: a record or chunk hash may overshoot.
    stepInstructions = 20_000_000_000;
    stepBytes = 67_108_864;
  };

  /// The export in progress or ready.
  type Export = {
    id : Types.SnapshotId;
    var ready : Bool;
    var journalSeq : Nat64;
    var createdAt : Nat64;
  };

  /// The stable part of a node.
  public type State = {
    access : Access.State;
    journal : Journal.State;
    var settings : Settings;
    var keyRange : ?Types.KeyRange;
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

  func now() : Nat64 = Nat64.fromIntWrap(Time.now());

  /// Limits one step of long work to the node's budget.
  class Budget(settings : Settings, progress : () -> Nat64) {
    let startBytes = progress();
    public func more() : Bool {
      InternetComputer.performanceCounter(0) < settings.stepInstructions and progress() - startBytes < settings.stepBytes;
    };
  };

  /// A serialisation in progress (transient).
  type Building = { producer : Types.Producer; var produced : Bool };

  /// A restore in progress (transient).
  type Restoring = { restorer : Types.Restorer; source : Types.Source };

  /// An ICRP node: implements every `icrp_*` method for an app whose state
  /// `hooks` describe. Methods take the caller and check access themselves.
  public class Node(state : State, hooks : Types.Hooks) {

    var building : ?Building = null;
    var restoring : ?Restoring = null;
    let peersVersion = Access.Version();

    // ---- app-facing ---------------------------------------------------------

    /// Stores a record and journals it (requires a `store` hook).
    public func put(key : Blob, value : Blob) {
      requireStore().put(key, value);
      ignore Journal.record(state.journal, #put { key; value }, now());
    };

    /// Deletes a record and journals it (requires a `store` hook).
    public func delete(key : Blob) {
      requireStore().delete(key);
      ignore Journal.record(state.journal, #delete { key }, now());
    };

    /// Journals a change the app applied itself; returns its sequence
    /// number. Use #app for changes that are not plain puts and deletes.
    public func record(op : Types.Op) : Nat64 {
      Journal.record(state.journal, op, now());
    };

    /// Whether this canister owns `key` (always, unless it is a shard).
    public func ownsKey(key : Blob) : Bool {
      switch (state.keyRange) {
        case (?range) KeyRange.contains(range, key);
        case null true;
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
      };
    };

    func role() : Types.Role {
      if (Option.isSome(state.keyRange)) #shard else #app;
    };

    func capabilities() : [Text] {
      let caps = List.fromArray<Text>(["image", "import", "push"]);
      if (state.settings.journalMaxEntries > 0) List.add(caps, "journal");
      if (Option.isSome(hooks.store) or Option.isSome(hooks.applyApp)) List.add(caps, "apply");
      if (Option.isSome(hooks.store)) List.add(caps, "key_range");
      List.toArray(caps);
    };

    func imageInfo() : ?Types.ImageInfo {
      switch (state.export) {
        case null null;
        case (?e) ?{
          snapshot_id = e.id;
          size = state.image.size;
          chunk_size = state.image.chunkSize;
          digest = state.image.digest;
        };
      };
    };

    // ---- export side ----------------------------------------------------------

    public func beginExport(caller : Principal) : Types.Result<Types.ExportTicket> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      switch (state.export) {
        case (?e) {
          if (not e.ready) return stepExport(e);
          // Nothing changed since the ready image was frozen: hand it out
          // again rather than disturb readers of it.
          if (e.journalSeq == state.journal.head) return #ok(ticket(e));
        };
        case null {};
      };
      let id = state.lastSnapshot + 1;
      state.lastSnapshot := id;
      let e : Export = { id; var ready = false; var journalSeq = 0; var createdAt = 0 };
      state.export := ?e;
      freeze(e);
      stepExport(e);
    };

    public func exportStatus(caller : Principal, id : Types.SnapshotId) : Types.Result<Types.ExportTicket> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      switch (state.export) {
        case (?e) if (e.id == id) {
          return if (e.ready) #ok(ticket(e)) else stepExport(e);
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

    /// Captures the state for export `e` and empties the image.
    func freeze(e : Export) {
      Image.reset(state.image, state.settings.chunkSize);
      e.ready := false;
      e.journalSeq := state.journal.head;
      e.createdAt := now();
      building := ?{ producer = hooks.freeze(); var produced = false };
    };

    /// Continues serialising and hashing `e` for one step.
    func stepExport(e : Export) : Types.Result<Types.ExportTicket> {
      let b = switch building {
        case (?b) b;
        case null {
          // The producer was lost in an upgrade: start over, from the
          // state as it is now.
          freeze(e);
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
      {
        snapshot_id = e.id;
        state = if (e.ready) #ready else #preparing { done_bytes = image.size };
        size = image.size;
        chunk_size = image.chunkSize;
        chunk_count = if (e.ready) Image.chunkCount(image.size, image.chunkSize) else 0;
        digest = image.digest;
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
          return if (e.ready) #ok else #err(#NotReady { snapshot_id = id; done_bytes = state.image.size });
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
        case (#committed { snapshot_id }) return #ok(#committed { snapshot_id });
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
          #ok(#committed { snapshot_id = null });
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

    public func changes(caller : Principal, since : Nat64, maxBytes : Nat64) : Types.Result<Types.ChangeBatch> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      Journal.changes(state.journal, since, maxBytes);
    };

    public func apply(caller : Principal, batch : Types.ChangeBatch) : Types.Result<Nat64> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
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
          switch (replayOp(c.op)) {
            case (?e) return #err e;
            case null Journal.replay(state.journal, c);
          };
        };
      };
      Journal.advance(state.journal, batch.to_seq);
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
      if (not ownsKey(key)) return ?#OutOfRange { key };
      null;
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
      for (r in records.vals()) if (not ownsKey(r.key)) return #err(#OutOfRange { key = r.key });
      for (r in records.vals()) put(r.key, r.value);
      #ok(Nat64.fromNat(records.size()));
    };

    public func deleteRange(caller : Principal, range : Types.KeyRange, cursor : ?Blob, maxRecords : Nat64) : Types.Result<Types.DeleteProgress> {
      let store = switch (rangeAccess(caller, range)) { case (#ok s) s; case (#err e) return #err e };
      let batch = KeyRange.keysToDelete(store, range, cursor, Nat64.toNat(Nat64.min(maxRecords, MAX_DELETE_BATCH)));
      for (key in batch.keys.vals()) delete(key);
      #ok { deleted = Nat64.fromNat(batch.keys.size()); next_cursor = batch.next };
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

    public func config(caller : Principal) : Types.Result<Types.Config> {
      switch (Access.requireTrusted(state.access, caller)) { case (#err e) return #err e; case (#ok) {} };
      #ok {
        role = role();
        peers = Access.peers(state.access);
        key_range = state.keyRange;
        chunk_size = state.settings.chunkSize;
        journal_max_entries = Nat64.fromNat(state.settings.journalMaxEntries);
        journal_max_bytes = Nat64.fromNat(state.settings.journalMaxBytes);
      };
    };

  };

  func notAPeer(target : Principal) : Types.Error {
    #InvalidArgument("push target " # Principal.toText(target) # " is not a trusted peer of this canister; add it with icrp_set_peers");
  };

};
