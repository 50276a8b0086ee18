/// A small social network (users, posts, pictures as blobs) that embeds the
/// ICRP library: the canister the demo backs up, restores, keeps a standby
/// of and splits into shards.
///
/// Its state is a key-value store (`KvState`) keyed so that a user's data
/// is contiguous, which makes user-id ranges natural shard ranges:
///
///   user      be64(user) ‖ 0x00               → Candid User
///   post      be64(user) ‖ 0x01 ‖ be64(post)   → Candid Post
///   picture   be64(user) ‖ 0x02 ‖ be64(pic)    → the picture bytes
///
/// Every change goes through the ICRP node, so it is journaled for hot
/// standbys; the image is the serialised store and committing an import
/// rebuilds the store from it.
///
/// For the demo: `generate(mib, seed)` creates synthetic users, posts and
/// pictures in steps, `generate_keys(keys, seed)` many small records with
/// skewed sizes (a few users with thousands of posts, most with a handful;
/// rare pictures), `stats()` reports counts, bytes, memory and a
/// fingerprint of the whole state (equal fingerprints = equal state),
/// `wipe()` empties it.
///
/// Writes are refused with the ICRP error the node gives (`#refused`):
/// `NotWritable` while the canister is a standby or fenced (read-only),
/// `OutOfRange` naming the owning canister for a user this shard does not
/// own or whose range was fenced at the cut-over of a split.

import Array "mo:core/Array";
import Blob "mo:core/Blob";
import Error "mo:core/Error";
import InternetComputer "mo:core/InternetComputer";
import List "mo:core/List";
import Map "mo:core/pure/Map";
import Nat "mo:core/Nat";
import Nat8 "mo:core/Nat8";
import Nat64 "mo:core/Nat64";
import Prim "mo:⛔";
import Principal "mo:core/Principal";
import Result "mo:core/Result";
import Text "mo:core/Text";
import Time "mo:core/Time";
import VarArray "mo:core/VarArray";
import ICRP "mo:icrp";
import KvState "mo:icrp/KvState";
import Types "mo:icrp/Types";

persistent actor DemoApp {

  type Result<T> = Types.Result<T>;

  public type User = {
    name : Text;
    bio : Text;
    owner : Principal;
    created : Nat64;
    next_post : Nat64;
    next_picture : Nat64;
  };

  public type Post = {
    text : Text;
    picture : ?Nat64;
    created : Nat64;
  };

  public type Stats = {
    users : Nat;
    posts : Nat;
    pictures : Nat;
    picture_bytes : Nat;
    records : Nat;
    state_bytes : Nat; // keys and values
    fingerprint : Nat64; // equal state ⇒ equal fingerprint
    journal_head : Nat64;
    heap_bytes : Nat; // heap in use now: live data and garbage not yet collected
    max_live_bytes : Nat; // the largest live heap a garbage collection found
    memory_bytes : Nat; // Wasm memory the canister grew to (it never shrinks)
  };

  /// Why a write was refused.
  public type WriteError = {
    /// The replication protocol refuses it: NotWritable (standby, fenced)
    /// or OutOfRange (another canister owns the user: send it there).
    #refused : Types.Error;
    /// The request itself is wrong (no such user, not its owner, ...).
    #invalid : Text;
  };

  public type KeysProgress = {
    target_keys : Nat;
    done_keys : Nat;
    bytes : Nat;
    finished : Bool;
  };

  public type GenerateProgress = {
    target_bytes : Nat;
    done_bytes : Nat;
    finished : Bool;
  };

  public type Settings = {
    chunk_size : Nat64;
    journal_max_entries : Nat;
    journal_max_bytes : Nat;
    step_instructions : Nat64;
    step_bytes : Nat64;
    query_instructions : ?Nat64; // a page of a range scan; null: the default
  };

  let kv = KvState.empty();
  let icrpState = ICRP.init(ICRP.defaultSettings, []);
  transient let icrp = do {
    let node = ICRP.Node(icrpState, KvState.hooks(kv));
    node.declare("read_for_write"); // icrp_read_for_write below
    node;
  };

  // ---- ICRP (see canister_iface/icrp.did) ------------------------------------

  public shared query ({ caller }) func icrp_info() : async Types.Info {
    icrp.info(caller);
  };
  public shared ({ caller }) func icrp_begin_export() : async Result<Types.ExportTicket> {
    icrp.beginExport(caller);
  };
  public shared ({ caller }) func icrp_begin_export_at(seq : Nat64) : async Result<Types.ExportTicket> {
    icrp.beginExportAt(caller, seq);
  };
  public shared ({ caller }) func icrp_export_status(id : Nat64) : async Result<Types.ExportTicket> {
    icrp.exportStatus(caller, id);
  };
  public shared query ({ caller }) func icrp_list_images() : async Result<[Types.ExportTicket]> {
    icrp.listImages(caller);
  };
  public shared query ({ caller }) func icrp_read(id : Nat64, offset : Nat64, len : Nat64) : async Result<Blob> {
    icrp.read(caller, id, offset, len);
  };
  public shared query ({ caller }) func icrp_read_for_write(id : Nat64, importId : Nat64, offset : Nat64, len : Nat64) : async (Nat64, Nat64, Blob) {
    switch (icrp.readForWrite(caller, id, importId, offset, len)) {
      case (#ok answer) answer;
      case (#err e) throw Error.reject(ICRP.readForWriteRefusal(e));
    };
  };
  public shared query ({ caller }) func icrp_chunk_digests(id : Nat64, first : Nat64, count : Nat64) : async Result<[Blob]> {
    icrp.chunkDigests(caller, id, first, count);
  };
  public shared ({ caller }) func icrp_push(target : Principal, id : Nat64, importId : Nat64, offset : Nat64, len : Nat64) : async Result<Types.PushAck> {
    await* icrp.push(caller, target, id, importId, offset, len);
  };
  public shared ({ caller }) func icrp_end_export(id : Nat64) : async Result<()> {
    icrp.endExport(caller, id);
  };
  public shared ({ caller }) func icrp_begin_import(spec : Types.ImportSpec) : async Result<Nat64> {
    icrp.beginImport(caller, spec);
  };
  public shared ({ caller }) func icrp_write(id : Nat64, offset : Nat64, data : Blob) : async Result<Nat64> {
    icrp.write(caller, id, offset, data);
  };
  public shared query ({ caller }) func icrp_import_status(id : Nat64) : async Result<Types.ImportStatus> {
    icrp.importStatus(caller, id);
  };
  public shared ({ caller }) func icrp_commit_import(id : Nat64) : async Result<Types.CommitState> {
    icrp.commitImport(caller, id);
  };
  public shared ({ caller }) func icrp_abort_import(id : Nat64) : async Result<()> {
    icrp.abortImport(caller, id);
  };
  public shared query ({ caller }) func icrp_changes(since : Nat64, maxBytes : Nat64, range : ?Types.KeyRange) : async Result<Types.ChangeBatch> {
    icrp.changes(caller, since, maxBytes, range);
  };
  public shared ({ caller }) func icrp_apply(batch : Types.ChangeBatch) : async Result<Nat64> {
    icrp.apply(caller, batch);
  };
  public shared ({ caller }) func icrp_push_changes(target : Principal, since : Nat64, maxBytes : Nat64, range : ?Types.KeyRange) : async Result<Types.PushChangesAck> {
    await* icrp.pushChanges(caller, target, since, maxBytes, range);
  };
  public shared query ({ caller }) func icrp_backlog(since : Nat64) : async Result<Types.Backlog> {
    icrp.backlog(caller, since);
  };
  public shared query ({ caller }) func icrp_export_range(range : Types.KeyRange, cursor : ?Blob, maxBytes : Nat64) : async Result<Types.RecordBatch> {
    icrp.exportRange(caller, range, cursor, maxBytes);
  };
  public shared ({ caller }) func icrp_import_records(records : [Types.Record]) : async Result<Nat64> {
    icrp.importRecords(caller, records);
  };
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
  public shared query ({ caller }) func icrp_routing() : async Result<Types.Routing> {
    icrp.routing(caller);
  };
  public shared ({ caller }) func icrp_set_peers(peers : [Principal]) : async Result<()> {
    icrp.setPeers(caller, peers);
  };
  public shared ({ caller }) func icrp_set_key_range(range : ?Types.KeyRange) : async Result<()> {
    icrp.setKeyRange(caller, range);
  };
  public shared ({ caller }) func icrp_reset_journal(seq : Nat64) : async Result<()> {
    icrp.resetJournal(caller, seq);
  };
  public shared ({ caller }) func icrp_set_mode(mode : Types.Mode, redirect : ?Principal) : async Result<Types.ModeInfo> {
    icrp.setMode(caller, mode, redirect);
  };
  public shared ({ caller }) func icrp_set_fences(fences : [Types.Fence]) : async Result<Nat64> {
    icrp.setFences(caller, fences);
  };
  public shared ({ caller }) func icrp_set_routing(routing : Types.Routing) : async Result<()> {
    icrp.setRouting(caller, routing);
  };
  public shared query ({ caller }) func icrp_config() : async Result<Types.Config> {
    icrp.config(caller);
  };
  public shared query ({ caller }) func icrp_peers() : async Result<Types.Peers> {
    icrp.peers(caller);
  };
  public shared ({ caller }) func icrp_update_peers(add : [Principal], remove : [Principal], expected_version : ?Nat64) : async Result<Types.PeersUpdate> {
    icrp.updatePeers(caller, add, remove, expected_version);
  };

  /// Tunes replication (controllers only): e.g. small steps to exercise
  /// stepwise export in tests.
  public shared ({ caller }) func set_replication_settings(s : Settings) : async Result<()> {
    icrp.setSettings(
      caller,
      {
        chunkSize = s.chunk_size;
        journalMaxEntries = s.journal_max_entries;
        journalMaxBytes = s.journal_max_bytes;
        stepInstructions = s.step_instructions;
        stepBytes = s.step_bytes;
        queryInstructions = switch (s.query_instructions) {
          case (?n) n;
          case null ICRP.defaultSettings.queryInstructions;
        };
      },
    );
  };

  // ---- keys and records ----------------------------------------------------------

  let TAG_USER : Nat8 = 0;
  let TAG_POST : Nat8 = 1;
  let TAG_PICTURE : Nat8 = 2;

  func be64(x : Nat64) : [Nat8] {
    Array.tabulate<Nat8>(8, func i = Nat8.fromNat64((x >> Nat64.fromNat(56 - 8 * i)) & 0xff));
  };

  func userKey(user : Nat64) : Blob = Blob.fromArray(Array.concat(be64(user), [TAG_USER]));

  func itemKey(user : Nat64, tag : Nat8, id : Nat64) : Blob {
    Blob.fromArray(Array.flatten<Nat8>([be64(user), [tag], be64(id)]));
  };

  /// The user id a key belongs to.
  func keyUser(key : Blob) : Nat64 {
    var x : Nat64 = 0;
    var i = 0;
    while (i < 8) {
      x := (x << 8) | Nat64.fromNat(Nat8.toNat(key[i]));
      i += 1;
    };
    x;
  };

  func now() : Nat64 = Nat64.fromIntWrap(Time.now());

  func loadUser(user : Nat64) : ?User {
    switch (KvState.get(kv, userKey(user))) {
      case (?bytes) from_candid (bytes);
      case null null;
    };
  };

  func storeUser(user : Nat64, u : User) {
    icrp.put(userKey(user), to_candid (u));
  };

  /// The node must accept writes of every key (its mode, a shard's range,
  /// fenced ranges); otherwise the ICRP error, for the client.
  func writable(keys : [Blob]) : Result.Result<(), WriteError> {
    for (key in keys.vals()) {
      switch (icrp.checkWrite(key)) { case (#err e) return #err(#refused e); case (#ok) {} };
    };
    #ok;
  };

  func newUser(owner : Principal, name : Text, bio : Text) : Result.Result<Nat64, WriteError> {
    let id : Nat64 = switch (Map.maxEntry(kv.map)) {
      case (?(key, _)) keyUser(key) + 1;
      case null 1;
    };
    switch (writable([userKey(id)])) { case (#err e) return #err e; case (#ok) {} };
    storeUser(id, { name; bio; owner; created = now(); next_post = 0; next_picture = 0 });
    #ok id;
  };

  /// Every key `newPost` writes.
  func postKeys(user : Nat64, u : User, picture : Bool) : [Blob] {
    let post = [userKey(user), itemKey(user, TAG_POST, u.next_post)];
    if (picture) Array.concat(post, [itemKey(user, TAG_PICTURE, u.next_picture)]) else post;
  };

  func newPost(user : Nat64, u : User, text : Text, picture : ?Blob) : Nat64 {
    let postId = u.next_post;
    let pictureId = switch picture {
      case (?bytes) {
        icrp.put(itemKey(user, TAG_PICTURE, u.next_picture), bytes);
        ?u.next_picture;
      };
      case null null;
    };
    icrp.put(itemKey(user, TAG_POST, postId), to_candid ({ text; picture = pictureId; created = now() } : Post));
    storeUser(user, { u with next_post = postId + 1; next_picture = u.next_picture + (if (pictureId == null) 0 else 1) });
    postId;
  };

  // ---- social network API ------------------------------------------------------

  public shared ({ caller }) func create_user(name : Text, bio : Text) : async Result.Result<Nat64, WriteError> {
    if (Principal.isAnonymous(caller)) return #err(#invalid "sign in to create a user");
    newUser(caller, name, bio);
  };

  /// Adds a post (with an optional picture) to `user`, which the caller owns.
  public shared ({ caller }) func add_post(user : Nat64, text : Text, picture : ?Blob) : async Result.Result<Nat64, WriteError> {
    // A user another shard owns is named by the node before "no such user".
    switch (writable([userKey(user)])) { case (#err e) return #err e; case (#ok) {} };
    let u = switch (loadUser(user)) { case (?u) u; case null return #err(#invalid "no such user") };
    if (u.owner != caller) return #err(#invalid "only the owner of a user can post as that user");
    switch (writable(postKeys(user, u, picture != null))) { case (#err e) return #err e; case (#ok) {} };
    #ok(newPost(user, u, text, picture));
  };

  public query func get_user(user : Nat64) : async ?User {
    loadUser(user);
  };

  public query func get_post(user : Nat64, post : Nat64) : async ?Post {
    switch (KvState.get(kv, itemKey(user, TAG_POST, post))) {
      case (?bytes) from_candid (bytes);
      case null null;
    };
  };

  public query func get_picture(user : Nat64, picture : Nat64) : async ?Blob {
    KvState.get(kv, itemKey(user, TAG_PICTURE, picture));
  };

  /// Up to `limit` (at most 100) posts of `user` from post id `from` on.
  public query func list_posts(user : Nat64, from : Nat64, limit : Nat) : async [(Nat64, Post)] {
    let out = List.empty<(Nat64, Post)>();
    let end = itemKey(user, TAG_POST + 1, 0);
    label scan for ((key, value) in KvState.entriesFrom(kv, itemKey(user, TAG_POST, from))) {
      if (key >= end or List.size(out) >= Nat.min(limit, 100)) break scan;
      switch (from_candid (value) : ?Post) {
        case (?p) List.add(out, (keyId(key), p));
        case null {};
      };
    };
    List.toArray(out);
  };

  /// The item id in the last eight bytes of a post or picture key.
  func keyId(key : Blob) : Nat64 {
    var x : Nat64 = 0;
    var i = 9;
    while (i < 17) {
      x := (x << 8) | Nat64.fromNat(Nat8.toNat(key[i]));
      i += 1;
    };
    x;
  };

  // ---- demo ----------------------------------------------------------------------

  /// A generation job: deterministic in its seed. `size` is MiB for
  /// `generate`, keys for `generate_keys`; `done` counts the same unit
  /// (bytes or keys).
  type Job = {
    kind : { #bytes; #keys };
    size : Nat;
    seed : Nat;
    var rng : Nat64;
    var done : Nat;
  };

  var job : ?Job = null;

  /// Instruction budget of one generate/wipe call (of 40 B per update).
  /// Small, because the garbage collector runs between messages: the
  /// garbage one step leaves (about 0.5 GB per 10 B instructions of
  /// `generate_keys`) would otherwise raise the Wasm memory for good.
  let STEP_INSTRUCTIONS : Nat64 = 2_000_000_000;

  func moreWork() : Bool = InternetComputer.performanceCounter(0) < STEP_INSTRUCTIONS;

  /// Creates about `mib` MiB of synthetic users, posts and pictures, in
  /// steps: call repeatedly with the same arguments until `finished`.
  /// Calling again after that does nothing (so retries are harmless); use
  /// another seed for more data. Controllers only.
  public shared ({ caller }) func generate(mib : Nat, seed : Nat) : async Result.Result<GenerateProgress, Text> {
    if (not Principal.isController(caller)) return #err("generate is for controllers only");
    switch (icrp.checkAppWrite()) { case (#err e) return #err(refusal(e)); case (#ok) {} };
    let j = jobFor(#bytes, mib, seed);
    let target = mib * 1_048_576;
    while (j.done < target and moreWork()) {
      switch (generateUser(j)) {
        case (#err e) return #err e;
        case (#ok) {};
      };
    };
    #ok { target_bytes = target; done_bytes = j.done; finished = j.done >= target };
  };

  /// Creates about `keys` records of skewed sizes, in steps like
  /// `generate`: users whose post counts follow a power law (P(posts >= k)
  /// ~ 2 / (k + 1), up to 2,000: most users have a handful, a few have
  /// thousands), posts of 5-40 words, and a picture of 1-16 KiB with one
  /// post in 25. Records average ~300 bytes, so a million keys fit the
  /// heap. Controllers only.
  public shared ({ caller }) func generate_keys(keys : Nat, seed : Nat) : async Result.Result<KeysProgress, Text> {
    if (not Principal.isController(caller)) return #err("generate_keys is for controllers only");
    switch (icrp.checkAppWrite()) { case (#err e) return #err(refusal(e)); case (#ok) {} };
    let j = jobFor(#keys, keys, seed);
    while (j.done < keys and moreWork()) {
      switch (generateSkewedUser(j, keys - j.done)) {
        case (#err e) return #err e;
        case (#ok) {};
      };
    };
    #ok { target_keys = keys; done_keys = j.done; bytes = kv.bytes; finished = j.done >= keys };
  };

  /// The job for these arguments: the current one, or a new one.
  func jobFor(kind : { #bytes; #keys }, size : Nat, seed : Nat) : Job {
    switch job {
      case (?j) if (j.kind == kind and j.size == size and j.seed == seed) return j;
      case null {};
    };
    let j : Job = { kind; size; seed; var rng = Nat64.fromIntWrap(seed) ^ 0x5eed_5eed_5eed_5eed; var done = 0 };
    job := ?j;
    j;
  };

  func refusal(e : Types.Error) : Text {
    switch e {
      case (#NotWritable { mode }) "the canister is " # ICRP.modeName(mode) # ": it takes no writes";
      case (#OutOfRange _) "a key is owned by another canister";
      case _ "the write was refused";
    };
  };

  /// SplitMix64.
  func random(j : Job) : Nat64 {
    j.rng +%= 0x9e37_79b9_7f4a_7c15;
    var z = j.rng;
    z := (z ^ (z >> 30)) *% 0xbf58_476d_1ce4_e5b9;
    z := (z ^ (z >> 27)) *% 0x94d0_49bb_1331_11eb;
    z ^ (z >> 31);
  };

  func below(j : Job, n : Nat) : Nat = Nat64.toNat(random(j) % Nat64.fromNat(n));

  let WORDS = ["ic", "canister", "cycles", "motoko", "subnet", "backup", "restore", "shard", "standby", "image", "chunk", "digest", "journal", "query", "update", "replica", "stable", "memory", "region", "principal"];

  func sentence(j : Job, words : Nat) : Text {
    var t = "";
    var i = 0;
    while (i < words) {
      t #= (if (i == 0) "" else " ") # WORDS[below(j, WORDS.size())];
      i += 1;
    };
    t;
  };

  /// Pseudo-random bytes: eight per generator step.
  func randomBytes(j : Job, n : Nat) : Blob {
    let a = VarArray.repeat<Nat8>(0, n);
    var i = 0;
    while (i < n) {
      var x = random(j);
      var k = 0;
      while (k < 8 and i < n) {
        a[i] := Nat8.fromNat64(x & 0xff);
        x >>= 8;
        i += 1;
        k += 1;
      };
    };
    Blob.fromVarArray(a);
  };

  /// One user with 1-5 posts, about half of them with a picture of
  /// 16-192 KiB.
  func generateUser(j : Job) : Result.Result<(), Text> {
    let before = kv.bytes;
    let user = switch (newUser(Principal.fromActor(DemoApp), "user-" # Nat64.toText(random(j) % 1_000_000), sentence(j, 8 + below(j, 16)))) {
      case (#ok id) id;
      case (#err(#refused e)) return #err(refusal(e));
      case (#err(#invalid e)) return #err e;
    };
    let posts = 1 + below(j, 5);
    var p = 0;
    while (p < posts) {
      let u = switch (loadUser(user)) { case (?u) u; case null return #err("generated user vanished") };
      let picture = if (below(j, 2) == 0) ?randomBytes(j, 16_384 + below(j, 176 * 1024)) else null;
      ignore newPost(user, u, sentence(j, 10 + below(j, 40)), picture);
      p += 1;
    };
    // Overwritten user records keep their size, so the state only grows.
    j.done += kv.bytes - Nat.min(before, kv.bytes);
    #ok;
  };

  /// Longest user of `generate_keys`.
  let MAX_POSTS = 2_000;

  /// One user of `generate_keys` with at most `room` keys: posts written
  /// directly, the user record once at the end.
  func generateSkewedUser(j : Job, room : Nat) : Result.Result<(), Text> {
    let tail = 2 * 1_048_576 / (1 + below(j, 1_048_576)); // 2 .. 2^21, P(>= k) ~ 2 / k
    let posts = Nat.max(1, Nat.min(Nat.min(tail - 1, MAX_POSTS), Nat.max(room, 2) - 1));
    let user = switch (newUser(Principal.fromActor(DemoApp), "user-" # Nat64.toText(random(j) % 1_000_000), sentence(j, 3 + below(j, 8)))) {
      case (#ok id) id;
      case (#err(#refused e)) return #err(refusal(e));
      case (#err(#invalid e)) return #err e;
    };
    var pictures : Nat64 = 0;
    var p = 0;
    while (p < posts) {
      let picture : ?Nat64 = if (below(j, 25) == 0) {
        icrp.put(itemKey(user, TAG_PICTURE, pictures), randomBytes(j, 1024 + below(j, 15 * 1024)));
        pictures += 1;
        ?(pictures - 1);
      } else null;
      let post : Post = { text = sentence(j, 5 + below(j, 36)); picture; created = now() };
      icrp.put(itemKey(user, TAG_POST, Nat64.fromNat(p)), to_candid (post));
      p += 1;
    };
    switch (loadUser(user)) {
      case (?u) storeUser(user, { u with next_post = Nat64.fromNat(posts); next_picture = pictures });
      case null return #err("generated user vanished");
    };
    j.done += 1 + posts + Nat64.toNat(pictures);
    #ok;
  };

  public query func stats() : async Stats {
    var users = 0;
    var posts = 0;
    var pictures = 0;
    var pictureBytes = 0;
    for ((key, value) in Map.entries(kv.map)) {
      if (key.size() == 9) users += 1 else if (key.size() == 17) {
        if (key[8] == TAG_POST) posts += 1 else if (key[8] == TAG_PICTURE) {
          pictures += 1;
          pictureBytes += value.size();
        };
      };
    };
    {
      users;
      posts;
      pictures;
      picture_bytes = pictureBytes;
      records = KvState.size(kv);
      state_bytes = kv.bytes;
      fingerprint = kv.fingerprint;
      journal_head = icrpState.journal.head;
      heap_bytes = Prim.rts_heap_size();
      max_live_bytes = Prim.rts_max_live_size();
      memory_bytes = Prim.rts_memory_size();
    };
  };

  /// Deletes the whole state in steps (journaled, so a standby follows):
  /// returns the number of records left; call until it is 0. Controllers
  /// only.
  public shared ({ caller }) func wipe() : async Result.Result<Nat, Text> {
    if (not Principal.isController(caller)) return #err("wipe is for controllers only");
    switch (icrp.checkAppWrite()) { case (#err e) return #err(refusal(e)); case (#ok) {} };
    job := null;
    label deleting while (moreWork()) {
      switch (Map.minEntry(kv.map)) {
        case (?(key, _)) icrp.delete(key);
        case null break deleting;
      };
    };
    #ok(KvState.size(kv));
  };

};
