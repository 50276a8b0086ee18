/// SHA-256 (FIPS 180-4) in Motoko, for image and chunk digests.
///
/// The hasher is incremental: feed it Blobs or byte ranges of a Region, then
/// call `sum`. Cost per byte hashed (Wasm instructions as localnet counts
/// them, measured by `benchmarks/sha256_bench.py`; the IC's table charges
/// the Blob loop ~7 more per byte, for its loads and branches): ~141 from a
/// Region (read in 64 KiB slices) and ~140 from a Blob, because Motoko reads
/// a Blob only byte by byte (~55 of them per byte: the index converted to a
/// Nat and back, a bounds check, the load, tagging and widening); ~103 from
/// a Blob through a scratch region (`withScratch`), which gives 8 bytes per
/// load at the price of one System API call per word. The unrolled rounds
/// (doubled 64-bit words: a rotation is one shift) cost ~85 of each figure;
/// other reads tried, and why they lose: the README's "Costs" section.
///
/// ```motoko
/// import Sha256 "mo:icrp/Sha256";
/// let d = Sha256.digest("abc");          // 32-byte Blob
/// let h = Sha256.new();
/// h.writeBlob("a"); h.writeBlob("bc");
/// assert h.sum() == d;
/// ```

import Blob "mo:core/Blob";
import Nat8 "mo:core/Nat8";
import Nat16 "mo:core/Nat16";
import Nat32 "mo:core/Nat32";
import Nat64 "mo:core/Nat64";
import Region "mo:core/Region";
import Runtime "mo:core/Runtime";
import VarArray "mo:core/VarArray";

module {

  let IV : [Nat32] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ];

  /// Bytes per input block.
  let BLOCK = 64;

  /// Bytes `writeRegion` reads with one System API call.
  let REGION_SLICE : Nat64 = 65_536;

  /// A Blob is copied into the scratch region from this many full blocks
  /// on: below, the copy costs more than reading the bytes one by one.
  let SCRATCH_MIN_BLOCKS = 2;

  /// An incremental SHA-256 computation. Not a stable type on purpose: a
  /// hasher lives within one message.
  public type Hasher = {
    state : [var Nat32]; // chaining value h0..h7
    pending : [var Nat8]; // bytes of an incomplete block
    var pendingLen : Nat;
    var total : Nat64; // bytes consumed so far
    scratch : ?Region.Region; // where Blobs are copied for word loads
  };

  /// A fresh hasher.
  public func new() : Hasher = make(null);

  /// A fresh hasher that copies Blob input into `scratch` and hashes it from
  /// there, 8 bytes per load (~1.6 times cheaper than byte by byte). The
  /// region is overwritten and grown to the largest Blob written; one
  /// region can serve every hasher of a canister, since a hasher uses it
  /// only within a `writeBlob` call.
  public func withScratch(scratch : Region.Region) : Hasher = make(?scratch);

  func make(scratch : ?Region.Region) : Hasher {
    {
      state = VarArray.tabulate<Nat32>(8, func i = IV[i]);
      pending = VarArray.repeat<Nat8>(0, BLOCK);
      var pendingLen = 0;
      var total = 0;
      scratch;
    };
  };

  /// SHA-256 of `data`.
  public func digest(data : Blob) : Blob {
    let h = new();
    writeBlob(h, data);
    sum(h);
  };

  /// SHA-256 of `data`, hashed from a copy in `scratch` (see `withScratch`).
  public func digestWith(scratch : Region.Region, data : Blob) : Blob {
    let h = withScratch(scratch);
    writeBlob(h, data);
    sum(h);
  };

  /// SHA-256 of `len` bytes of `region` starting at `offset`.
  public func digestRegion(region : Region.Region, offset : Nat64, len : Nat64) : Blob {
    let h = new();
    writeRegion(h, region, offset, len);
    sum(h);
  };

  /// Feeds `data` to the hasher.
  public func writeBlob(self : Hasher, data : Blob) {
    let n = data.size();
    let i = if (self.pendingLen > 0) append(self, data, 0) else 0;
    let blocks = (n - i) / BLOCK;
    switch (self.scratch) {
      case (?scratch) if (blocks >= SCRATCH_MIN_BLOCKS) {
        reserve(scratch, Nat64.fromNat(n));
        Region.storeBlob(scratch, 0, data);
        compressRegion(self.state, scratch, Nat64.fromNat(i), Nat64.fromNat(blocks));
      } else compressBlob(self.state, data, i, blocks);
      case null compressBlob(self.state, data, i, blocks);
    };
    ignore append(self, data, i + blocks * BLOCK);
    self.total +%= Nat64.fromNat(n);
  };

  /// Feeds `len` bytes of `region` starting at `offset` to the hasher.
  ///
  /// Read in slices of `REGION_SLICE` bytes, one System API call each, and
  /// hashed from the Blob: 8-byte loads (`compressRegion`) cost fewer Wasm
  /// instructions (~103 vs ~141 per byte) but make one System API call per
  /// word, which an emulator such as localnet runs ~100x slower in wall time
  /// (2.4 s vs 0.022 s per MiB: a host call per 8 bytes),
  /// and on the IC the hash is no longer the dominant cost of a copy (the
  /// message bytes are: see the README of the Motoko library).
  public func writeRegion(self : Hasher, region : Region.Region, offset : Nat64, len : Nat64) {
    var off = offset;
    let end = offset + len;
    while (off < end) {
      let n = Nat64.min(end - off, REGION_SLICE);
      writeBlob(self, Region.loadBlob(region, off, Nat64.toNat(n)));
      off += n;
    };
  };

  /// Finishes the computation and returns the 32-byte digest. The hasher
  /// must not be used afterwards.
  public func sum(self : Hasher) : Blob {
    let bitLen = self.total << 3;
    let p = self.pending;
    p[self.pendingLen] := 0x80;
    self.pendingLen += 1;
    if (self.pendingLen > 56) {
      while (self.pendingLen < BLOCK) {
        p[self.pendingLen] := 0;
        self.pendingLen += 1;
      };
      compressPending(self);
    };
    while (self.pendingLen < 56) {
      p[self.pendingLen] := 0;
      self.pendingLen += 1;
    };
    var k = 0;
    while (k < 8) {
      p[56 + k] := Nat8.fromNat64((bitLen >> Nat64.fromNat(56 - 8 * k)) & 0xff);
      k += 1;
    };
    compressPending(self);
    let out = VarArray.repeat<Nat8>(0, 32);
    var i = 0;
    while (i < 8) {
      let (b0, b1, b2, b3) = Nat32.explode(self.state[i]);
      out[4 * i] := b0;
      out[4 * i + 1] := b1;
      out[4 * i + 2] := b2;
      out[4 * i + 3] := b3;
      i += 1;
    };
    Blob.fromVarArray(out);
  };

  /// Appends the bytes of `data` from `from` to the pending block until it
  /// is full (then compresses it) or `data` ends. Returns the index of the
  /// first byte not taken.
  func append(self : Hasher, data : Blob, from : Nat) : Nat {
    let n = data.size();
    var i = from;
    while (self.pendingLen < BLOCK and i < n) {
      self.pending[self.pendingLen] := data[i];
      self.pendingLen += 1;
      i += 1;
    };
    if (self.pendingLen == BLOCK) compressPending(self);
    i;
  };

  /// Compresses the full pending block and empties it.
  func compressPending(self : Hasher) {
    compressBlob(self.state, Blob.fromVarArray(self.pending), 0, 1);
    self.pendingLen := 0;
  };

  /// Grows `region` to hold at least `bytes` bytes.
  func reserve(region : Region.Region, bytes : Nat64) {
    let pages = (bytes + 65_535) / 65_536;
    let have = Region.size(region);
    if (have < pages and Region.grow(region, pages - have) == 0xFFFF_FFFF_FFFF_FFFF) {
      Runtime.trap("Sha256: the scratch region cannot grow to " # Nat64.toText(bytes) # " bytes (stable memory exhausted)");
    };
  };

  // BEGIN GENERATED by tools/gen_sha256_compress.py; do not edit.
  /// Compresses `blocks` 64-byte blocks of `region` from `offset` into the
  /// chaining value `s`.
  func compressRegion(s : [var Nat32], region : Region.Region, offset : Nat64, blocks : Nat64) {
    var off = offset;
    let end = offset +% blocks *% 64;
    var h0 = Nat32.toNat64(s[0]);
    var h1 = Nat32.toNat64(s[1]);
    var h2 = Nat32.toNat64(s[2]);
    var h3 = Nat32.toNat64(s[3]);
    var h4 = Nat32.toNat64(s[4]);
    var h5 = Nat32.toNat64(s[5]);
    var h6 = Nat32.toNat64(s[6]);
    var h7 = Nat32.toNat64(s[7]);
    while (off < end) {
      let y0 = Region.loadNat64(region, off +% 0);
      let z0 = ((y0 >> 8) & 0x00ff_00ff_00ff_00ff) | ((y0 & 0x00ff_00ff_00ff_00ff) << 8);
      var w0 = ((z0 & 0xffff_ffff) *% 0x1_0000_0001) <>> 16;
      var w1 = ((z0 >> 32) *% 0x1_0000_0001) <>> 16;
      let y1 = Region.loadNat64(region, off +% 8);
      let z1 = ((y1 >> 8) & 0x00ff_00ff_00ff_00ff) | ((y1 & 0x00ff_00ff_00ff_00ff) << 8);
      var w2 = ((z1 & 0xffff_ffff) *% 0x1_0000_0001) <>> 16;
      var w3 = ((z1 >> 32) *% 0x1_0000_0001) <>> 16;
      let y2 = Region.loadNat64(region, off +% 16);
      let z2 = ((y2 >> 8) & 0x00ff_00ff_00ff_00ff) | ((y2 & 0x00ff_00ff_00ff_00ff) << 8);
      var w4 = ((z2 & 0xffff_ffff) *% 0x1_0000_0001) <>> 16;
      var w5 = ((z2 >> 32) *% 0x1_0000_0001) <>> 16;
      let y3 = Region.loadNat64(region, off +% 24);
      let z3 = ((y3 >> 8) & 0x00ff_00ff_00ff_00ff) | ((y3 & 0x00ff_00ff_00ff_00ff) << 8);
      var w6 = ((z3 & 0xffff_ffff) *% 0x1_0000_0001) <>> 16;
      var w7 = ((z3 >> 32) *% 0x1_0000_0001) <>> 16;
      let y4 = Region.loadNat64(region, off +% 32);
      let z4 = ((y4 >> 8) & 0x00ff_00ff_00ff_00ff) | ((y4 & 0x00ff_00ff_00ff_00ff) << 8);
      var w8 = ((z4 & 0xffff_ffff) *% 0x1_0000_0001) <>> 16;
      var w9 = ((z4 >> 32) *% 0x1_0000_0001) <>> 16;
      let y5 = Region.loadNat64(region, off +% 40);
      let z5 = ((y5 >> 8) & 0x00ff_00ff_00ff_00ff) | ((y5 & 0x00ff_00ff_00ff_00ff) << 8);
      var w10 = ((z5 & 0xffff_ffff) *% 0x1_0000_0001) <>> 16;
      var w11 = ((z5 >> 32) *% 0x1_0000_0001) <>> 16;
      let y6 = Region.loadNat64(region, off +% 48);
      let z6 = ((y6 >> 8) & 0x00ff_00ff_00ff_00ff) | ((y6 & 0x00ff_00ff_00ff_00ff) << 8);
      var w12 = ((z6 & 0xffff_ffff) *% 0x1_0000_0001) <>> 16;
      var w13 = ((z6 >> 32) *% 0x1_0000_0001) <>> 16;
      let y7 = Region.loadNat64(region, off +% 56);
      let z7 = ((y7 >> 8) & 0x00ff_00ff_00ff_00ff) | ((y7 & 0x00ff_00ff_00ff_00ff) << 8);
      var w14 = ((z7 & 0xffff_ffff) *% 0x1_0000_0001) <>> 16;
      var w15 = ((z7 >> 32) *% 0x1_0000_0001) <>> 16;
      var r0 = ((h0) & 0xffff_ffff) *% 0x1_0000_0001;
      var r1 = h1;
      var r2 = h2;
      var r3 = h3;
      var r4 = ((h4) & 0xffff_ffff) *% 0x1_0000_0001;
      var r5 = h5;
      var r6 = h6;
      var r7 = h7;
      var t1 : Nat64 = 0;
      var m0 = r0 ^ r1; // a ^ b of round 0
      var m1 = r1 ^ r2; // b ^ c of round 0
      t1 := ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6))) +% w0 +% 0x428a2f98 +% r7;
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      t1 := ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5))) +% w1 +% 0x71374491 +% r6;
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      t1 := ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4))) +% w2 +% 0xb5c0fbcf +% r5;
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      t1 := ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3))) +% w3 +% 0xe9b5dba5 +% r4;
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      t1 := ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2))) +% w4 +% 0x3956c25b +% r3;
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      t1 := ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1))) +% w5 +% 0x59f111f1 +% r2;
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      t1 := ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0))) +% w6 +% 0x923f82a4 +% r1;
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      t1 := ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7))) +% w7 +% 0xab1c5ed5 +% r0;
      r4 := ((t1 +% r4) & 0xffff_ffff) *% 0x1_0000_0001;
      r0 := ((((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r0 ^ r1;
      t1 := ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6))) +% w8 +% 0xd807aa98 +% r7;
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      t1 := ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5))) +% w9 +% 0x12835b01 +% r6;
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      t1 := ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4))) +% w10 +% 0x243185be +% r5;
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      t1 := ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3))) +% w11 +% 0x550c7dc3 +% r4;
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      t1 := ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2))) +% w12 +% 0x72be5d74 +% r3;
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      t1 := ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1))) +% w13 +% 0x80deb1fe +% r2;
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      t1 := ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0))) +% w14 +% 0x9bdc06a7 +% r1;
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      t1 := ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7))) +% w15 +% 0xc19bf174 +% r0;
      r4 := ((t1 +% r4) & 0xffff_ffff) *% 0x1_0000_0001;
      r0 := ((((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r0 ^ r1;
      w0 := ((w0 +% ((w1 >> 7) ^ (w1 >> 18) ^ (w1 >> 35)) +% w9 +% ((w14 >> 17) ^ (w14 >> 19) ^ (w14 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w0 +% 0xe49b69c1 +% r7 +% ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6)));
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      w1 := ((w1 +% ((w2 >> 7) ^ (w2 >> 18) ^ (w2 >> 35)) +% w10 +% ((w15 >> 17) ^ (w15 >> 19) ^ (w15 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w1 +% 0xefbe4786 +% r6 +% ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5)));
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      w2 := ((w2 +% ((w3 >> 7) ^ (w3 >> 18) ^ (w3 >> 35)) +% w11 +% ((w0 >> 17) ^ (w0 >> 19) ^ (w0 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w2 +% 0x0fc19dc6 +% r5 +% ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4)));
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      w3 := ((w3 +% ((w4 >> 7) ^ (w4 >> 18) ^ (w4 >> 35)) +% w12 +% ((w1 >> 17) ^ (w1 >> 19) ^ (w1 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w3 +% 0x240ca1cc +% r4 +% ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3)));
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      w4 := ((w4 +% ((w5 >> 7) ^ (w5 >> 18) ^ (w5 >> 35)) +% w13 +% ((w2 >> 17) ^ (w2 >> 19) ^ (w2 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w4 +% 0x2de92c6f +% r3 +% ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2)));
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      w5 := ((w5 +% ((w6 >> 7) ^ (w6 >> 18) ^ (w6 >> 35)) +% w14 +% ((w3 >> 17) ^ (w3 >> 19) ^ (w3 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w5 +% 0x4a7484aa +% r2 +% ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1)));
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      w6 := ((w6 +% ((w7 >> 7) ^ (w7 >> 18) ^ (w7 >> 35)) +% w15 +% ((w4 >> 17) ^ (w4 >> 19) ^ (w4 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w6 +% 0x5cb0a9dc +% r1 +% ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0)));
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      w7 := ((w7 +% ((w8 >> 7) ^ (w8 >> 18) ^ (w8 >> 35)) +% w0 +% ((w5 >> 17) ^ (w5 >> 19) ^ (w5 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w7 +% 0x76f988da +% r0 +% ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7)));
      r4 := ((t1 +% r4) & 0xffff_ffff) *% 0x1_0000_0001;
      r0 := ((((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r0 ^ r1;
      w8 := ((w8 +% ((w9 >> 7) ^ (w9 >> 18) ^ (w9 >> 35)) +% w1 +% ((w6 >> 17) ^ (w6 >> 19) ^ (w6 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w8 +% 0x983e5152 +% r7 +% ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6)));
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      w9 := ((w9 +% ((w10 >> 7) ^ (w10 >> 18) ^ (w10 >> 35)) +% w2 +% ((w7 >> 17) ^ (w7 >> 19) ^ (w7 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w9 +% 0xa831c66d +% r6 +% ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5)));
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      w10 := ((w10 +% ((w11 >> 7) ^ (w11 >> 18) ^ (w11 >> 35)) +% w3 +% ((w8 >> 17) ^ (w8 >> 19) ^ (w8 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w10 +% 0xb00327c8 +% r5 +% ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4)));
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      w11 := ((w11 +% ((w12 >> 7) ^ (w12 >> 18) ^ (w12 >> 35)) +% w4 +% ((w9 >> 17) ^ (w9 >> 19) ^ (w9 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w11 +% 0xbf597fc7 +% r4 +% ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3)));
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      w12 := ((w12 +% ((w13 >> 7) ^ (w13 >> 18) ^ (w13 >> 35)) +% w5 +% ((w10 >> 17) ^ (w10 >> 19) ^ (w10 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w12 +% 0xc6e00bf3 +% r3 +% ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2)));
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      w13 := ((w13 +% ((w14 >> 7) ^ (w14 >> 18) ^ (w14 >> 35)) +% w6 +% ((w11 >> 17) ^ (w11 >> 19) ^ (w11 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w13 +% 0xd5a79147 +% r2 +% ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1)));
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      w14 := ((w14 +% ((w15 >> 7) ^ (w15 >> 18) ^ (w15 >> 35)) +% w7 +% ((w12 >> 17) ^ (w12 >> 19) ^ (w12 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w14 +% 0x06ca6351 +% r1 +% ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0)));
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      w15 := ((w15 +% ((w0 >> 7) ^ (w0 >> 18) ^ (w0 >> 35)) +% w8 +% ((w13 >> 17) ^ (w13 >> 19) ^ (w13 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w15 +% 0x14292967 +% r0 +% ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7)));
      r4 := ((t1 +% r4) & 0xffff_ffff) *% 0x1_0000_0001;
      r0 := ((((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r0 ^ r1;
      w0 := ((w0 +% ((w1 >> 7) ^ (w1 >> 18) ^ (w1 >> 35)) +% w9 +% ((w14 >> 17) ^ (w14 >> 19) ^ (w14 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w0 +% 0x27b70a85 +% r7 +% ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6)));
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      w1 := ((w1 +% ((w2 >> 7) ^ (w2 >> 18) ^ (w2 >> 35)) +% w10 +% ((w15 >> 17) ^ (w15 >> 19) ^ (w15 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w1 +% 0x2e1b2138 +% r6 +% ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5)));
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      w2 := ((w2 +% ((w3 >> 7) ^ (w3 >> 18) ^ (w3 >> 35)) +% w11 +% ((w0 >> 17) ^ (w0 >> 19) ^ (w0 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w2 +% 0x4d2c6dfc +% r5 +% ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4)));
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      w3 := ((w3 +% ((w4 >> 7) ^ (w4 >> 18) ^ (w4 >> 35)) +% w12 +% ((w1 >> 17) ^ (w1 >> 19) ^ (w1 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w3 +% 0x53380d13 +% r4 +% ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3)));
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      w4 := ((w4 +% ((w5 >> 7) ^ (w5 >> 18) ^ (w5 >> 35)) +% w13 +% ((w2 >> 17) ^ (w2 >> 19) ^ (w2 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w4 +% 0x650a7354 +% r3 +% ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2)));
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      w5 := ((w5 +% ((w6 >> 7) ^ (w6 >> 18) ^ (w6 >> 35)) +% w14 +% ((w3 >> 17) ^ (w3 >> 19) ^ (w3 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w5 +% 0x766a0abb +% r2 +% ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1)));
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      w6 := ((w6 +% ((w7 >> 7) ^ (w7 >> 18) ^ (w7 >> 35)) +% w15 +% ((w4 >> 17) ^ (w4 >> 19) ^ (w4 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w6 +% 0x81c2c92e +% r1 +% ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0)));
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      w7 := ((w7 +% ((w8 >> 7) ^ (w8 >> 18) ^ (w8 >> 35)) +% w0 +% ((w5 >> 17) ^ (w5 >> 19) ^ (w5 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w7 +% 0x92722c85 +% r0 +% ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7)));
      r4 := ((t1 +% r4) & 0xffff_ffff) *% 0x1_0000_0001;
      r0 := ((((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r0 ^ r1;
      w8 := ((w8 +% ((w9 >> 7) ^ (w9 >> 18) ^ (w9 >> 35)) +% w1 +% ((w6 >> 17) ^ (w6 >> 19) ^ (w6 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w8 +% 0xa2bfe8a1 +% r7 +% ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6)));
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      w9 := ((w9 +% ((w10 >> 7) ^ (w10 >> 18) ^ (w10 >> 35)) +% w2 +% ((w7 >> 17) ^ (w7 >> 19) ^ (w7 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w9 +% 0xa81a664b +% r6 +% ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5)));
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      w10 := ((w10 +% ((w11 >> 7) ^ (w11 >> 18) ^ (w11 >> 35)) +% w3 +% ((w8 >> 17) ^ (w8 >> 19) ^ (w8 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w10 +% 0xc24b8b70 +% r5 +% ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4)));
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      w11 := ((w11 +% ((w12 >> 7) ^ (w12 >> 18) ^ (w12 >> 35)) +% w4 +% ((w9 >> 17) ^ (w9 >> 19) ^ (w9 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w11 +% 0xc76c51a3 +% r4 +% ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3)));
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      w12 := ((w12 +% ((w13 >> 7) ^ (w13 >> 18) ^ (w13 >> 35)) +% w5 +% ((w10 >> 17) ^ (w10 >> 19) ^ (w10 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w12 +% 0xd192e819 +% r3 +% ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2)));
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      w13 := ((w13 +% ((w14 >> 7) ^ (w14 >> 18) ^ (w14 >> 35)) +% w6 +% ((w11 >> 17) ^ (w11 >> 19) ^ (w11 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w13 +% 0xd6990624 +% r2 +% ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1)));
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      w14 := ((w14 +% ((w15 >> 7) ^ (w15 >> 18) ^ (w15 >> 35)) +% w7 +% ((w12 >> 17) ^ (w12 >> 19) ^ (w12 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w14 +% 0xf40e3585 +% r1 +% ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0)));
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      w15 := ((w15 +% ((w0 >> 7) ^ (w0 >> 18) ^ (w0 >> 35)) +% w8 +% ((w13 >> 17) ^ (w13 >> 19) ^ (w13 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w15 +% 0x106aa070 +% r0 +% ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7)));
      r4 := ((t1 +% r4) & 0xffff_ffff) *% 0x1_0000_0001;
      r0 := ((((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r0 ^ r1;
      w0 := ((w0 +% ((w1 >> 7) ^ (w1 >> 18) ^ (w1 >> 35)) +% w9 +% ((w14 >> 17) ^ (w14 >> 19) ^ (w14 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w0 +% 0x19a4c116 +% r7 +% ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6)));
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      w1 := ((w1 +% ((w2 >> 7) ^ (w2 >> 18) ^ (w2 >> 35)) +% w10 +% ((w15 >> 17) ^ (w15 >> 19) ^ (w15 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w1 +% 0x1e376c08 +% r6 +% ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5)));
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      w2 := ((w2 +% ((w3 >> 7) ^ (w3 >> 18) ^ (w3 >> 35)) +% w11 +% ((w0 >> 17) ^ (w0 >> 19) ^ (w0 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w2 +% 0x2748774c +% r5 +% ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4)));
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      w3 := ((w3 +% ((w4 >> 7) ^ (w4 >> 18) ^ (w4 >> 35)) +% w12 +% ((w1 >> 17) ^ (w1 >> 19) ^ (w1 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w3 +% 0x34b0bcb5 +% r4 +% ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3)));
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      w4 := ((w4 +% ((w5 >> 7) ^ (w5 >> 18) ^ (w5 >> 35)) +% w13 +% ((w2 >> 17) ^ (w2 >> 19) ^ (w2 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w4 +% 0x391c0cb3 +% r3 +% ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2)));
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      w5 := ((w5 +% ((w6 >> 7) ^ (w6 >> 18) ^ (w6 >> 35)) +% w14 +% ((w3 >> 17) ^ (w3 >> 19) ^ (w3 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w5 +% 0x4ed8aa4a +% r2 +% ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1)));
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      w6 := ((w6 +% ((w7 >> 7) ^ (w7 >> 18) ^ (w7 >> 35)) +% w15 +% ((w4 >> 17) ^ (w4 >> 19) ^ (w4 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w6 +% 0x5b9cca4f +% r1 +% ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0)));
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      w7 := ((w7 +% ((w8 >> 7) ^ (w8 >> 18) ^ (w8 >> 35)) +% w0 +% ((w5 >> 17) ^ (w5 >> 19) ^ (w5 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w7 +% 0x682e6ff3 +% r0 +% ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7)));
      r4 := ((t1 +% r4) & 0xffff_ffff) *% 0x1_0000_0001;
      r0 := ((((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r0 ^ r1;
      w8 := ((w8 +% ((w9 >> 7) ^ (w9 >> 18) ^ (w9 >> 35)) +% w1 +% ((w6 >> 17) ^ (w6 >> 19) ^ (w6 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w8 +% 0x748f82ee +% r7 +% ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6)));
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      w9 := ((w9 +% ((w10 >> 7) ^ (w10 >> 18) ^ (w10 >> 35)) +% w2 +% ((w7 >> 17) ^ (w7 >> 19) ^ (w7 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w9 +% 0x78a5636f +% r6 +% ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5)));
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      w10 := ((w10 +% ((w11 >> 7) ^ (w11 >> 18) ^ (w11 >> 35)) +% w3 +% ((w8 >> 17) ^ (w8 >> 19) ^ (w8 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w10 +% 0x84c87814 +% r5 +% ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4)));
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      w11 := ((w11 +% ((w12 >> 7) ^ (w12 >> 18) ^ (w12 >> 35)) +% w4 +% ((w9 >> 17) ^ (w9 >> 19) ^ (w9 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w11 +% 0x8cc70208 +% r4 +% ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3)));
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      w12 := ((w12 +% ((w13 >> 7) ^ (w13 >> 18) ^ (w13 >> 35)) +% w5 +% ((w10 >> 17) ^ (w10 >> 19) ^ (w10 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w12 +% 0x90befffa +% r3 +% ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2)));
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      w13 := ((w13 +% ((w14 >> 7) ^ (w14 >> 18) ^ (w14 >> 35)) +% w6 +% ((w11 >> 17) ^ (w11 >> 19) ^ (w11 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w13 +% 0xa4506ceb +% r2 +% ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1)));
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      w14 := w14 +% ((w15 >> 7) ^ (w15 >> 18) ^ (w15 >> 35)) +% w7 +% ((w12 >> 17) ^ (w12 >> 19) ^ (w12 >> 42));
      t1 := w14 +% 0xbef9a3f7 +% r1 +% ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0)));
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      w15 := w15 +% ((w0 >> 7) ^ (w0 >> 18) ^ (w0 >> 35)) +% w8 +% ((w13 >> 17) ^ (w13 >> 19) ^ (w13 >> 42));
      t1 := w15 +% 0xc67178f2 +% r0 +% ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7)));
      r4 := t1 +% r4;
      r0 := ((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22));
      h0 +%= r0;
      h1 +%= r1;
      h2 +%= r2;
      h3 +%= r3;
      h4 +%= r4;
      h5 +%= r5;
      h6 +%= r6;
      h7 +%= r7;
      off +%= 64;
    };
    s[0] := Nat32.fromNat64(h0 & 0xffff_ffff);
    s[1] := Nat32.fromNat64(h1 & 0xffff_ffff);
    s[2] := Nat32.fromNat64(h2 & 0xffff_ffff);
    s[3] := Nat32.fromNat64(h3 & 0xffff_ffff);
    s[4] := Nat32.fromNat64(h4 & 0xffff_ffff);
    s[5] := Nat32.fromNat64(h5 & 0xffff_ffff);
    s[6] := Nat32.fromNat64(h6 & 0xffff_ffff);
    s[7] := Nat32.fromNat64(h7 & 0xffff_ffff);
  };

  /// Compresses `blocks` 64-byte blocks of `data` from byte `offset` into
  /// the chaining value `s`. Bytes are read one by one: a Blob has no
  /// wider loads (see `withScratch` for the fast way). The index is a Nat64
  /// converted per byte: a Nat index would cost a bignum addition per byte.
  func compressBlob(s : [var Nat32], data : Blob, offset : Nat, blocks : Nat) {
    var i = Nat64.fromNat(offset);
    let end = i +% Nat64.fromNat(blocks) *% 64;
    var h0 = Nat32.toNat64(s[0]);
    var h1 = Nat32.toNat64(s[1]);
    var h2 = Nat32.toNat64(s[2]);
    var h3 = Nat32.toNat64(s[3]);
    var h4 = Nat32.toNat64(s[4]);
    var h5 = Nat32.toNat64(s[5]);
    var h6 = Nat32.toNat64(s[6]);
    var h7 = Nat32.toNat64(s[7]);
    while (i < end) {
      var w0 = (Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 0)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 1)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 2)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 3)])));
      var w1 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 4)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 5)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 6)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 7)])))) *% 0x1_0000_0001;
      var w2 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 8)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 9)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 10)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 11)])))) *% 0x1_0000_0001;
      var w3 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 12)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 13)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 14)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 15)])))) *% 0x1_0000_0001;
      var w4 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 16)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 17)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 18)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 19)])))) *% 0x1_0000_0001;
      var w5 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 20)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 21)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 22)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 23)])))) *% 0x1_0000_0001;
      var w6 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 24)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 25)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 26)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 27)])))) *% 0x1_0000_0001;
      var w7 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 28)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 29)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 30)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 31)])))) *% 0x1_0000_0001;
      var w8 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 32)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 33)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 34)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 35)])))) *% 0x1_0000_0001;
      var w9 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 36)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 37)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 38)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 39)])))) *% 0x1_0000_0001;
      var w10 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 40)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 41)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 42)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 43)])))) *% 0x1_0000_0001;
      var w11 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 44)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 45)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 46)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 47)])))) *% 0x1_0000_0001;
      var w12 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 48)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 49)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 50)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 51)])))) *% 0x1_0000_0001;
      var w13 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 52)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 53)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 54)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 55)])))) *% 0x1_0000_0001;
      var w14 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 56)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 57)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 58)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 59)])))) *% 0x1_0000_0001;
      var w15 = ((Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 60)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 61)]))) << 16) | Nat32.toNat64(Nat16.toNat32((Nat8.toNat16(data[Nat64.toNat(i +% 62)]) *% 256) | Nat8.toNat16(data[Nat64.toNat(i +% 63)])))) *% 0x1_0000_0001;
      var r0 = ((h0) & 0xffff_ffff) *% 0x1_0000_0001;
      var r1 = h1;
      var r2 = h2;
      var r3 = h3;
      var r4 = ((h4) & 0xffff_ffff) *% 0x1_0000_0001;
      var r5 = h5;
      var r6 = h6;
      var r7 = h7;
      var t1 : Nat64 = 0;
      var m0 = r0 ^ r1; // a ^ b of round 0
      var m1 = r1 ^ r2; // b ^ c of round 0
      t1 := ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6))) +% w0 +% 0x428a2f98 +% r7;
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      t1 := ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5))) +% w1 +% 0x71374491 +% r6;
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      t1 := ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4))) +% w2 +% 0xb5c0fbcf +% r5;
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      t1 := ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3))) +% w3 +% 0xe9b5dba5 +% r4;
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      t1 := ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2))) +% w4 +% 0x3956c25b +% r3;
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      t1 := ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1))) +% w5 +% 0x59f111f1 +% r2;
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      t1 := ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0))) +% w6 +% 0x923f82a4 +% r1;
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      t1 := ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7))) +% w7 +% 0xab1c5ed5 +% r0;
      r4 := ((t1 +% r4) & 0xffff_ffff) *% 0x1_0000_0001;
      r0 := ((((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r0 ^ r1;
      t1 := ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6))) +% w8 +% 0xd807aa98 +% r7;
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      t1 := ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5))) +% w9 +% 0x12835b01 +% r6;
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      t1 := ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4))) +% w10 +% 0x243185be +% r5;
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      t1 := ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3))) +% w11 +% 0x550c7dc3 +% r4;
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      t1 := ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2))) +% w12 +% 0x72be5d74 +% r3;
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      t1 := ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1))) +% w13 +% 0x80deb1fe +% r2;
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      t1 := ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0))) +% w14 +% 0x9bdc06a7 +% r1;
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      t1 := ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7))) +% w15 +% 0xc19bf174 +% r0;
      r4 := ((t1 +% r4) & 0xffff_ffff) *% 0x1_0000_0001;
      r0 := ((((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r0 ^ r1;
      w0 := ((w0 +% ((w1 >> 7) ^ (w1 >> 18) ^ (w1 >> 35)) +% w9 +% ((w14 >> 17) ^ (w14 >> 19) ^ (w14 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w0 +% 0xe49b69c1 +% r7 +% ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6)));
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      w1 := ((w1 +% ((w2 >> 7) ^ (w2 >> 18) ^ (w2 >> 35)) +% w10 +% ((w15 >> 17) ^ (w15 >> 19) ^ (w15 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w1 +% 0xefbe4786 +% r6 +% ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5)));
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      w2 := ((w2 +% ((w3 >> 7) ^ (w3 >> 18) ^ (w3 >> 35)) +% w11 +% ((w0 >> 17) ^ (w0 >> 19) ^ (w0 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w2 +% 0x0fc19dc6 +% r5 +% ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4)));
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      w3 := ((w3 +% ((w4 >> 7) ^ (w4 >> 18) ^ (w4 >> 35)) +% w12 +% ((w1 >> 17) ^ (w1 >> 19) ^ (w1 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w3 +% 0x240ca1cc +% r4 +% ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3)));
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      w4 := ((w4 +% ((w5 >> 7) ^ (w5 >> 18) ^ (w5 >> 35)) +% w13 +% ((w2 >> 17) ^ (w2 >> 19) ^ (w2 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w4 +% 0x2de92c6f +% r3 +% ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2)));
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      w5 := ((w5 +% ((w6 >> 7) ^ (w6 >> 18) ^ (w6 >> 35)) +% w14 +% ((w3 >> 17) ^ (w3 >> 19) ^ (w3 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w5 +% 0x4a7484aa +% r2 +% ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1)));
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      w6 := ((w6 +% ((w7 >> 7) ^ (w7 >> 18) ^ (w7 >> 35)) +% w15 +% ((w4 >> 17) ^ (w4 >> 19) ^ (w4 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w6 +% 0x5cb0a9dc +% r1 +% ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0)));
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      w7 := ((w7 +% ((w8 >> 7) ^ (w8 >> 18) ^ (w8 >> 35)) +% w0 +% ((w5 >> 17) ^ (w5 >> 19) ^ (w5 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w7 +% 0x76f988da +% r0 +% ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7)));
      r4 := ((t1 +% r4) & 0xffff_ffff) *% 0x1_0000_0001;
      r0 := ((((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r0 ^ r1;
      w8 := ((w8 +% ((w9 >> 7) ^ (w9 >> 18) ^ (w9 >> 35)) +% w1 +% ((w6 >> 17) ^ (w6 >> 19) ^ (w6 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w8 +% 0x983e5152 +% r7 +% ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6)));
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      w9 := ((w9 +% ((w10 >> 7) ^ (w10 >> 18) ^ (w10 >> 35)) +% w2 +% ((w7 >> 17) ^ (w7 >> 19) ^ (w7 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w9 +% 0xa831c66d +% r6 +% ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5)));
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      w10 := ((w10 +% ((w11 >> 7) ^ (w11 >> 18) ^ (w11 >> 35)) +% w3 +% ((w8 >> 17) ^ (w8 >> 19) ^ (w8 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w10 +% 0xb00327c8 +% r5 +% ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4)));
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      w11 := ((w11 +% ((w12 >> 7) ^ (w12 >> 18) ^ (w12 >> 35)) +% w4 +% ((w9 >> 17) ^ (w9 >> 19) ^ (w9 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w11 +% 0xbf597fc7 +% r4 +% ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3)));
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      w12 := ((w12 +% ((w13 >> 7) ^ (w13 >> 18) ^ (w13 >> 35)) +% w5 +% ((w10 >> 17) ^ (w10 >> 19) ^ (w10 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w12 +% 0xc6e00bf3 +% r3 +% ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2)));
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      w13 := ((w13 +% ((w14 >> 7) ^ (w14 >> 18) ^ (w14 >> 35)) +% w6 +% ((w11 >> 17) ^ (w11 >> 19) ^ (w11 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w13 +% 0xd5a79147 +% r2 +% ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1)));
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      w14 := ((w14 +% ((w15 >> 7) ^ (w15 >> 18) ^ (w15 >> 35)) +% w7 +% ((w12 >> 17) ^ (w12 >> 19) ^ (w12 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w14 +% 0x06ca6351 +% r1 +% ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0)));
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      w15 := ((w15 +% ((w0 >> 7) ^ (w0 >> 18) ^ (w0 >> 35)) +% w8 +% ((w13 >> 17) ^ (w13 >> 19) ^ (w13 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w15 +% 0x14292967 +% r0 +% ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7)));
      r4 := ((t1 +% r4) & 0xffff_ffff) *% 0x1_0000_0001;
      r0 := ((((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r0 ^ r1;
      w0 := ((w0 +% ((w1 >> 7) ^ (w1 >> 18) ^ (w1 >> 35)) +% w9 +% ((w14 >> 17) ^ (w14 >> 19) ^ (w14 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w0 +% 0x27b70a85 +% r7 +% ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6)));
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      w1 := ((w1 +% ((w2 >> 7) ^ (w2 >> 18) ^ (w2 >> 35)) +% w10 +% ((w15 >> 17) ^ (w15 >> 19) ^ (w15 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w1 +% 0x2e1b2138 +% r6 +% ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5)));
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      w2 := ((w2 +% ((w3 >> 7) ^ (w3 >> 18) ^ (w3 >> 35)) +% w11 +% ((w0 >> 17) ^ (w0 >> 19) ^ (w0 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w2 +% 0x4d2c6dfc +% r5 +% ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4)));
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      w3 := ((w3 +% ((w4 >> 7) ^ (w4 >> 18) ^ (w4 >> 35)) +% w12 +% ((w1 >> 17) ^ (w1 >> 19) ^ (w1 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w3 +% 0x53380d13 +% r4 +% ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3)));
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      w4 := ((w4 +% ((w5 >> 7) ^ (w5 >> 18) ^ (w5 >> 35)) +% w13 +% ((w2 >> 17) ^ (w2 >> 19) ^ (w2 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w4 +% 0x650a7354 +% r3 +% ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2)));
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      w5 := ((w5 +% ((w6 >> 7) ^ (w6 >> 18) ^ (w6 >> 35)) +% w14 +% ((w3 >> 17) ^ (w3 >> 19) ^ (w3 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w5 +% 0x766a0abb +% r2 +% ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1)));
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      w6 := ((w6 +% ((w7 >> 7) ^ (w7 >> 18) ^ (w7 >> 35)) +% w15 +% ((w4 >> 17) ^ (w4 >> 19) ^ (w4 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w6 +% 0x81c2c92e +% r1 +% ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0)));
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      w7 := ((w7 +% ((w8 >> 7) ^ (w8 >> 18) ^ (w8 >> 35)) +% w0 +% ((w5 >> 17) ^ (w5 >> 19) ^ (w5 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w7 +% 0x92722c85 +% r0 +% ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7)));
      r4 := ((t1 +% r4) & 0xffff_ffff) *% 0x1_0000_0001;
      r0 := ((((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r0 ^ r1;
      w8 := ((w8 +% ((w9 >> 7) ^ (w9 >> 18) ^ (w9 >> 35)) +% w1 +% ((w6 >> 17) ^ (w6 >> 19) ^ (w6 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w8 +% 0xa2bfe8a1 +% r7 +% ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6)));
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      w9 := ((w9 +% ((w10 >> 7) ^ (w10 >> 18) ^ (w10 >> 35)) +% w2 +% ((w7 >> 17) ^ (w7 >> 19) ^ (w7 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w9 +% 0xa81a664b +% r6 +% ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5)));
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      w10 := ((w10 +% ((w11 >> 7) ^ (w11 >> 18) ^ (w11 >> 35)) +% w3 +% ((w8 >> 17) ^ (w8 >> 19) ^ (w8 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w10 +% 0xc24b8b70 +% r5 +% ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4)));
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      w11 := ((w11 +% ((w12 >> 7) ^ (w12 >> 18) ^ (w12 >> 35)) +% w4 +% ((w9 >> 17) ^ (w9 >> 19) ^ (w9 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w11 +% 0xc76c51a3 +% r4 +% ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3)));
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      w12 := ((w12 +% ((w13 >> 7) ^ (w13 >> 18) ^ (w13 >> 35)) +% w5 +% ((w10 >> 17) ^ (w10 >> 19) ^ (w10 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w12 +% 0xd192e819 +% r3 +% ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2)));
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      w13 := ((w13 +% ((w14 >> 7) ^ (w14 >> 18) ^ (w14 >> 35)) +% w6 +% ((w11 >> 17) ^ (w11 >> 19) ^ (w11 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w13 +% 0xd6990624 +% r2 +% ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1)));
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      w14 := ((w14 +% ((w15 >> 7) ^ (w15 >> 18) ^ (w15 >> 35)) +% w7 +% ((w12 >> 17) ^ (w12 >> 19) ^ (w12 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w14 +% 0xf40e3585 +% r1 +% ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0)));
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      w15 := ((w15 +% ((w0 >> 7) ^ (w0 >> 18) ^ (w0 >> 35)) +% w8 +% ((w13 >> 17) ^ (w13 >> 19) ^ (w13 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w15 +% 0x106aa070 +% r0 +% ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7)));
      r4 := ((t1 +% r4) & 0xffff_ffff) *% 0x1_0000_0001;
      r0 := ((((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r0 ^ r1;
      w0 := ((w0 +% ((w1 >> 7) ^ (w1 >> 18) ^ (w1 >> 35)) +% w9 +% ((w14 >> 17) ^ (w14 >> 19) ^ (w14 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w0 +% 0x19a4c116 +% r7 +% ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6)));
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      w1 := ((w1 +% ((w2 >> 7) ^ (w2 >> 18) ^ (w2 >> 35)) +% w10 +% ((w15 >> 17) ^ (w15 >> 19) ^ (w15 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w1 +% 0x1e376c08 +% r6 +% ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5)));
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      w2 := ((w2 +% ((w3 >> 7) ^ (w3 >> 18) ^ (w3 >> 35)) +% w11 +% ((w0 >> 17) ^ (w0 >> 19) ^ (w0 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w2 +% 0x2748774c +% r5 +% ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4)));
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      w3 := ((w3 +% ((w4 >> 7) ^ (w4 >> 18) ^ (w4 >> 35)) +% w12 +% ((w1 >> 17) ^ (w1 >> 19) ^ (w1 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w3 +% 0x34b0bcb5 +% r4 +% ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3)));
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      w4 := ((w4 +% ((w5 >> 7) ^ (w5 >> 18) ^ (w5 >> 35)) +% w13 +% ((w2 >> 17) ^ (w2 >> 19) ^ (w2 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w4 +% 0x391c0cb3 +% r3 +% ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2)));
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      w5 := ((w5 +% ((w6 >> 7) ^ (w6 >> 18) ^ (w6 >> 35)) +% w14 +% ((w3 >> 17) ^ (w3 >> 19) ^ (w3 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w5 +% 0x4ed8aa4a +% r2 +% ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1)));
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      w6 := ((w6 +% ((w7 >> 7) ^ (w7 >> 18) ^ (w7 >> 35)) +% w15 +% ((w4 >> 17) ^ (w4 >> 19) ^ (w4 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w6 +% 0x5b9cca4f +% r1 +% ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0)));
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      w7 := ((w7 +% ((w8 >> 7) ^ (w8 >> 18) ^ (w8 >> 35)) +% w0 +% ((w5 >> 17) ^ (w5 >> 19) ^ (w5 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w7 +% 0x682e6ff3 +% r0 +% ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7)));
      r4 := ((t1 +% r4) & 0xffff_ffff) *% 0x1_0000_0001;
      r0 := ((((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r0 ^ r1;
      w8 := ((w8 +% ((w9 >> 7) ^ (w9 >> 18) ^ (w9 >> 35)) +% w1 +% ((w6 >> 17) ^ (w6 >> 19) ^ (w6 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w8 +% 0x748f82ee +% r7 +% ((r4 >> 6) ^ (r4 >> 11) ^ (r4 >> 25)) +% (r6 ^ (r4 & (r5 ^ r6)));
      r3 := ((t1 +% r3) & 0xffff_ffff) *% 0x1_0000_0001;
      r7 := ((((m0 & m1) ^ r1) +% t1 +% ((r0 >> 2) ^ (r0 >> 13) ^ (r0 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r7 ^ r0;
      w9 := ((w9 +% ((w10 >> 7) ^ (w10 >> 18) ^ (w10 >> 35)) +% w2 +% ((w7 >> 17) ^ (w7 >> 19) ^ (w7 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w9 +% 0x78a5636f +% r6 +% ((r3 >> 6) ^ (r3 >> 11) ^ (r3 >> 25)) +% (r5 ^ (r3 & (r4 ^ r5)));
      r2 := ((t1 +% r2) & 0xffff_ffff) *% 0x1_0000_0001;
      r6 := ((((m1 & m0) ^ r0) +% t1 +% ((r7 >> 2) ^ (r7 >> 13) ^ (r7 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r6 ^ r7;
      w10 := ((w10 +% ((w11 >> 7) ^ (w11 >> 18) ^ (w11 >> 35)) +% w3 +% ((w8 >> 17) ^ (w8 >> 19) ^ (w8 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w10 +% 0x84c87814 +% r5 +% ((r2 >> 6) ^ (r2 >> 11) ^ (r2 >> 25)) +% (r4 ^ (r2 & (r3 ^ r4)));
      r1 := ((t1 +% r1) & 0xffff_ffff) *% 0x1_0000_0001;
      r5 := ((((m0 & m1) ^ r7) +% t1 +% ((r6 >> 2) ^ (r6 >> 13) ^ (r6 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r5 ^ r6;
      w11 := ((w11 +% ((w12 >> 7) ^ (w12 >> 18) ^ (w12 >> 35)) +% w4 +% ((w9 >> 17) ^ (w9 >> 19) ^ (w9 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w11 +% 0x8cc70208 +% r4 +% ((r1 >> 6) ^ (r1 >> 11) ^ (r1 >> 25)) +% (r3 ^ (r1 & (r2 ^ r3)));
      r0 := ((t1 +% r0) & 0xffff_ffff) *% 0x1_0000_0001;
      r4 := ((((m1 & m0) ^ r6) +% t1 +% ((r5 >> 2) ^ (r5 >> 13) ^ (r5 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r4 ^ r5;
      w12 := ((w12 +% ((w13 >> 7) ^ (w13 >> 18) ^ (w13 >> 35)) +% w5 +% ((w10 >> 17) ^ (w10 >> 19) ^ (w10 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w12 +% 0x90befffa +% r3 +% ((r0 >> 6) ^ (r0 >> 11) ^ (r0 >> 25)) +% (r2 ^ (r0 & (r1 ^ r2)));
      r7 := ((t1 +% r7) & 0xffff_ffff) *% 0x1_0000_0001;
      r3 := ((((m0 & m1) ^ r5) +% t1 +% ((r4 >> 2) ^ (r4 >> 13) ^ (r4 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r3 ^ r4;
      w13 := ((w13 +% ((w14 >> 7) ^ (w14 >> 18) ^ (w14 >> 35)) +% w6 +% ((w11 >> 17) ^ (w11 >> 19) ^ (w11 >> 42))) & 0xffff_ffff) *% 0x1_0000_0001;
      t1 := w13 +% 0xa4506ceb +% r2 +% ((r7 >> 6) ^ (r7 >> 11) ^ (r7 >> 25)) +% (r1 ^ (r7 & (r0 ^ r1)));
      r6 := ((t1 +% r6) & 0xffff_ffff) *% 0x1_0000_0001;
      r2 := ((((m1 & m0) ^ r4) +% t1 +% ((r3 >> 2) ^ (r3 >> 13) ^ (r3 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m0 := r2 ^ r3;
      w14 := w14 +% ((w15 >> 7) ^ (w15 >> 18) ^ (w15 >> 35)) +% w7 +% ((w12 >> 17) ^ (w12 >> 19) ^ (w12 >> 42));
      t1 := w14 +% 0xbef9a3f7 +% r1 +% ((r6 >> 6) ^ (r6 >> 11) ^ (r6 >> 25)) +% (r0 ^ (r6 & (r7 ^ r0)));
      r5 := ((t1 +% r5) & 0xffff_ffff) *% 0x1_0000_0001;
      r1 := ((((m0 & m1) ^ r3) +% t1 +% ((r2 >> 2) ^ (r2 >> 13) ^ (r2 >> 22))) & 0xffff_ffff) *% 0x1_0000_0001;
      m1 := r1 ^ r2;
      w15 := w15 +% ((w0 >> 7) ^ (w0 >> 18) ^ (w0 >> 35)) +% w8 +% ((w13 >> 17) ^ (w13 >> 19) ^ (w13 >> 42));
      t1 := w15 +% 0xc67178f2 +% r0 +% ((r5 >> 6) ^ (r5 >> 11) ^ (r5 >> 25)) +% (r7 ^ (r5 & (r6 ^ r7)));
      r4 := t1 +% r4;
      r0 := ((m1 & m0) ^ r2) +% t1 +% ((r1 >> 2) ^ (r1 >> 13) ^ (r1 >> 22));
      h0 +%= r0;
      h1 +%= r1;
      h2 +%= r2;
      h3 +%= r3;
      h4 +%= r4;
      h5 +%= r5;
      h6 +%= r6;
      h7 +%= r7;
      i +%= 64;
    };
    s[0] := Nat32.fromNat64(h0 & 0xffff_ffff);
    s[1] := Nat32.fromNat64(h1 & 0xffff_ffff);
    s[2] := Nat32.fromNat64(h2 & 0xffff_ffff);
    s[3] := Nat32.fromNat64(h3 & 0xffff_ffff);
    s[4] := Nat32.fromNat64(h4 & 0xffff_ffff);
    s[5] := Nat32.fromNat64(h5 & 0xffff_ffff);
    s[6] := Nat32.fromNat64(h6 & 0xffff_ffff);
    s[7] := Nat32.fromNat64(h7 & 0xffff_ffff);
  };
  // END GENERATED

};
