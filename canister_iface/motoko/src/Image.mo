/// Images in regions: building an export image with chunk digests, reading
/// it, and staging an import with per-chunk verification.
///
/// An image of `size` bytes is cut into chunks of `chunkSize` bytes (the
/// last one may be shorter; an empty image has none). Chunk digest =
/// SHA-256(chunk); image digest = SHA-256(chunk digest 0 ‖ chunk digest 1 ‖
/// …). Chunks are hashed as soon as they are complete, so the cost of
/// hashing is spread over the messages that produce or receive the bytes,
/// and a commit only hashes the list of chunk digests.
///
/// Regions cannot shrink (stable memory never does); an image's region is
/// reused by the next image, so the memory cost is the largest image, not
/// the sum.

import Array "mo:core/Array";
import Blob "mo:core/Blob";
import List "mo:core/List";
import Nat "mo:core/Nat";
import Nat64 "mo:core/Nat64";
import Option "mo:core/Option";
import Region "mo:core/Region";
import VarArray "mo:core/VarArray";
import Sha256 "Sha256";
import Types "Types";

module {

  let PAGE : Nat64 = 65_536;

  /// Largest number of chunks an image may have (1 TiB at 1 MiB chunks);
  /// keeps the per-chunk bookkeeping of an import bounded.
  public let MAX_CHUNKS : Nat64 = 1_048_576;

  /// Smallest and largest chunk size accepted for imports.
  public let MIN_CHUNK_SIZE : Nat64 = 4_096;
  public let MAX_CHUNK_SIZE : Nat64 = 16_777_216;

  /// A byte image in a region.
  public type Image = {
    region : Region.Region;
    var size : Nat64;
    var chunkSize : Nat64;
    digests : List.List<Blob>; // digests of the chunks hashed so far, in order
    var digest : ?Blob; // the image digest, once sealed
  };

  public func new(region : Region.Region, chunkSize : Nat64) : Image {
    {
      region;
      var size = 0;
      var chunkSize = chunkSize;
      digests = List.empty<Blob>();
      var digest = null;
    };
  };

  /// Empties the image for reuse; the region keeps its pages.
  public func reset(self : Image, chunkSize : Nat64) {
    self.size := 0;
    self.chunkSize := chunkSize;
    List.clear(self.digests);
    self.digest := null;
  };

  /// Grows `region` to hold at least `bytes`; false if stable memory is
  /// exhausted.
  public func ensureCapacity(region : Region.Region, bytes : Nat64) : Bool {
    let needed = (bytes + PAGE - 1) / PAGE;
    let have = Region.size(region);
    needed <= have or Region.grow(region, needed - have) != 0xFFFF_FFFF_FFFF_FFFF;
  };

  public func chunkCount(size : Nat64, chunkSize : Nat64) : Nat64 {
    (size + chunkSize - 1) / chunkSize;
  };

  /// Length of chunk `index` of an image of `size` bytes.
  public func chunkLen(size : Nat64, chunkSize : Nat64, index : Nat64) : Nat64 {
    Nat64.min(chunkSize, size - index * chunkSize);
  };

  /// SHA-256 over the concatenated chunk digests.
  public func imageDigest(digests : List.List<Blob>) : Blob {
    let h = Sha256.new();
    for (d in List.values(digests)) Sha256.writeBlob(h, d);
    Sha256.sum(h);
  };

  // ---- building an export image -------------------------------------------

  /// Records whether a sink ran out of memory.
  public type SinkStatus = { var failedAt : ?Nat64 };

  /// A sink appending to `self`. Appends after a failure are ignored; the
  /// failure is reported in `status`.
  public func sink(self : Image, status : SinkStatus) : Types.Sink {
    func reserve(n : Nat64) : Bool {
      if (status.failedAt != null) return false;
      if (ensureCapacity(self.region, self.size + n)) return true;
      status.failedAt := ?(self.size + n);
      false;
    };
    object {
      public func append(bytes : Blob) {
        let n = Nat64.fromNat(bytes.size());
        if (reserve(n)) {
          Region.storeBlob(self.region, self.size, bytes);
          self.size += n;
        };
      };
      public func appendNat32(value : Nat32) {
        if (reserve(4)) {
          Region.storeNat32(self.region, self.size, value);
          self.size += 4;
        };
      };
      public func appendNat64(value : Nat64) {
        if (reserve(8)) {
          Region.storeNat64(self.region, self.size, value);
          self.size += 8;
        };
      };
      public func size() : Nat64 = self.size;
    };
  };

  /// Bytes appended but not hashed yet.
  public func unhashedBytes(self : Image) : Nat64 {
    self.size - Nat64.fromNat(List.size(self.digests)) * self.chunkSize;
  };

  /// Hashes the next complete chunk that has not been hashed; false if
  /// there is none.
  public func hashNextChunk(self : Image) : Bool {
    let index = Nat64.fromNat(List.size(self.digests));
    let start = index * self.chunkSize;
    if (start + self.chunkSize > self.size) return false;
    List.add(self.digests, Sha256.digestRegion(self.region, start, self.chunkSize));
    true;
  };

  /// Hashes the final partial chunk (if any) and computes the image digest.
  /// Call once all bytes are appended and every complete chunk is hashed.
  public func seal(self : Image) {
    let index = Nat64.fromNat(List.size(self.digests));
    let start = index * self.chunkSize;
    if (start < self.size) {
      List.add(self.digests, Sha256.digestRegion(self.region, start, self.size - start));
    };
    self.digest := ?imageDigest(self.digests);
  };

  // ---- reading ------------------------------------------------------------

  /// Up to `len` bytes from `offset` (fewer at the end of the image).
  public func read(self : Image, offset : Nat64, len : Nat64) : Types.Result<Blob> {
    if (len > Types.MAX_TRANSFER) {
      return #err(#InvalidArgument("len " # Nat64.toText(len) # " exceeds max_transfer_bytes " # Nat64.toText(Types.MAX_TRANSFER)));
    };
    if (offset > self.size) {
      return #err(#InvalidArgument("offset " # Nat64.toText(offset) # " is beyond the image size " # Nat64.toText(self.size)));
    };
    let n = Nat64.min(len, self.size - offset);
    #ok(Region.loadBlob(self.region, offset, Nat64.toNat(n)));
  };

  /// Chunk digests `first ..< first + count` of a sealed image.
  public func chunkDigests(self : Image, first : Nat64, count : Nat64) : Types.Result<[Blob]> {
    let total = Nat64.fromNat(List.size(self.digests));
    if (first > total) {
      return #err(#InvalidArgument("first chunk " # Nat64.toText(first) # " is beyond the chunk count " # Nat64.toText(total)));
    };
    let n = Nat64.toNat(Nat64.min(Nat64.min(count, 50_000), total - first));
    let base = Nat64.toNat(first);
    #ok(Array.tabulate<Blob>(n, func i = List.at(self.digests, base + i)));
  };

  // ---- staged import --------------------------------------------------------

  /// An import being received into its own region. The target's current
  /// state is not touched until the import is committed.
  public type Staging = {
    id : Types.ImportId;
    spec : Types.ImportSpec;
    image : Image;
    ranges : [var [(Nat64, Nat64)]]; // per chunk: written [start, end), relative, sorted, disjoint
    verified : [var ?Blob]; // per chunk: its digest once complete (and checked)
    var received : Nat64;
    var state : Types.ImportState;
  };

  /// Checks an import spec; null if it is acceptable.
  public func validateSpec(spec : Types.ImportSpec) : ?Text {
    if (spec.chunk_size < MIN_CHUNK_SIZE or spec.chunk_size > MAX_CHUNK_SIZE) {
      return ?("chunk_size must be between " # Nat64.toText(MIN_CHUNK_SIZE) # " and " # Nat64.toText(MAX_CHUNK_SIZE));
    };
    let chunks = chunkCount(spec.size, spec.chunk_size);
    if (chunks > MAX_CHUNKS) {
      return ?("the image has " # Nat64.toText(chunks) # " chunks; at most " # Nat64.toText(MAX_CHUNKS) # " are supported: use a larger chunk_size");
    };
    if (spec.digest.size() != 32) return ?"digest must be a 32-byte SHA-256";
    switch (spec.chunk_digests) {
      case null {};
      case (?ds) {
        if (Nat64.fromNat(ds.size()) != chunks) {
          return ?("chunk_digests has " # Nat.toText(ds.size()) # " entries; the image has " # Nat64.toText(chunks) # " chunks");
        };
        for (d in ds.vals()) if (d.size() != 32) return ?"every chunk digest must be 32 bytes";
      };
    };
    null;
  };

  /// True when `spec` describes the same image as the staged one (resume).
  public func sameImage(self : Staging, spec : Types.ImportSpec) : Bool {
    let s = self.spec;
    s.source == spec.source and s.snapshot_id == spec.snapshot_id and s.size == spec.size and s.chunk_size == spec.chunk_size and s.digest == spec.digest;
  };

  /// Opens an import into `region` (validate the spec first).
  public func stage(id : Types.ImportId, spec : Types.ImportSpec, region : Region.Region) : Types.Result<Staging> {
    if (not ensureCapacity(region, spec.size)) {
      return #err(#OutOfMemory { requested_bytes = spec.size });
    };
    let chunks = Nat64.toNat(chunkCount(spec.size, spec.chunk_size));
    let image = new(region, spec.chunk_size);
    image.size := spec.size;
    #ok {
      id;
      spec;
      image;
      ranges = VarArray.repeat<[(Nat64, Nat64)]>([], chunks);
      verified = VarArray.repeat<?Blob>(null, chunks);
      var received = 0;
      var state = #receiving;
    };
  };

  /// Writes `data` at `offset`; see `icrp_write`.
  public func write(self : Staging, offset : Nat64, data : Blob) : Types.Result<Nat64> {
    switch (self.state) {
      case (#receiving) {};
      case (#committing _) return #err(#Busy("import " # Nat64.toText(self.id) # " is being committed"));
      case (#committed _) return #err(#Busy("import " # Nat64.toText(self.id) # " is already committed"));
      case (#aborted { reason }) return #err(#NotFound("import " # Nat64.toText(self.id) # " was aborted: " # reason));
    };
    let len = Nat64.fromNat(data.size());
    let size = self.spec.size;
    if (offset > size or len > size - offset) {
      return #err(#InvalidArgument("write of " # Nat64.toText(len) # " bytes at " # Nat64.toText(offset) # " exceeds the image size " # Nat64.toText(size)));
    };
    if (len == 0) return #ok(self.received);
    // Check every overlap with bytes already written before changing
    // anything, so that a conflicting write leaves no trace.
    let cs = self.spec.chunk_size;
    let first = offset / cs;
    let last = (offset + len - 1) / cs;
    var c = first;
    while (c <= last) {
      switch (checkOverlaps(self, c, offset, data)) {
        case (?conflict) return #err(#Conflict { offset = conflict });
        case null {};
      };
      c += 1;
    };
    Region.storeBlob(self.image.region, offset, data);
    var error : ?Types.Error = null;
    c := first;
    while (c <= last) {
      let chunkStart = c * cs;
      let rs = Nat64.max(offset, chunkStart) - chunkStart;
      let re = Nat64.min(offset + len, chunkStart + cs) - chunkStart;
      addRange(self, c, rs, re);
      switch (completeChunk(self, c)) {
        case (?e) if (Option.isNull(error)) error := ?e;
        case null {};
      };
      c += 1;
    };
    switch error {
      case (?e) #err(e);
      case null #ok(self.received);
    };
  };

  /// Progress of the import.
  public func status(self : Staging) : Types.ImportStatus {
    {
      import_id = self.id;
      source = self.spec.source;
      snapshot_id = self.spec.snapshot_id;
      size = self.spec.size;
      chunk_size = self.spec.chunk_size;
      digest = self.spec.digest;
      received_bytes = self.received;
      chunks_done = Array.tabulate<Bool>(self.verified.size(), func i = self.verified[i] != null);
      state = self.state;
    };
  };

  /// Checks that every chunk is present and that the image digest matches.
  /// On success the staged image carries its chunk digests and digest, ready
  /// to be read or restored from.
  public func verify(self : Staging) : Types.Result<()> {
    var missing : Nat64 = 0;
    var firstMissing : Nat64 = 0;
    var i = self.verified.size();
    while (i > 0) {
      i -= 1;
      if (self.verified[i] == null) {
        missing += 1;
        firstMissing := Nat64.fromNat(i);
      };
    };
    if (missing > 0) return #err(#Incomplete { missing_chunks = missing; first_missing = firstMissing });
    let image = self.image;
    List.clear(image.digests);
    for (d in self.verified.vals()) {
      switch d {
        case (?digest) List.add(image.digests, digest);
        case null {};
      };
    };
    let actual = imageDigest(image.digests);
    if (actual != self.spec.digest) {
      return #err(#DigestMismatch { chunk = null; expected = self.spec.digest; actual });
    };
    image.digest := ?actual;
    #ok;
  };

  /// The absolute offset of the first byte of `data` (written at `offset`)
  /// that differs from bytes already written in chunk `c`, if any.
  func checkOverlaps(self : Staging, c : Nat64, offset : Nat64, data : Blob) : ?Nat64 {
    let cs = self.spec.chunk_size;
    let chunkStart = c * cs;
    let len = Nat64.fromNat(data.size());
    let rs = Nat64.max(offset, chunkStart) - chunkStart;
    let re = Nat64.min(offset + len, chunkStart + cs) - chunkStart;
    for ((a, b) in self.ranges[Nat64.toNat(c)].vals()) {
      let os = Nat64.max(a, rs);
      let oe = Nat64.min(b, re);
      if (os < oe) {
        let abs = chunkStart + os;
        let n = Nat64.toNat(oe - os);
        let old = Region.loadBlob(self.image.region, abs, n);
        let from = Nat64.toNat(abs - offset);
        let new = slice(data, from, n);
        if (old != new) return ?(abs + Nat64.fromNat(firstDifference(old, new)));
      };
    };
    null;
  };

  /// Adds [rs, re) to the written ranges of chunk `c`, merging neighbours,
  /// and counts the newly covered bytes.
  func addRange(self : Staging, c : Nat64, rs : Nat64, re : Nat64) {
    let index = Nat64.toNat(c);
    let before = covered(self.ranges[index]);
    var start = rs;
    var end = re;
    let kept = List.empty<(Nat64, Nat64)>();
    var placed = false;
    for ((a, b) in self.ranges[index].vals()) {
      if (b < start) {
        List.add(kept, (a, b));
      } else if (a > end) {
        if (not placed) {
          List.add(kept, (start, end));
          placed := true;
        };
        List.add(kept, (a, b));
      } else {
        // Overlapping or adjacent: absorb.
        start := Nat64.min(start, a);
        end := Nat64.max(end, b);
      };
    };
    if (not placed) List.add(kept, (start, end));
    self.ranges[index] := List.toArray(kept);
    self.received += covered(self.ranges[index]) - before;
  };

  func covered(ranges : [(Nat64, Nat64)]) : Nat64 {
    var n : Nat64 = 0;
    for ((a, b) in ranges.vals()) n += b - a;
    n;
  };

  /// Hashes chunk `c` if it is complete and not yet verified; discards it
  /// if it does not match the spec's chunk digest.
  func completeChunk(self : Staging, c : Nat64) : ?Types.Error {
    let index = Nat64.toNat(c);
    if (self.verified[index] != null) return null;
    let cs = self.spec.chunk_size;
    let len = chunkLen(self.spec.size, cs, c);
    if (covered(self.ranges[index]) < len) return null;
    let actual = Sha256.digestRegion(self.image.region, c * cs, len);
    switch (self.spec.chunk_digests) {
      case (?expected) {
        let want = expected[index];
        if (want != actual) {
          self.ranges[index] := [];
          self.received -= len;
          return ?#DigestMismatch { chunk = ?c; expected = want; actual };
        };
      };
      case null {};
    };
    self.verified[index] := ?actual;
    null;
  };

  /// Bytes `from ..< from + n` of `data`. Only used on overlapping writes
  /// (retries), which are rare; Motoko has no cheap sub-blob operation.
  func slice(data : Blob, from : Nat, n : Nat) : Blob {
    if (from == 0 and n == data.size()) return data;
    Blob.fromArray(Array.tabulate<Nat8>(n, func i = data[from + i]));
  };

  func firstDifference(a : Blob, b : Blob) : Nat {
    var i = 0;
    while (i < a.size() and i < b.size() and a[i] == b[i]) i += 1;
    i;
  };

};
