/// Self-test of the ICRP Motoko library internals (canister_iface/motoko/src),
/// run inside a canister: SHA-256 against the FIPS 180-4 test vectors,
/// image chunking and digests against digests computed with Python's
/// hashlib, staged imports (out-of-order, idempotent and conflicting
/// writes, chunk verification), the journal (filtered reads, backlog), key
/// ranges, routing tables and fences, range digests and distributions,
/// fleets and the KvState image round trip.
///
/// `selftest()` returns the failures (empty = all passed); `measure()`
/// reports instruction counts of the hot paths.

import Array "mo:core/Array";
import Blob "mo:core/Blob";
import InternetComputer "mo:core/InternetComputer";
import List "mo:core/List";
import Nat "mo:core/Nat";
import Nat8 "mo:core/Nat8";
import Nat64 "mo:core/Nat64";
import Principal "mo:core/Principal";
import Region "mo:core/Region";
import Runtime "mo:core/Runtime";
import Text "mo:core/Text";
import VarArray "mo:core/VarArray";
import Fleet "mo:icrp/Fleet";
import Image "mo:icrp/Image";
import Journal "mo:icrp/Journal";
import KeyRange "mo:icrp/KeyRange";
import KvState "mo:icrp/KvState";
import RangeStats "mo:icrp/RangeStats";
import Routing "mo:icrp/Routing";
import Sha256 "mo:icrp/Sha256";
import Types "mo:icrp/Types";

persistent actor {

  // Regions for the tests, allocated once (regions cannot be freed).
  let regionA = Region.new();
  let regionB = Region.new();

  transient let failures = List.empty<Text>();

  func check(name : Text, ok : Bool) {
    if (not ok) List.add(failures, name);
  };

  func hex(b : Blob) : Text {
    let digits = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'];
    var t = "";
    for (x in b.vals()) {
      t #= Text.fromChar(digits[Nat8.toNat(x / 16)]) # Text.fromChar(digits[Nat8.toNat(x % 16)]);
    };
    t;
  };

  func checkHex(name : Text, actual : Blob, expected : Text) {
    let h = hex(actual);
    if (h != expected) List.add(failures, name # ": got " # h # ", expected " # expected);
  };

  func textBlob(t : Text) : Blob = Text.encodeUtf8(t);

  /// bytes(range(256)) * repeat, as in the Python reference values.
  func pattern(n : Nat) : Blob {
    Blob.fromArray(Array.tabulate<Nat8>(n, func i = Nat8.fromNat(i % 256)));
  };

  func sub(b : Blob, from : Nat, n : Nat) : Blob {
    Blob.fromArray(Array.tabulate<Nat8>(n, func i = b[from + i]));
  };

  func fill(region : Region.Region, data : Blob) {
    assert Image.ensureCapacity(region, Nat64.fromNat(data.size()));
    Region.storeBlob(region, 0, data);
  };

  // ---- SHA-256 ----------------------------------------------------------------

  func testSha256() {
    checkHex("sha256 empty", Sha256.digest(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    checkHex("sha256 abc", Sha256.digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    checkHex(
      "sha256 448-bit",
      Sha256.digest(textBlob("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    );
    checkHex(
      "sha256 896-bit",
      Sha256.digest(textBlob("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")),
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
    );
    // One million 'a': from a region (the chunk path) and as a blob.
    let million : Nat64 = 1_000_000;
    assert Image.ensureCapacity(regionA, million);
    var i : Nat64 = 0;
    while (i < million) {
      Region.storeNat64(regionA, i, 0x6161_6161_6161_6161);
      i += 8;
    };
    let expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    checkHex("sha256 million a (region)", Sha256.digestRegion(regionA, 0, million), expected);
    checkHex("sha256 million a (blob)", Sha256.digest(Region.loadBlob(regionA, 0, 1_000_000)), expected);
    // Incremental feeding at odd boundaries gives the same digest.
    let h = Sha256.new();
    Sha256.writeBlob(h, Region.loadBlob(regionA, 0, 3));
    Sha256.writeRegion(h, regionA, 3, 61);
    Sha256.writeRegion(h, regionA, 64, 999_870);
    Sha256.writeBlob(h, Region.loadBlob(regionA, 999_934, 66));
    checkHex("sha256 million a (incremental)", Sha256.sum(h), expected);
    // Lengths around the padding boundary (55, 56, 63, 64, 65 bytes).
    for (n in [55, 56, 63, 64, 65].vals()) {
      let data = pattern(n);
      fill(regionB, data);
      check("sha256 region == blob at " # Nat.toText(n), Sha256.digestRegion(regionB, 0, Nat64.fromNat(n)) == Sha256.digest(data));
    };
    checkHex("sha256 pattern 76800", Sha256.digest(pattern(76_800)), "f8b0585eb91f58c007a5634362c9f90d8543822c113f702523bc7b73408a9392");
  };

  // ---- images -----------------------------------------------------------------

  /// bytes(range(256)) * 300 in chunks of 4096: reference values from
  /// Python's hashlib.
  let PATTERN_DIGEST = "10c1de9ed95a55f3ee09b009fd86609acad17e0bad13f133885265ac34a2172c";
  let PATTERN_LAST_CHUNK = "12adc9dff80688800f2f591f0da6ab2f8109d61d910697801f57669ec0d719d3";

  func buildImage(data : Blob, pieces : Nat) : Image.Image {
    let image = Image.new(regionA, 4096);
    Image.reset(image, 4096);
    let status : Image.SinkStatus = { var failedAt = null };
    let sink = Image.sink(image, status);
    var off = 0;
    while (off < data.size()) {
      let n = Nat.min(pieces, data.size() - off);
      sink.append(sub(data, off, n));
      off += n;
      while (Image.hashNextChunk(image)) {};
    };
    Image.seal(image);
    check("sink did not fail", status.failedAt == null);
    image;
  };

  func testImage() {
    let data = pattern(76_800);
    let image = buildImage(data, 1000);
    check("image size", image.size == 76_800);
    check("image chunk count", List.size(image.digests) == 19 and Image.chunkCount(76_800, 4096) == 19);
    switch (image.digest) {
      case (?d) checkHex("image digest", d, PATTERN_DIGEST);
      case null check("image sealed", false);
    };
    checkHex("image last chunk digest", List.at(image.digests, 18), PATTERN_LAST_CHUNK);
    switch (Image.read(image, 70_000, 10_000)) {
      case (#ok b) check("image read clamps at the end", b == sub(data, 70_000, 6_800));
      case (#err _) check("image read", false);
    };
    switch (Image.read(image, 80_000, 1)) {
      case (#err(#InvalidArgument _)) {};
      case _ check("image read beyond the end is rejected", false);
    };
    switch (Image.chunkDigests(image, 17, 10)) {
      case (#ok ds) check("chunk digests 17..", ds.size() == 2 and ds[1] == List.at(image.digests, 18));
      case (#err _) check("chunk digests", false);
    };
    // The empty image: no chunks, digest of the empty concatenation.
    let empty = buildImage("", 1);
    switch (empty.digest) {
      case (?d) checkHex("empty image digest", d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
      case null check("empty image sealed", false);
    };
    // The same bytes appended in other piece sizes give the same digests.
    let other = buildImage(data, 4096 * 3 + 17);
    check("digest independent of append sizes", other.digest == image.digest);
    check("digest recomputed from the chunks", image.digest == ?digestOf(data));
  };

  /// The image digest computed chunk by chunk from blobs.
  func digestOf(data : Blob) : Blob {
    let digests = List.empty<Blob>();
    var off = 0;
    while (off < data.size()) {
      let n = Nat.min(4096, data.size() - off);
      List.add(digests, Sha256.digest(sub(data, off, n)));
      off += n;
    };
    Image.imageDigest(digests);
  };

  func spec(data : Blob, withChunkDigests : Bool) : Types.ImportSpec {
    let image = buildImage(data, 4096);
    let ds = List.toArray(image.digests);
    {
      source = Principal.fromBlob("\04");
      snapshot_id = 7;
      size = Nat64.fromNat(data.size());
      chunk_size = 4096;
      digest = switch (image.digest) { case (?d) d; case null "" };
      chunk_digests = if withChunkDigests ?ds else null;
      journal_seq = 42;
    };
  };

  func stage(s : Types.ImportSpec) : Image.Staging {
    check("spec valid", Image.validateSpec(s) == null);
    switch (Image.stage(1, s, regionB)) {
      case (#ok st) st;
      case (#err _) { check("stage", false); Runtime.trap("stage failed") };
    };
  };

  func write(st : Image.Staging, data : Blob, off : Nat, n : Nat) : Types.Result<Nat64> {
    Image.write(st, Nat64.fromNat(off), sub(data, off, n));
  };

  func testStaging() {
    let data = pattern(76_800);
    // Out of order, spanning chunks, overlapping with equal bytes.
    let st = stage(spec(data, true));
    ignore write(st, data, 70_000, 6_800);
    ignore write(st, data, 0, 5_000);
    check("partial chunk not verified", st.verified[1] == null);
    ignore write(st, data, 4_000, 40_000); // overlaps [4000, 5000)
    check("received counts distinct bytes", st.received == 5_000 + 39_000 + 6_800);
    switch (write(st, data, 4_000, 100)) {
      case (#ok n) check("same bytes again are fine", n == st.received);
      case (#err _) check("idempotent write", false);
    };
    // Different bytes where bytes exist: Conflict at the first difference.
    let bad = Blob.fromArray(Array.tabulate<Nat8>(200, func i = if (i < 50) data[1_000 + i] else 0xee));
    switch (Image.write(st, 1_000, bad)) {
      case (#err(#Conflict { offset })) check("conflict offset", offset == 1_050);
      case _ check("conflicting write is rejected", false);
    };
    check("a conflicting write changes nothing", Region.loadBlob(regionB, 1_000, 200) == sub(data, 1_000, 200));
    switch (Image.verify(st)) {
      case (#err(#Incomplete { missing_chunks; first_missing })) check("incomplete import", missing_chunks == 8 and first_missing == 10);
      case _ check("commit before all chunks is Incomplete", false);
    };
    ignore write(st, data, 44_000, 26_000);
    check("all received", st.received == 76_800);
    switch (Image.verify(st)) {
      case (#ok) check("verified image carries its digest", st.image.digest == ?st.spec.digest);
      case (#err _) check("import verifies", false);
    };
    check("status: all chunks done", Array.all<Bool>(Image.status(st).chunks_done, func b = b));
    check("journal seq kept", st.spec.journal_seq == 42);

    // A corrupt chunk is rejected at once when chunk digests are known,
    // and can be written again.
    let st2 = stage(spec(data, true));
    let corrupt = Blob.fromArray(Array.tabulate<Nat8>(4096, func i = if (i == 7) 0 else data[8192 + i]));
    switch (Image.write(st2, 8_192, corrupt)) {
      case (#err(#DigestMismatch { chunk })) check("mismatching chunk index", chunk == ?2);
      case _ check("corrupt chunk is rejected", false);
    };
    check("rejected chunk is discarded", st2.received == 0 and st2.ranges[2].size() == 0);
    switch (write(st2, data, 8_192, 4_096)) {
      case (#ok n) check("rewritten chunk accepted", n == 4_096);
      case (#err _) check("rewrite after mismatch", false);
    };

    // Without chunk digests, corruption shows at commit.
    let st3 = stage(spec(data, false));
    ignore Image.write(st3, 0, Blob.fromArray(Array.tabulate<Nat8>(76_800, func i = if (i == 30_000) 1 else data[i])));
    switch (Image.verify(st3)) {
      case (#err(#DigestMismatch { chunk = null })) {};
      case _ check("image digest mismatch at commit", false);
    };

    // Bad specs.
    let good = spec(data, true);
    check("chunk size too small", Image.validateSpec({ good with chunk_size = 100 : Nat64 }) != null);
    check("short digest", Image.validateSpec({ good with digest = "\01\02" : Blob }) != null);
    check("chunk digest count", Image.validateSpec({ good with chunk_digests = ?([] : [Blob]) }) != null);
    switch (Image.write(st, 76_000, pattern(1_000))) {
      case (#err(#Busy _)) {};
      case (#err(#InvalidArgument _)) {};
      case _ check("write beyond the image is rejected", false);
    };
  };

  // ---- journal ----------------------------------------------------------------

  func put(k : Text, v : Text) : Types.Op = #put { key = textBlob(k); value = textBlob(v) };

  func testJournal() {
    let j = Journal.new(4, 1_000_000);
    for (i in Nat.range(0, 3)) ignore Journal.record(j, put("k" # Nat.toText(i), "v"), 0);
    check("head after 3", j.head == 3 and j.base == 0);
    switch (Journal.changes(j, 1, 1_000_000, null)) {
      case (#ok b) check("changes since 1", b.changes.size() == 2 and b.changes[0].seq == 2 and b.to_seq == 3 and b.from_seq == 1);
      case (#err _) check("changes", false);
    };
    // A small byte budget still returns one change and covers only it.
    switch (Journal.changes(j, 0, 1, null)) {
      case (#ok b) check("byte budget", b.changes.size() == 1 and b.to_seq == 1);
      case (#err _) check("changes with budget", false);
    };
    for (i in Nat.range(3, 7)) ignore Journal.record(j, put("k" # Nat.toText(i), "v"), 0);
    check("bounded to 4", j.count == 4 and j.base == 3 and j.head == 7);
    switch (Journal.changes(j, 2, 1_000_000, null)) {
      case (#err(#TooOld { oldest_seq })) check("oldest seq", oldest_seq == 3);
      case _ check("too old", false);
    };
    switch (Journal.changes(j, 7, 1_000_000, null)) {
      case (#ok b) check("nothing new", b.changes.size() == 0 and b.to_seq == 7);
      case (#err _) check("changes at head", false);
    };
    switch (Journal.changes(j, 8, 1_000_000, null)) {
      case (#err(#InvalidArgument _)) {};
      case _ check("since ahead of head", false);
    };
    // A standby: replay with gaps, then advance over a filtered batch.
    let s = Journal.new(100, 1_000_000);
    Journal.reset(s, 10);
    Journal.replay(s, { seq = 12; time = 0; op = put("a", "1") });
    Journal.advance(s, 15);
    switch (Journal.changes(s, 10, 1_000_000, null)) {
      case (#ok b) check("replayed change", b.changes.size() == 1 and b.changes[0].seq == 12 and b.to_seq == 15);
      case (#err _) check("standby changes", false);
    };
    // The byte bound evicts too.
    let small = Journal.new(100, 200);
    for (i in Nat.range(0, 10)) ignore Journal.record(small, put("key", "value"), 0);
    check("byte bound", small.bytes <= 200 and small.count >= 1 and small.base == 10 - Nat64.fromNat(small.count));
    // Disabled journal: covers nothing, counts on.
    let off = Journal.new(0, 0);
    ignore Journal.record(off, put("a", "b"), 0);
    check("disabled journal", off.count == 0 and off.head == 1 and off.base == 1);
    testJournalFilterAndBacklog();
  };

  /// Filtered reads cover the interval they scanned; the backlog counts.
  func testJournalFilterAndBacklog() {
    let j = Journal.new(100, 1_000_000);
    // seq 1..6: a0 b0 a1 b1 (app) a2, times 10, 20, ...
    let ops : [Types.Op] = [put("a0", "x"), put("b0", "x"), put("a1", "x"), #delete { key = textBlob("b1") }, #app(textBlob("app")), put("a2", "x")];
    var t : Nat64 = 10;
    for (op in ops.vals()) { ignore Journal.record(j, op, t); t += 10 };
    let aRange : Types.KeyRange = { lower = textBlob("a"); upper = ?textBlob("b") };
    switch (Journal.changes(j, 0, 1_000_000, ?aRange)) {
      case (#ok b) {
        let seqs = Array.map<Types.Change, Nat64>(b.changes, func c = c.seq);
        check("filtered: keys in range and app changes", seqs == [1, 3, 5, 6] and b.to_seq == 6 and b.head_seq == 6);
      };
      case (#err _) check("filtered changes", false);
    };
    // A byte budget for one change: the batch covers the skipped change 2.
    switch (Journal.changes(j, 0, 1, ?aRange)) {
      case (#ok b) check("filtered budget covers skipped changes", b.changes.size() == 1 and b.changes[0].seq == 1 and b.to_seq == 2);
      case (#err _) check("filtered budget", false);
    };
    let bRange : Types.KeyRange = { lower = textBlob("b"); upper = ?textBlob("c") };
    switch (Journal.changes(j, 4, 1_000_000, ?bRange)) {
      case (#ok b) check("filtered tail", b.changes.size() == 1 and b.changes[0].seq == 5 and b.to_seq == 6);
      case (#err _) check("filtered tail", false);
    };
    switch (Journal.backlog(j, 2)) {
      case (#ok b) check("backlog", b.changes == 4 and b.oldest_time == ?30 and b.head_time == ?60 and b.head_seq == 6 and b.bytes > 4 * 48);
      case (#err _) check("backlog", false);
    };
    switch (Journal.backlog(j, 6)) {
      case (#ok b) check("no backlog at the head", b.changes == 0 and b.bytes == 0 and b.oldest_time == null);
      case (#err _) check("backlog at head", false);
    };
    switch (Journal.backlog(j, 7)) {
      case (#err(#InvalidArgument _)) {};
      case _ check("backlog beyond the head", false);
    };
  };

  // ---- key-value state and key ranges -------------------------------------------

  func key(i : Nat) : Blob = Blob.fromArray([Nat8.fromNat(i / 256), Nat8.fromNat(i % 256)]);

  func filled(n : Nat) : KvState.KvState {
    let kv = KvState.empty();
    // Insert in a scrambled order; iteration must come out sorted.
    for (i in Nat.range(0, n)) {
      let k = (i * 7919) % n;
      KvState.put(kv, key(k), pattern(k % 50));
    };
    kv;
  };

  func testKv() {
    let kv = filled(1000);
    check("kv size", KvState.size(kv) == 1000);
    var expect = 500;
    var ok = true;
    for ((k, _) in KvState.entriesFrom(kv, key(500))) {
      if (k != key(expect)) ok := false;
      expect += 1;
    };
    check("entriesFrom is ordered and complete", ok and expect == 1000);
    var count = 0;
    for (_ in KvState.entriesFrom(kv, "\ff")) count += 1;
    check("entriesFrom past the end", count == 0);
    // Fingerprint: order-independent and consistent with deletes.
    let other = KvState.empty();
    for (i in Nat.range(0, 1000)) KvState.put(other, key(999 - i), pattern((999 - i) % 50));
    check("fingerprint independent of insertion order", other.fingerprint == kv.fingerprint and other.bytes == kv.bytes);
    KvState.put(other, key(5), "changed");
    check("fingerprint sees a change", other.fingerprint != kv.fingerprint);
    KvState.put(other, key(5), pattern(5));
    check("fingerprint restored", other.fingerprint == kv.fingerprint);
    check("delete", KvState.delete(other, key(5)) and not KvState.delete(other, key(5)) and KvState.size(other) == 999);

    // Range export in pages and deletion by range.
    let store = KvState.store(kv);
    let range : Types.KeyRange = { lower = key(100); upper = ?key(300) };
    check("range contains", KeyRange.contains(range, key(100)) and not KeyRange.contains(range, key(300)));
    check("empty range is invalid", KeyRange.validate({ lower = key(5); upper = ?key(5) }) != null);
    var cursor : ?Blob = null;
    var seen = 0;
    var pages = 0;
    label paging loop {
      let page = KeyRange.export(store, range, cursor, 1_000);
      for (r in page.records.vals()) {
        if (r.key != key(100 + seen)) check("range order at " # Nat.toText(seen), false);
        seen += 1;
      };
      pages += 1;
      switch (page.next) {
        case null break paging;
        case (?next) cursor := ?next;
      };
    };
    check("range export complete in pages", seen == 200 and pages > 1);
    let del = KeyRange.keysToDelete(store, range, null, 150);
    check("delete batch", del.keys.size() == 150 and del.next == ?key(250));
    for (k in del.keys.vals()) store.delete(k);
    let rest = KeyRange.keysToDelete(store, range, del.next, 150);
    check("delete rest", rest.keys.size() == 50 and rest.next == null);
  };

  /// Produce an image of a KvState in small steps, restore it elsewhere.
  func testKvImage() {
    let kv = filled(3000);
    let image = Image.new(regionA, 4096);
    Image.reset(image, 4096);
    let producer = KvState.producer(kv);
    // Changes after the freeze do not reach the image.
    KvState.put(kv, key(1), "after the freeze");
    let status : Image.SinkStatus = { var failedAt = null };
    let sink = Image.sink(image, status);
    var steps = 0;
    var done = false;
    while (not done) {
      var budget = 50; // records per step
      done := producer.next(sink, func() : Bool { budget -= 1; budget > 0 });
      steps += 1;
    };
    while (Image.hashNextChunk(image)) {};
    Image.seal(image);
    check("produced in steps", steps > 10);

    let copy = KvState.empty();
    KvState.put(copy, "old", "state");
    let restorer = KvState.restorer(copy);
    let source : Types.Source = { region = regionA; var pos = 0; end = image.size };
    var finished = false;
    var rounds = 0;
    label restore loop {
      var budget = 100;
      switch (restorer.next(source, func() : Bool { budget -= 1; budget > 0 })) {
        case (#ok true) { finished := true; break restore };
        case (#ok false) {
          check("old state untouched while restoring", KvState.size(copy) == 1);
          rounds += 1;
        };
        case (#err msg) { check("restore: " # msg, false); break restore };
      };
    };
    restorer.install();
    let original = filled(3000);
    check("restored in steps", finished and rounds > 10);
    check("restored state equals the frozen one", KvState.size(copy) == 3000 and copy.fingerprint == original.fingerprint and copy.bytes == original.bytes);
    check("restored value", KvState.get(copy, key(1)) == ?pattern(1));

    // A truncated image is rejected, not half-installed.
    let broken = KvState.empty();
    let r2 = KvState.restorer(broken);
    let short : Types.Source = { region = regionA; var pos = 0; end = image.size - 3 };
    switch (r2.next(short, func() : Bool = true)) {
      case (#err _) {};
      case _ check("truncated image is rejected", false);
    };
    check("nothing installed", KvState.size(broken) == 0);
  };

  // ---- routing, fences, range statistics, fleets -----------------------------------

  func principal(i : Nat) : Principal = Principal.fromBlob(Blob.fromArray([Nat8.fromNat(i), 1, 1]));

  func testRouting() {
    let r = Routing.new();
    let routes : [Types.Route] = [
      { range = { lower = ""; upper = ?key(100) }; canister = principal(1) },
      { range = { lower = key(100); upper = null }; canister = principal(2) },
    ];
    check("routing set", Routing.setRouting(r, { version = 1; routes }) == #ok);
    check("routing lookup low", Routing.ownerOf(r, key(5)) == ?principal(1));
    check("routing lookup high", Routing.ownerOf(r, key(100)) == ?principal(2));
    check("same table again is fine", Routing.setRouting(r, { version = 1; routes }) == #ok);
    switch (Routing.setRouting(r, { version = 1; routes = [routes[0]] })) {
      case (#err(#InvalidArgument _)) {};
      case _ check("an older or equal version with other routes is refused", false);
    };
    switch (Routing.setRouting(r, { version = 2; routes = [routes[1], routes[0]] })) {
      case (#err(#InvalidArgument _)) {};
      case _ check("routes out of order are refused", false);
    };
    check("table unchanged by refusals", r.routing.version == 1);
    // Fences: given in any order, found by binary search, no overlaps.
    let fences : [Types.Fence] = [
      { range = { lower = key(50); upper = ?key(60) }; owner = ?principal(3) },
      { range = { lower = key(10); upper = ?key(20) }; owner = null },
    ];
    check("fences set", Routing.setFences(r, fences) == #ok);
    check("fence found", Routing.fenceOf(r, key(55)) != null and Routing.fenceOf(r, key(10)) != null);
    check("no fence between", Routing.fenceOf(r, key(20)) == null and Routing.fenceOf(r, key(49)) == null and Routing.fenceOf(r, key(9)) == null);
    switch (Routing.setFences(r, [fences[0], { range = { lower = key(55); upper = null }; owner = null }])) {
      case (#err(#InvalidArgument _)) {};
      case _ check("overlapping fences are refused", false);
    };
    check("fences unchanged by a refusal", r.fences.size() == 2);
  };

  func testRangeStats() {
    let one = KvState.empty();
    KvState.put(one, key(1), pattern(1));
    let all : Types.KeyRange = { lower = ""; upper = null };
    let d1 = RangeStats.digest(KvState.store(one), all, null, func() : Bool = true);
    checkHex("record digest", d1.digest, "6e9d411a4215f89090cac3c8d9aae51551bbbd77cddb10e604fbb49ac2b0547d");
    KvState.put(one, key(2), pattern(2));
    let d2 = RangeStats.digest(KvState.store(one), all, null, func() : Bool = true);
    checkHex("digest sum", d2.digest, "d5a14c0175b65e839fa47339958fcf216f9d8fe94bf0cd5091743e31e9984d48");
    check("digest counts", d2.records == 2 and d2.bytes == 7 and d2.next == null);
    // Pages of any size add up to the whole.
    let kv = filled(500);
    let store = KvState.store(kv);
    let whole = RangeStats.digest(store, all, null, func() : Bool = true);
    let sum = RangeStats.digest(store, all, null, func() : Bool = false); // an empty page
    check("an empty page continues at the start", sum.records == 0 and sum.next == ?key(0));
    var cursor = sum.next;
    var pages = 0;
    var records : Nat64 = 0;
    var acc : Blob = sum.digest;
    label paging loop {
      var budget = 37;
      let page = RangeStats.digest(store, all, cursor, func() : Bool { budget -= 1; budget > 0 });
      acc := add256(acc, page.digest);
      records += page.records;
      pages += 1;
      switch (page.next) { case null break paging; case (?n) cursor := ?n };
    };
    check("pages add up to the whole digest", pages > 10 and records == 500 and acc == whole.digest);
    // Distribution: buckets cover the range in order, sizes add up.
    let dist = RangeStats.distribution(store, { lower = key(100); upper = ?key(400) }, null, 1_000, func() : Bool = true);
    var n : Nat64 = 0;
    var bytes : Nat64 = 0;
    var ordered = true;
    var previous : Blob = "";
    for (b in dist.buckets.vals()) {
      n += b.records;
      bytes += b.bytes;
      if (b.first_key <= previous) ordered := false;
      previous := b.first_key;
    };
    check("distribution covers the range", n == 300 and dist.next == null and ordered and dist.buckets[0].first_key == key(100));
    check("buckets hold about bucket_bytes", dist.buckets.size() > 5 and dist.buckets[0].bytes >= 1_000 and dist.buckets[0].bytes < 1_100);
  };

  /// a + b (mod 2^256), big-endian.
  func add256(a : Blob, b : Blob) : Blob {
    let out = VarArray.repeat<Nat8>(0, 32);
    var carry = 0;
    var i = 32;
    while (i > 0) {
      i -= 1;
      let s = Nat8.toNat(a[i]) + Nat8.toNat(b[i]) + carry;
      out[i] := Nat8.fromNat(s % 256);
      carry := s / 256;
    };
    Blob.fromVarArray(out);
  };

  func testFleet() {
    let kv = KvState.empty();
    KvState.put(kv, "a-before", "x");
    KvState.put(kv, "z-after", "x");
    let prefix : Blob = "m/";
    for (i in Nat.range(0, 25)) {
      KvState.put(kv, Fleet.key(prefix, principal(24 - i)), Fleet.value(Nat64.fromNat(1000 + i), "extra"));
    };
    let fleet = Fleet.inStore(KvState.store(kv), prefix);
    let first = fleet.page(null, 10);
    check("fleet page", first.members.size() == 10 and first.members[0].canister == principal(0) and first.next_cursor == ?principal(10));
    check("fleet added_at", first.members[0].added_at == 1024);
    var seen = first.members.size();
    var cursor = first.next_cursor;
    label paging while (true) {
      let page = fleet.page(cursor, 10);
      seen += page.members.size();
      switch (page.next_cursor) { case null break paging; case (?c) cursor := ?c };
    };
    check("fleet pages cover every member and nothing else", seen == 25);
    check("fleet extra", Fleet.extra(Fleet.value(7, "extra")) == "extra");
  };

  public func selftest() : async [Text] {
    List.clear(failures);
    testSha256();
    testImage();
    testStaging();
    testJournal();
    testKv();
    testKvImage();
    testRouting();
    testRangeStats();
    testFleet();
    List.toArray(failures);
  };

  /// Instructions per byte of the hot paths, as measured here.
  public func measure() : async [(Text, Nat64)] {
    let n : Nat64 = 1_048_576;
    assert Image.ensureCapacity(regionA, n);
    let blob = Region.loadBlob(regionA, 0, Nat64.toNat(n));
    let region = InternetComputer.countInstructions(func() { ignore Sha256.digestRegion(regionA, 0, n) });
    let fromBlob = InternetComputer.countInstructions(func() { ignore Sha256.digest(blob) });
    let kvHash = InternetComputer.countInstructions(func() { ignore KvState.recordHash("k", blob) });
    [
      ("sha256 region, instructions per byte", region / n),
      ("sha256 blob, instructions per byte", fromBlob / n),
      ("record hash, instructions per byte", kvHash / n),
    ];
  };

};
