/// The types of the ICRP protocol, mirroring `canister_iface/icrp.did` (the
/// authority), plus the Motoko-side interfaces through which an application
/// plugs its state into the library.
///
/// Candid field names are snake_case, as in the .did file; a canister that
/// uses these types in its public methods exports exactly the ICRP service.

import Region "mo:core/Region";
import Iter "mo:core/Iter";

module {

  /// The protocol version this library implements.
  public let PROTOCOL_VERSION : Nat32 = 1;

  /// Default image chunk size: 1 MiB.
  public let DEFAULT_CHUNK_SIZE : Nat64 = 1_048_576;

  /// Largest read, write or push payload: leaves room for the Candid
  /// envelope within the IC's 2 MiB message and response limits.
  public let MAX_TRANSFER : Nat64 = 2_000_000;

  // ---- Candid types (see icrp.did for the documentation) -------------------

  public type SnapshotId = Nat64;
  public type ImportId = Nat64;

  public type Role = { #app; #backup; #shard };

  public type KeyRange = { lower : Blob; upper : ?Blob };

  public type ImageInfo = {
    snapshot_id : SnapshotId;
    size : Nat64;
    chunk_size : Nat64;
    digest : ?Blob;
  };

  public type JournalInfo = {
    head_seq : Nat64;
    oldest_seq : Nat64;
    entries : Nat64;
    bytes : Nat64;
  };

  public type Mode = { #primary; #standby; #read_only };

  public type ModeInfo = {
    mode : Mode;
    redirect : ?Principal;
    changed_at : Nat64;
    journal_seq : Nat64;
  };

  public type Info = {
    protocol_version : Nat32;
    role : Role;
    capabilities : [Text];
    trusted : Bool;
    max_transfer_bytes : Nat64;
    image : ?ImageInfo;
    journal : ?JournalInfo;
    key_range : ?KeyRange;
    mode : ?ModeInfo;
  };

  public type ExportState = { #preparing : { done_bytes : Nat64 }; #ready };

  public type ImageOrigin = {
    source : Principal;
    snapshot_id : SnapshotId;
    received_at : Nat64;
  };

  public type ExportTicket = {
    snapshot_id : SnapshotId;
    state : ExportState;
    size : Nat64;
    chunk_size : Nat64;
    chunk_count : Nat64;
    digest : ?Blob;
    journal_seq : Nat64;
    created_at : Nat64;
    origin : ?ImageOrigin;
  };

  public type PushAck = { bytes : Nat64; committed_bytes : Nat64 };

  public type ImportSpec = {
    source : Principal;
    snapshot_id : SnapshotId;
    size : Nat64;
    chunk_size : Nat64;
    digest : Blob;
    chunk_digests : ?[Blob];
    journal_seq : Nat64;
  };

  public type ImportState = {
    #receiving;
    #committing : { done_bytes : Nat64 };
    #committed : { snapshot_id : ?SnapshotId };
    #aborted : { reason : Text };
  };

  public type ImportStatus = {
    import_id : ImportId;
    source : Principal;
    snapshot_id : SnapshotId;
    size : Nat64;
    chunk_size : Nat64;
    digest : Blob;
    received_bytes : Nat64;
    chunks_done : [Bool];
    state : ImportState;
  };

  public type CommitState = {
    #restoring : { done_bytes : Nat64 };
    // `digest`: of the image the canister now serves under `snapshot_id`
    // (backup canisters; null from apps), so no further call checks it.
    #committed : { snapshot_id : ?SnapshotId; digest : ?Blob };
  };

  public type Op = {
    #put : { key : Blob; value : Blob };
    #delete : { key : Blob };
    #app : Blob;
  };

  public type Change = { seq : Nat64; time : Nat64; op : Op };

  public type ChangeBatch = {
    from_seq : Nat64;
    to_seq : Nat64;
    head_seq : Nat64;
    changes : [Change];
  };

  public type Backlog = {
    since_seq : Nat64;
    head_seq : Nat64;
    changes : Nat64;
    bytes : Nat64;
    oldest_time : ?Nat64;
    head_time : ?Nat64;
  };

  public type PushChangesAck = {
    to_seq : Nat64;
    head_seq : Nat64;
    changes : Nat64;
    bytes : Nat64;
    applied_seq : Nat64;
  };

  public type Record = { key : Blob; value : Blob };

  public type RecordBatch = {
    records : [Record];
    next_cursor : ?Blob;
    journal_seq : Nat64;
  };

  public type DeleteProgress = { deleted : Nat64; next_cursor : ?Blob; bytes : Nat64 };

  public type KeyBucket = { first_key : Blob; records : Nat64; bytes : Nat64 };

  public type KeyDistribution = {
    buckets : [KeyBucket];
    next_cursor : ?Blob;
    journal_seq : Nat64;
  };

  public type RangeDigest = {
    records : Nat64;
    bytes : Nat64;
    digest : Blob;
    next_cursor : ?Blob;
    journal_seq : Nat64;
  };

  public type Fence = { range : KeyRange; owner : ?Principal };

  public type Route = { range : KeyRange; canister : Principal };

  public type Routing = { version : Nat64; routes : [Route] };

  public type FleetMember = { canister : Principal; added_at : Nat64 };

  public type FleetPage = { members : [FleetMember]; next_cursor : ?Principal };

  public type Config = {
    role : Role;
    peers : [Principal];
    key_range : ?KeyRange;
    chunk_size : Nat64;
    journal_max_entries : Nat64;
    journal_max_bytes : Nat64;
    fences : [Fence];
    mode : ?ModeInfo;
  };

  /// The trusted peers and the version of that set (icrp_peers,
  /// icrp_update_peers): every change of the set increases the version.
  public type Peers = { peers : [Principal]; version : Nat64 };

  /// icrp_update_peers: applied (the set and version now), or refused
  /// because the version was not the expected one (the current ones).
  public type PeersUpdate = { #updated : Peers; #conflict : Peers };

  public type Error = {
    #NotAuthorized : { caller : Principal };
    #StaleSnapshot : { requested : SnapshotId; current : ?SnapshotId };
    #NotReady : { snapshot_id : SnapshotId; done_bytes : Nat64 };
    #NotFound : Text;
    #Conflict : { offset : Nat64 };
    #DigestMismatch : { chunk : ?Nat64; expected : Blob; actual : Blob };
    #Incomplete : { missing_chunks : Nat64; first_missing : Nat64 };
    #TooOld : { oldest_seq : Nat64 };
    #Gap : { applied_seq : Nat64; from_seq : Nat64 };
    #OutOfRange : { key : Blob; owner : ?Principal };
    #ImageFormat : Text;
    #Busy : Text;
    #OutOfMemory : { requested_bytes : Nat64 };
    #InvalidArgument : Text;
    #Unsupported : Text;
    #Target : Error;
    #CallFailed : { code : Nat32; message : Text };
    #NotWritable : { mode : Mode; redirect : ?Principal };
  };

  public type Result<T> = { #ok : T; #err : Error };

  // ---- Library interfaces (Motoko only) -----------------------------------

  /// Where a `Producer` writes the image: appends at the end. Writing
  /// after the sink failed (out of memory) is ignored; the library reports
  /// the failure.
  public type Sink = {
    append : (bytes : Blob) -> ();
    appendNat32 : (value : Nat32) -> (); // little-endian
    appendNat64 : (value : Nat64) -> (); // little-endian
    size : () -> Nat64;
  };

  /// Serialises a frozen view of the application state, in steps.
  public type Producer = {
    /// Appends the next part of the image to `sink` and keeps going while
    /// `more()` is true. Returns true once the whole image is written.
    /// `more()` turns false when the message's step budget is used up; a
    /// single record may overshoot it a little.
    next : (sink : Sink, more : () -> Bool) -> Bool;
  };

  /// Reads an image from a region, from `pos` up to `end`.
  public type Source = {
    region : Region.Region;
    var pos : Nat64;
    end : Nat64;
  };

  /// Rebuilds application state from an image, in steps, on the side: the
  /// current state must stay untouched until `install`.
  public type Restorer = {
    /// Consumes the image from `source.pos` while `more()` is true.
    /// Returns #ok(true) when the whole image has been consumed, #ok(false)
    /// to be called again in the next message, #err(reason) when the image
    /// cannot be decoded.
    next : (source : Source, more : () -> Bool) -> { #ok : Bool; #err : Text };
    /// Makes the rebuilt state current. Called once, after `next`
    /// returned #ok(true), in the same message.
    install : () -> ();
  };

  /// Ordered key-value access for key ranges and journal replay.
  public type Store = {
    /// Records with key >= from, in ascending key order.
    entriesFrom : (from : Blob) -> Iter.Iter<(Blob, Blob)>;
    put : (key : Blob, value : Blob) -> ();
    delete : (key : Blob) -> ();
  };

  /// What an application plugs into the library (see `lib.mo`).
  public type Hooks = {
    /// Captures a consistent view of the replicable state and returns a
    /// producer that serialises it. Called in the message that begins an
    /// export; the view must not change afterwards (persistent data
    /// structures make this O(1)).
    freeze : () -> Producer;
    /// A fresh restorer for an import being committed.
    restorer : () -> Restorer;
    /// Key-value access, if the state is a key-value store: enables the
    /// key-range methods and the replay of #put / #delete changes.
    store : ?Store;
    /// Replays an application-defined change (#app) on a standby.
    applyApp : ?((change : Blob) -> { #ok; #err : Text });
  };

};
