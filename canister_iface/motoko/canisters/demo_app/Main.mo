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
/// pictures in steps, `stats()` reports counts, bytes and a fingerprint of
/// the whole state (equal fingerprints = equal state), `wipe()` empties it.

import Array "mo:core/Array";
import Blob "mo:core/Blob";
import InternetComputer "mo:core/InternetComputer";
import List "mo:core/List";
import Map "mo:core/pure/Map";
import Nat "mo:core/Nat";
import Nat8 "mo:core/Nat8";
import Nat64 "mo:core/Nat64";
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
  };

  let kv = KvState.empty();
  let icrpState = ICRP.init(ICRP.defaultSettings, []);
  transient let icrp = ICRP.Node(icrpState, KvState.hooks(kv));

  // ---- ICRP (see canister_iface/icrp.did) ------------------------------------

  public shared query ({ caller }) func icrp_info() : async Types.Info {
    icrp.info(caller);
  };
  public shared ({ caller }) func icrp_begin_export() : async Result<Types.ExportTicket> {
    icrp.beginExport(caller);
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
  public shared query ({ caller }) func icrp_changes(since : Nat64, maxBytes : Nat64) : async Result<Types.ChangeBatch> {
    icrp.changes(caller, since, maxBytes);
  };
  public shared ({ caller }) func icrp_apply(batch : Types.ChangeBatch) : async Result<Nat64> {
    icrp.apply(caller, batch);
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
  public shared ({ caller }) func icrp_set_peers(peers : [Principal]) : async Result<()> {
    icrp.setPeers(caller, peers);
  };
  public shared ({ caller }) func icrp_set_key_range(range : ?Types.KeyRange) : async Result<()> {
    icrp.setKeyRange(caller, range);
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

  /// Keys must belong to this canister (shards own a range of user ids).
  func owned(key : Blob) : Result.Result<(), Text> {
    if (icrp.ownsKey(key)) #ok else #err("this shard does not own that user id");
  };

  func newUser(owner : Principal, name : Text, bio : Text) : Result.Result<Nat64, Text> {
    let id : Nat64 = switch (Map.maxEntry(kv.map)) {
      case (?(key, _)) keyUser(key) + 1;
      case null 1;
    };
    switch (owned(userKey(id))) { case (#err e) return #err e; case (#ok) {} };
    storeUser(id, { name; bio; owner; created = now(); next_post = 0; next_picture = 0 });
    #ok id;
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

  public shared ({ caller }) func create_user(name : Text, bio : Text) : async Result.Result<Nat64, Text> {
    if (Principal.isAnonymous(caller)) return #err("sign in to create a user");
    newUser(caller, name, bio);
  };

  /// Adds a post (with an optional picture) to `user`, which the caller owns.
  public shared ({ caller }) func add_post(user : Nat64, text : Text, picture : ?Blob) : async Result.Result<Nat64, Text> {
    switch (owned(userKey(user))) { case (#err e) return #err e; case (#ok) {} };
    let u = switch (loadUser(user)) { case (?u) u; case null return #err("no such user") };
    if (u.owner != caller) return #err("only the owner of a user can post as that user");
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

  /// A generation job: deterministic in its seed.
  type Job = {
    mib : Nat;
    seed : Nat;
    var rng : Nat64;
    var done : Nat;
  };

  var job : ?Job = null;

  /// Instruction budget of one generate/wipe call (of 40 B per update).
  let STEP_INSTRUCTIONS : Nat64 = 10_000_000_000;

  func moreWork() : Bool = InternetComputer.performanceCounter(0) < STEP_INSTRUCTIONS;

  /// Creates about `mib` MiB of synthetic users, posts and pictures, in
  /// steps: call repeatedly with the same arguments until `finished`.
  /// Calling again after that does nothing (so retries are harmless); use
  /// another seed for more data. Controllers only.
  public shared ({ caller }) func generate(mib : Nat, seed : Nat) : async Result.Result<GenerateProgress, Text> {
    if (not Principal.isController(caller)) return #err("generate is for controllers only");
    let j = switch job {
      case (?j) if (j.mib == mib and j.seed == seed) j else startJob(mib, seed);
      case null startJob(mib, seed);
    };
    let target = mib * 1_048_576;
    while (j.done < target and moreWork()) {
      switch (generateUser(j)) {
        case (#err e) return #err e;
        case (#ok) {};
      };
    };
    #ok { target_bytes = target; done_bytes = j.done; finished = j.done >= target };
  };

  func startJob(mib : Nat, seed : Nat) : Job {
    let j : Job = { mib; seed; var rng = Nat64.fromIntWrap(seed) ^ 0x5eed_5eed_5eed_5eed; var done = 0 };
    job := ?j;
    j;
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
      case (#err e) return #err e;
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
    };
  };

  /// Deletes the whole state in steps (journaled, so a standby follows):
  /// returns the number of records left; call until it is 0. Controllers
  /// only.
  public shared ({ caller }) func wipe() : async Result.Result<Nat, Text> {
    if (not Principal.isController(caller)) return #err("wipe is for controllers only");
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
