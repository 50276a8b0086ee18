/// SHA-256 (FIPS 180-4) in Motoko, for image and chunk digests.
///
/// The hasher is incremental: feed it Blobs or byte ranges of a Region, then
/// call `sum`. About 310 instructions per byte: the 64 rounds are unrolled
/// (see `tools/gen_sha256_compress.py`) because Motoko's loop counters and
/// array accesses cost more than the rounds themselves.
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
import Nat32 "mo:core/Nat32";
import Nat64 "mo:core/Nat64";
import Region "mo:core/Region";
import VarArray "mo:core/VarArray";

module {

  let IV : [Nat32] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ];

  /// Bytes per input block.
  let BLOCK = 64;

  /// Region input is copied out in pieces of this size. One copy per piece
  /// instead of one 8-byte load per word: every region access is a System
  /// API call (`stable64_read`), which costs little on the IC but a lot in
  /// an emulator, while hashing from a blob costs ~15% more instructions.
  let REGION_PIECE : Nat64 = 65_536;

  /// An incremental SHA-256 computation. Not a stable type on purpose: a
  /// hasher lives within one message.
  public type Hasher = {
    state : [var Nat32]; // chaining value h0..h7
    pending : [var Nat8]; // bytes of an incomplete block
    var pendingLen : Nat;
    var total : Nat64; // bytes consumed so far
  };

  /// A fresh hasher.
  public func new() : Hasher {
    {
      state = VarArray.tabulate<Nat32>(8, func i = IV[i]);
      pending = VarArray.repeat<Nat8>(0, BLOCK);
      var pendingLen = 0;
      var total = 0;
    };
  };

  /// SHA-256 of `data`.
  public func digest(data : Blob) : Blob {
    let h = new();
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
    // Indexing (`data[i]`) rather than `data.get(i)`, which allocates a
    // closure per call.
    let n = data.size();
    var i = 0;
    if (self.pendingLen > 0) {
      while (self.pendingLen < BLOCK and i < n) {
        self.pending[self.pendingLen] := data[i];
        self.pendingLen += 1;
        i += 1;
      };
      if (self.pendingLen == BLOCK) compressPending(self);
    };
    let s = self.state;
    while (i + BLOCK <= n) {
      let (h0, h1, h2, h3, h4, h5, h6, h7) = compress(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], be32(data, i), be32(data, i + 4), be32(data, i + 8), be32(data, i + 12), be32(data, i + 16), be32(data, i + 20), be32(data, i + 24), be32(data, i + 28), be32(data, i + 32), be32(data, i + 36), be32(data, i + 40), be32(data, i + 44), be32(data, i + 48), be32(data, i + 52), be32(data, i + 56), be32(data, i + 60));
      store(s, h0, h1, h2, h3, h4, h5, h6, h7);
      i += BLOCK;
    };
    while (i < n) {
      self.pending[self.pendingLen] := data[i];
      self.pendingLen += 1;
      i += 1;
    };
    self.total +%= Nat64.fromNat(n);
  };

  /// Feeds `len` bytes of `region` starting at `offset` to the hasher.
  public func writeRegion(self : Hasher, region : Region.Region, offset : Nat64, len : Nat64) {
    var off = offset;
    let end = offset + len;
    while (off < end) {
      let n = Nat64.min(REGION_PIECE, end - off);
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
      let v = self.state[i];
      out[4 * i] := Nat8.fromNat32(v >> 24);
      out[4 * i + 1] := Nat8.fromNat32((v >> 16) & 0xff);
      out[4 * i + 2] := Nat8.fromNat32((v >> 8) & 0xff);
      out[4 * i + 3] := Nat8.fromNat32(v & 0xff);
      i += 1;
    };
    Blob.fromVarArray(out);
  };

  func store(s : [var Nat32], h0 : Nat32, h1 : Nat32, h2 : Nat32, h3 : Nat32, h4 : Nat32, h5 : Nat32, h6 : Nat32, h7 : Nat32) {
    s[0] := h0;
    s[1] := h1;
    s[2] := h2;
    s[3] := h3;
    s[4] := h4;
    s[5] := h5;
    s[6] := h6;
    s[7] := h7;
  };

  /// The big-endian word at byte `i` of `b`.
  func be32(b : Blob, i : Nat) : Nat32 {
    (byte(b[i]) << 24) | (byte(b[i + 1]) << 16) | (byte(b[i + 2]) << 8) | byte(b[i + 3]);
  };

  /// Widening without a wrapper call: both conversions are primitives.
  func byte(x : Nat8) : Nat32 = Nat32.fromNat16(Nat8.toNat16(x));

  /// Compresses the full pending block and empties it.
  func compressPending(self : Hasher) {
    let p = self.pending;
    let s = self.state;
    let (h0, h1, h2, h3, h4, h5, h6, h7) = compress(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], pw(p, 0), pw(p, 4), pw(p, 8), pw(p, 12), pw(p, 16), pw(p, 20), pw(p, 24), pw(p, 28), pw(p, 32), pw(p, 36), pw(p, 40), pw(p, 44), pw(p, 48), pw(p, 52), pw(p, 56), pw(p, 60));
    store(s, h0, h1, h2, h3, h4, h5, h6, h7);
    self.pendingLen := 0;
  };

  /// The big-endian word at byte `i` of the pending block.
  func pw(p : [var Nat8], i : Nat) : Nat32 {
    (byte(p[i]) << 24) | (byte(p[i + 1]) << 16) | (byte(p[i + 2]) << 8) | byte(p[i + 3]);
  };

  // BEGIN GENERATED by tools/gen_sha256_compress.py; do not edit.
  /// One compression: the chaining value `h0..h7` and the block `p0..p15`
  /// (big-endian words) give the next chaining value.
  func compress(h0 : Nat32, h1 : Nat32, h2 : Nat32, h3 : Nat32, h4 : Nat32, h5 : Nat32, h6 : Nat32, h7 : Nat32, p0 : Nat32, p1 : Nat32, p2 : Nat32, p3 : Nat32, p4 : Nat32, p5 : Nat32, p6 : Nat32, p7 : Nat32, p8 : Nat32, p9 : Nat32, p10 : Nat32, p11 : Nat32, p12 : Nat32, p13 : Nat32, p14 : Nat32, p15 : Nat32) : (Nat32, Nat32, Nat32, Nat32, Nat32, Nat32, Nat32, Nat32) {
    var w0 = p0;
    var w1 = p1;
    var w2 = p2;
    var w3 = p3;
    var w4 = p4;
    var w5 = p5;
    var w6 = p6;
    var w7 = p7;
    var w8 = p8;
    var w9 = p9;
    var w10 = p10;
    var w11 = p11;
    var w12 = p12;
    var w13 = p13;
    var w14 = p14;
    var w15 = p15;
    var r0 = h0;
    var r1 = h1;
    var r2 = h2;
    var r3 = h3;
    var r4 = h4;
    var r5 = h5;
    var r6 = h6;
    var r7 = h7;
    var t1 : Nat32 = 0;
    t1 := r7 +% ((r4 <>> 6) ^ (r4 <>> 11) ^ (r4 <>> 25)) +% ((r4 & r5) ^ ((^r4) & r6)) +% 0x428a2f98 +% w0;
    r3 +%= t1;
    r7 := t1 +% ((r0 <>> 2) ^ (r0 <>> 13) ^ (r0 <>> 22)) +% ((r0 & r1) ^ (r0 & r2) ^ (r1 & r2));
    t1 := r6 +% ((r3 <>> 6) ^ (r3 <>> 11) ^ (r3 <>> 25)) +% ((r3 & r4) ^ ((^r3) & r5)) +% 0x71374491 +% w1;
    r2 +%= t1;
    r6 := t1 +% ((r7 <>> 2) ^ (r7 <>> 13) ^ (r7 <>> 22)) +% ((r7 & r0) ^ (r7 & r1) ^ (r0 & r1));
    t1 := r5 +% ((r2 <>> 6) ^ (r2 <>> 11) ^ (r2 <>> 25)) +% ((r2 & r3) ^ ((^r2) & r4)) +% 0xb5c0fbcf +% w2;
    r1 +%= t1;
    r5 := t1 +% ((r6 <>> 2) ^ (r6 <>> 13) ^ (r6 <>> 22)) +% ((r6 & r7) ^ (r6 & r0) ^ (r7 & r0));
    t1 := r4 +% ((r1 <>> 6) ^ (r1 <>> 11) ^ (r1 <>> 25)) +% ((r1 & r2) ^ ((^r1) & r3)) +% 0xe9b5dba5 +% w3;
    r0 +%= t1;
    r4 := t1 +% ((r5 <>> 2) ^ (r5 <>> 13) ^ (r5 <>> 22)) +% ((r5 & r6) ^ (r5 & r7) ^ (r6 & r7));
    t1 := r3 +% ((r0 <>> 6) ^ (r0 <>> 11) ^ (r0 <>> 25)) +% ((r0 & r1) ^ ((^r0) & r2)) +% 0x3956c25b +% w4;
    r7 +%= t1;
    r3 := t1 +% ((r4 <>> 2) ^ (r4 <>> 13) ^ (r4 <>> 22)) +% ((r4 & r5) ^ (r4 & r6) ^ (r5 & r6));
    t1 := r2 +% ((r7 <>> 6) ^ (r7 <>> 11) ^ (r7 <>> 25)) +% ((r7 & r0) ^ ((^r7) & r1)) +% 0x59f111f1 +% w5;
    r6 +%= t1;
    r2 := t1 +% ((r3 <>> 2) ^ (r3 <>> 13) ^ (r3 <>> 22)) +% ((r3 & r4) ^ (r3 & r5) ^ (r4 & r5));
    t1 := r1 +% ((r6 <>> 6) ^ (r6 <>> 11) ^ (r6 <>> 25)) +% ((r6 & r7) ^ ((^r6) & r0)) +% 0x923f82a4 +% w6;
    r5 +%= t1;
    r1 := t1 +% ((r2 <>> 2) ^ (r2 <>> 13) ^ (r2 <>> 22)) +% ((r2 & r3) ^ (r2 & r4) ^ (r3 & r4));
    t1 := r0 +% ((r5 <>> 6) ^ (r5 <>> 11) ^ (r5 <>> 25)) +% ((r5 & r6) ^ ((^r5) & r7)) +% 0xab1c5ed5 +% w7;
    r4 +%= t1;
    r0 := t1 +% ((r1 <>> 2) ^ (r1 <>> 13) ^ (r1 <>> 22)) +% ((r1 & r2) ^ (r1 & r3) ^ (r2 & r3));
    t1 := r7 +% ((r4 <>> 6) ^ (r4 <>> 11) ^ (r4 <>> 25)) +% ((r4 & r5) ^ ((^r4) & r6)) +% 0xd807aa98 +% w8;
    r3 +%= t1;
    r7 := t1 +% ((r0 <>> 2) ^ (r0 <>> 13) ^ (r0 <>> 22)) +% ((r0 & r1) ^ (r0 & r2) ^ (r1 & r2));
    t1 := r6 +% ((r3 <>> 6) ^ (r3 <>> 11) ^ (r3 <>> 25)) +% ((r3 & r4) ^ ((^r3) & r5)) +% 0x12835b01 +% w9;
    r2 +%= t1;
    r6 := t1 +% ((r7 <>> 2) ^ (r7 <>> 13) ^ (r7 <>> 22)) +% ((r7 & r0) ^ (r7 & r1) ^ (r0 & r1));
    t1 := r5 +% ((r2 <>> 6) ^ (r2 <>> 11) ^ (r2 <>> 25)) +% ((r2 & r3) ^ ((^r2) & r4)) +% 0x243185be +% w10;
    r1 +%= t1;
    r5 := t1 +% ((r6 <>> 2) ^ (r6 <>> 13) ^ (r6 <>> 22)) +% ((r6 & r7) ^ (r6 & r0) ^ (r7 & r0));
    t1 := r4 +% ((r1 <>> 6) ^ (r1 <>> 11) ^ (r1 <>> 25)) +% ((r1 & r2) ^ ((^r1) & r3)) +% 0x550c7dc3 +% w11;
    r0 +%= t1;
    r4 := t1 +% ((r5 <>> 2) ^ (r5 <>> 13) ^ (r5 <>> 22)) +% ((r5 & r6) ^ (r5 & r7) ^ (r6 & r7));
    t1 := r3 +% ((r0 <>> 6) ^ (r0 <>> 11) ^ (r0 <>> 25)) +% ((r0 & r1) ^ ((^r0) & r2)) +% 0x72be5d74 +% w12;
    r7 +%= t1;
    r3 := t1 +% ((r4 <>> 2) ^ (r4 <>> 13) ^ (r4 <>> 22)) +% ((r4 & r5) ^ (r4 & r6) ^ (r5 & r6));
    t1 := r2 +% ((r7 <>> 6) ^ (r7 <>> 11) ^ (r7 <>> 25)) +% ((r7 & r0) ^ ((^r7) & r1)) +% 0x80deb1fe +% w13;
    r6 +%= t1;
    r2 := t1 +% ((r3 <>> 2) ^ (r3 <>> 13) ^ (r3 <>> 22)) +% ((r3 & r4) ^ (r3 & r5) ^ (r4 & r5));
    t1 := r1 +% ((r6 <>> 6) ^ (r6 <>> 11) ^ (r6 <>> 25)) +% ((r6 & r7) ^ ((^r6) & r0)) +% 0x9bdc06a7 +% w14;
    r5 +%= t1;
    r1 := t1 +% ((r2 <>> 2) ^ (r2 <>> 13) ^ (r2 <>> 22)) +% ((r2 & r3) ^ (r2 & r4) ^ (r3 & r4));
    t1 := r0 +% ((r5 <>> 6) ^ (r5 <>> 11) ^ (r5 <>> 25)) +% ((r5 & r6) ^ ((^r5) & r7)) +% 0xc19bf174 +% w15;
    r4 +%= t1;
    r0 := t1 +% ((r1 <>> 2) ^ (r1 <>> 13) ^ (r1 <>> 22)) +% ((r1 & r2) ^ (r1 & r3) ^ (r2 & r3));
    w0 := w0 +% ((w1 <>> 7) ^ (w1 <>> 18) ^ (w1 >> 3)) +% w9 +% ((w14 <>> 17) ^ (w14 <>> 19) ^ (w14 >> 10));
    t1 := r7 +% ((r4 <>> 6) ^ (r4 <>> 11) ^ (r4 <>> 25)) +% ((r4 & r5) ^ ((^r4) & r6)) +% 0xe49b69c1 +% w0;
    r3 +%= t1;
    r7 := t1 +% ((r0 <>> 2) ^ (r0 <>> 13) ^ (r0 <>> 22)) +% ((r0 & r1) ^ (r0 & r2) ^ (r1 & r2));
    w1 := w1 +% ((w2 <>> 7) ^ (w2 <>> 18) ^ (w2 >> 3)) +% w10 +% ((w15 <>> 17) ^ (w15 <>> 19) ^ (w15 >> 10));
    t1 := r6 +% ((r3 <>> 6) ^ (r3 <>> 11) ^ (r3 <>> 25)) +% ((r3 & r4) ^ ((^r3) & r5)) +% 0xefbe4786 +% w1;
    r2 +%= t1;
    r6 := t1 +% ((r7 <>> 2) ^ (r7 <>> 13) ^ (r7 <>> 22)) +% ((r7 & r0) ^ (r7 & r1) ^ (r0 & r1));
    w2 := w2 +% ((w3 <>> 7) ^ (w3 <>> 18) ^ (w3 >> 3)) +% w11 +% ((w0 <>> 17) ^ (w0 <>> 19) ^ (w0 >> 10));
    t1 := r5 +% ((r2 <>> 6) ^ (r2 <>> 11) ^ (r2 <>> 25)) +% ((r2 & r3) ^ ((^r2) & r4)) +% 0x0fc19dc6 +% w2;
    r1 +%= t1;
    r5 := t1 +% ((r6 <>> 2) ^ (r6 <>> 13) ^ (r6 <>> 22)) +% ((r6 & r7) ^ (r6 & r0) ^ (r7 & r0));
    w3 := w3 +% ((w4 <>> 7) ^ (w4 <>> 18) ^ (w4 >> 3)) +% w12 +% ((w1 <>> 17) ^ (w1 <>> 19) ^ (w1 >> 10));
    t1 := r4 +% ((r1 <>> 6) ^ (r1 <>> 11) ^ (r1 <>> 25)) +% ((r1 & r2) ^ ((^r1) & r3)) +% 0x240ca1cc +% w3;
    r0 +%= t1;
    r4 := t1 +% ((r5 <>> 2) ^ (r5 <>> 13) ^ (r5 <>> 22)) +% ((r5 & r6) ^ (r5 & r7) ^ (r6 & r7));
    w4 := w4 +% ((w5 <>> 7) ^ (w5 <>> 18) ^ (w5 >> 3)) +% w13 +% ((w2 <>> 17) ^ (w2 <>> 19) ^ (w2 >> 10));
    t1 := r3 +% ((r0 <>> 6) ^ (r0 <>> 11) ^ (r0 <>> 25)) +% ((r0 & r1) ^ ((^r0) & r2)) +% 0x2de92c6f +% w4;
    r7 +%= t1;
    r3 := t1 +% ((r4 <>> 2) ^ (r4 <>> 13) ^ (r4 <>> 22)) +% ((r4 & r5) ^ (r4 & r6) ^ (r5 & r6));
    w5 := w5 +% ((w6 <>> 7) ^ (w6 <>> 18) ^ (w6 >> 3)) +% w14 +% ((w3 <>> 17) ^ (w3 <>> 19) ^ (w3 >> 10));
    t1 := r2 +% ((r7 <>> 6) ^ (r7 <>> 11) ^ (r7 <>> 25)) +% ((r7 & r0) ^ ((^r7) & r1)) +% 0x4a7484aa +% w5;
    r6 +%= t1;
    r2 := t1 +% ((r3 <>> 2) ^ (r3 <>> 13) ^ (r3 <>> 22)) +% ((r3 & r4) ^ (r3 & r5) ^ (r4 & r5));
    w6 := w6 +% ((w7 <>> 7) ^ (w7 <>> 18) ^ (w7 >> 3)) +% w15 +% ((w4 <>> 17) ^ (w4 <>> 19) ^ (w4 >> 10));
    t1 := r1 +% ((r6 <>> 6) ^ (r6 <>> 11) ^ (r6 <>> 25)) +% ((r6 & r7) ^ ((^r6) & r0)) +% 0x5cb0a9dc +% w6;
    r5 +%= t1;
    r1 := t1 +% ((r2 <>> 2) ^ (r2 <>> 13) ^ (r2 <>> 22)) +% ((r2 & r3) ^ (r2 & r4) ^ (r3 & r4));
    w7 := w7 +% ((w8 <>> 7) ^ (w8 <>> 18) ^ (w8 >> 3)) +% w0 +% ((w5 <>> 17) ^ (w5 <>> 19) ^ (w5 >> 10));
    t1 := r0 +% ((r5 <>> 6) ^ (r5 <>> 11) ^ (r5 <>> 25)) +% ((r5 & r6) ^ ((^r5) & r7)) +% 0x76f988da +% w7;
    r4 +%= t1;
    r0 := t1 +% ((r1 <>> 2) ^ (r1 <>> 13) ^ (r1 <>> 22)) +% ((r1 & r2) ^ (r1 & r3) ^ (r2 & r3));
    w8 := w8 +% ((w9 <>> 7) ^ (w9 <>> 18) ^ (w9 >> 3)) +% w1 +% ((w6 <>> 17) ^ (w6 <>> 19) ^ (w6 >> 10));
    t1 := r7 +% ((r4 <>> 6) ^ (r4 <>> 11) ^ (r4 <>> 25)) +% ((r4 & r5) ^ ((^r4) & r6)) +% 0x983e5152 +% w8;
    r3 +%= t1;
    r7 := t1 +% ((r0 <>> 2) ^ (r0 <>> 13) ^ (r0 <>> 22)) +% ((r0 & r1) ^ (r0 & r2) ^ (r1 & r2));
    w9 := w9 +% ((w10 <>> 7) ^ (w10 <>> 18) ^ (w10 >> 3)) +% w2 +% ((w7 <>> 17) ^ (w7 <>> 19) ^ (w7 >> 10));
    t1 := r6 +% ((r3 <>> 6) ^ (r3 <>> 11) ^ (r3 <>> 25)) +% ((r3 & r4) ^ ((^r3) & r5)) +% 0xa831c66d +% w9;
    r2 +%= t1;
    r6 := t1 +% ((r7 <>> 2) ^ (r7 <>> 13) ^ (r7 <>> 22)) +% ((r7 & r0) ^ (r7 & r1) ^ (r0 & r1));
    w10 := w10 +% ((w11 <>> 7) ^ (w11 <>> 18) ^ (w11 >> 3)) +% w3 +% ((w8 <>> 17) ^ (w8 <>> 19) ^ (w8 >> 10));
    t1 := r5 +% ((r2 <>> 6) ^ (r2 <>> 11) ^ (r2 <>> 25)) +% ((r2 & r3) ^ ((^r2) & r4)) +% 0xb00327c8 +% w10;
    r1 +%= t1;
    r5 := t1 +% ((r6 <>> 2) ^ (r6 <>> 13) ^ (r6 <>> 22)) +% ((r6 & r7) ^ (r6 & r0) ^ (r7 & r0));
    w11 := w11 +% ((w12 <>> 7) ^ (w12 <>> 18) ^ (w12 >> 3)) +% w4 +% ((w9 <>> 17) ^ (w9 <>> 19) ^ (w9 >> 10));
    t1 := r4 +% ((r1 <>> 6) ^ (r1 <>> 11) ^ (r1 <>> 25)) +% ((r1 & r2) ^ ((^r1) & r3)) +% 0xbf597fc7 +% w11;
    r0 +%= t1;
    r4 := t1 +% ((r5 <>> 2) ^ (r5 <>> 13) ^ (r5 <>> 22)) +% ((r5 & r6) ^ (r5 & r7) ^ (r6 & r7));
    w12 := w12 +% ((w13 <>> 7) ^ (w13 <>> 18) ^ (w13 >> 3)) +% w5 +% ((w10 <>> 17) ^ (w10 <>> 19) ^ (w10 >> 10));
    t1 := r3 +% ((r0 <>> 6) ^ (r0 <>> 11) ^ (r0 <>> 25)) +% ((r0 & r1) ^ ((^r0) & r2)) +% 0xc6e00bf3 +% w12;
    r7 +%= t1;
    r3 := t1 +% ((r4 <>> 2) ^ (r4 <>> 13) ^ (r4 <>> 22)) +% ((r4 & r5) ^ (r4 & r6) ^ (r5 & r6));
    w13 := w13 +% ((w14 <>> 7) ^ (w14 <>> 18) ^ (w14 >> 3)) +% w6 +% ((w11 <>> 17) ^ (w11 <>> 19) ^ (w11 >> 10));
    t1 := r2 +% ((r7 <>> 6) ^ (r7 <>> 11) ^ (r7 <>> 25)) +% ((r7 & r0) ^ ((^r7) & r1)) +% 0xd5a79147 +% w13;
    r6 +%= t1;
    r2 := t1 +% ((r3 <>> 2) ^ (r3 <>> 13) ^ (r3 <>> 22)) +% ((r3 & r4) ^ (r3 & r5) ^ (r4 & r5));
    w14 := w14 +% ((w15 <>> 7) ^ (w15 <>> 18) ^ (w15 >> 3)) +% w7 +% ((w12 <>> 17) ^ (w12 <>> 19) ^ (w12 >> 10));
    t1 := r1 +% ((r6 <>> 6) ^ (r6 <>> 11) ^ (r6 <>> 25)) +% ((r6 & r7) ^ ((^r6) & r0)) +% 0x06ca6351 +% w14;
    r5 +%= t1;
    r1 := t1 +% ((r2 <>> 2) ^ (r2 <>> 13) ^ (r2 <>> 22)) +% ((r2 & r3) ^ (r2 & r4) ^ (r3 & r4));
    w15 := w15 +% ((w0 <>> 7) ^ (w0 <>> 18) ^ (w0 >> 3)) +% w8 +% ((w13 <>> 17) ^ (w13 <>> 19) ^ (w13 >> 10));
    t1 := r0 +% ((r5 <>> 6) ^ (r5 <>> 11) ^ (r5 <>> 25)) +% ((r5 & r6) ^ ((^r5) & r7)) +% 0x14292967 +% w15;
    r4 +%= t1;
    r0 := t1 +% ((r1 <>> 2) ^ (r1 <>> 13) ^ (r1 <>> 22)) +% ((r1 & r2) ^ (r1 & r3) ^ (r2 & r3));
    let (a0, a1, a2, a3, a4, a5, a6, a7) = compressRest(w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, r0, r1, r2, r3, r4, r5, r6, r7);
    (h0 +% a0, h1 +% a1, h2 +% a2, h3 +% a3, h4 +% a4, h5 +% a5, h6 +% a6, h7 +% a7);
  };

  /// Rounds 32..63 of `compress`.
  func compressRest(p0 : Nat32, p1 : Nat32, p2 : Nat32, p3 : Nat32, p4 : Nat32, p5 : Nat32, p6 : Nat32, p7 : Nat32, p8 : Nat32, p9 : Nat32, p10 : Nat32, p11 : Nat32, p12 : Nat32, p13 : Nat32, p14 : Nat32, p15 : Nat32, q0 : Nat32, q1 : Nat32, q2 : Nat32, q3 : Nat32, q4 : Nat32, q5 : Nat32, q6 : Nat32, q7 : Nat32) : (Nat32, Nat32, Nat32, Nat32, Nat32, Nat32, Nat32, Nat32) {
    var w0 = p0;
    var w1 = p1;
    var w2 = p2;
    var w3 = p3;
    var w4 = p4;
    var w5 = p5;
    var w6 = p6;
    var w7 = p7;
    var w8 = p8;
    var w9 = p9;
    var w10 = p10;
    var w11 = p11;
    var w12 = p12;
    var w13 = p13;
    var w14 = p14;
    var w15 = p15;
    var r0 = q0;
    var r1 = q1;
    var r2 = q2;
    var r3 = q3;
    var r4 = q4;
    var r5 = q5;
    var r6 = q6;
    var r7 = q7;
    var t1 : Nat32 = 0;
    w0 := w0 +% ((w1 <>> 7) ^ (w1 <>> 18) ^ (w1 >> 3)) +% w9 +% ((w14 <>> 17) ^ (w14 <>> 19) ^ (w14 >> 10));
    t1 := r7 +% ((r4 <>> 6) ^ (r4 <>> 11) ^ (r4 <>> 25)) +% ((r4 & r5) ^ ((^r4) & r6)) +% 0x27b70a85 +% w0;
    r3 +%= t1;
    r7 := t1 +% ((r0 <>> 2) ^ (r0 <>> 13) ^ (r0 <>> 22)) +% ((r0 & r1) ^ (r0 & r2) ^ (r1 & r2));
    w1 := w1 +% ((w2 <>> 7) ^ (w2 <>> 18) ^ (w2 >> 3)) +% w10 +% ((w15 <>> 17) ^ (w15 <>> 19) ^ (w15 >> 10));
    t1 := r6 +% ((r3 <>> 6) ^ (r3 <>> 11) ^ (r3 <>> 25)) +% ((r3 & r4) ^ ((^r3) & r5)) +% 0x2e1b2138 +% w1;
    r2 +%= t1;
    r6 := t1 +% ((r7 <>> 2) ^ (r7 <>> 13) ^ (r7 <>> 22)) +% ((r7 & r0) ^ (r7 & r1) ^ (r0 & r1));
    w2 := w2 +% ((w3 <>> 7) ^ (w3 <>> 18) ^ (w3 >> 3)) +% w11 +% ((w0 <>> 17) ^ (w0 <>> 19) ^ (w0 >> 10));
    t1 := r5 +% ((r2 <>> 6) ^ (r2 <>> 11) ^ (r2 <>> 25)) +% ((r2 & r3) ^ ((^r2) & r4)) +% 0x4d2c6dfc +% w2;
    r1 +%= t1;
    r5 := t1 +% ((r6 <>> 2) ^ (r6 <>> 13) ^ (r6 <>> 22)) +% ((r6 & r7) ^ (r6 & r0) ^ (r7 & r0));
    w3 := w3 +% ((w4 <>> 7) ^ (w4 <>> 18) ^ (w4 >> 3)) +% w12 +% ((w1 <>> 17) ^ (w1 <>> 19) ^ (w1 >> 10));
    t1 := r4 +% ((r1 <>> 6) ^ (r1 <>> 11) ^ (r1 <>> 25)) +% ((r1 & r2) ^ ((^r1) & r3)) +% 0x53380d13 +% w3;
    r0 +%= t1;
    r4 := t1 +% ((r5 <>> 2) ^ (r5 <>> 13) ^ (r5 <>> 22)) +% ((r5 & r6) ^ (r5 & r7) ^ (r6 & r7));
    w4 := w4 +% ((w5 <>> 7) ^ (w5 <>> 18) ^ (w5 >> 3)) +% w13 +% ((w2 <>> 17) ^ (w2 <>> 19) ^ (w2 >> 10));
    t1 := r3 +% ((r0 <>> 6) ^ (r0 <>> 11) ^ (r0 <>> 25)) +% ((r0 & r1) ^ ((^r0) & r2)) +% 0x650a7354 +% w4;
    r7 +%= t1;
    r3 := t1 +% ((r4 <>> 2) ^ (r4 <>> 13) ^ (r4 <>> 22)) +% ((r4 & r5) ^ (r4 & r6) ^ (r5 & r6));
    w5 := w5 +% ((w6 <>> 7) ^ (w6 <>> 18) ^ (w6 >> 3)) +% w14 +% ((w3 <>> 17) ^ (w3 <>> 19) ^ (w3 >> 10));
    t1 := r2 +% ((r7 <>> 6) ^ (r7 <>> 11) ^ (r7 <>> 25)) +% ((r7 & r0) ^ ((^r7) & r1)) +% 0x766a0abb +% w5;
    r6 +%= t1;
    r2 := t1 +% ((r3 <>> 2) ^ (r3 <>> 13) ^ (r3 <>> 22)) +% ((r3 & r4) ^ (r3 & r5) ^ (r4 & r5));
    w6 := w6 +% ((w7 <>> 7) ^ (w7 <>> 18) ^ (w7 >> 3)) +% w15 +% ((w4 <>> 17) ^ (w4 <>> 19) ^ (w4 >> 10));
    t1 := r1 +% ((r6 <>> 6) ^ (r6 <>> 11) ^ (r6 <>> 25)) +% ((r6 & r7) ^ ((^r6) & r0)) +% 0x81c2c92e +% w6;
    r5 +%= t1;
    r1 := t1 +% ((r2 <>> 2) ^ (r2 <>> 13) ^ (r2 <>> 22)) +% ((r2 & r3) ^ (r2 & r4) ^ (r3 & r4));
    w7 := w7 +% ((w8 <>> 7) ^ (w8 <>> 18) ^ (w8 >> 3)) +% w0 +% ((w5 <>> 17) ^ (w5 <>> 19) ^ (w5 >> 10));
    t1 := r0 +% ((r5 <>> 6) ^ (r5 <>> 11) ^ (r5 <>> 25)) +% ((r5 & r6) ^ ((^r5) & r7)) +% 0x92722c85 +% w7;
    r4 +%= t1;
    r0 := t1 +% ((r1 <>> 2) ^ (r1 <>> 13) ^ (r1 <>> 22)) +% ((r1 & r2) ^ (r1 & r3) ^ (r2 & r3));
    w8 := w8 +% ((w9 <>> 7) ^ (w9 <>> 18) ^ (w9 >> 3)) +% w1 +% ((w6 <>> 17) ^ (w6 <>> 19) ^ (w6 >> 10));
    t1 := r7 +% ((r4 <>> 6) ^ (r4 <>> 11) ^ (r4 <>> 25)) +% ((r4 & r5) ^ ((^r4) & r6)) +% 0xa2bfe8a1 +% w8;
    r3 +%= t1;
    r7 := t1 +% ((r0 <>> 2) ^ (r0 <>> 13) ^ (r0 <>> 22)) +% ((r0 & r1) ^ (r0 & r2) ^ (r1 & r2));
    w9 := w9 +% ((w10 <>> 7) ^ (w10 <>> 18) ^ (w10 >> 3)) +% w2 +% ((w7 <>> 17) ^ (w7 <>> 19) ^ (w7 >> 10));
    t1 := r6 +% ((r3 <>> 6) ^ (r3 <>> 11) ^ (r3 <>> 25)) +% ((r3 & r4) ^ ((^r3) & r5)) +% 0xa81a664b +% w9;
    r2 +%= t1;
    r6 := t1 +% ((r7 <>> 2) ^ (r7 <>> 13) ^ (r7 <>> 22)) +% ((r7 & r0) ^ (r7 & r1) ^ (r0 & r1));
    w10 := w10 +% ((w11 <>> 7) ^ (w11 <>> 18) ^ (w11 >> 3)) +% w3 +% ((w8 <>> 17) ^ (w8 <>> 19) ^ (w8 >> 10));
    t1 := r5 +% ((r2 <>> 6) ^ (r2 <>> 11) ^ (r2 <>> 25)) +% ((r2 & r3) ^ ((^r2) & r4)) +% 0xc24b8b70 +% w10;
    r1 +%= t1;
    r5 := t1 +% ((r6 <>> 2) ^ (r6 <>> 13) ^ (r6 <>> 22)) +% ((r6 & r7) ^ (r6 & r0) ^ (r7 & r0));
    w11 := w11 +% ((w12 <>> 7) ^ (w12 <>> 18) ^ (w12 >> 3)) +% w4 +% ((w9 <>> 17) ^ (w9 <>> 19) ^ (w9 >> 10));
    t1 := r4 +% ((r1 <>> 6) ^ (r1 <>> 11) ^ (r1 <>> 25)) +% ((r1 & r2) ^ ((^r1) & r3)) +% 0xc76c51a3 +% w11;
    r0 +%= t1;
    r4 := t1 +% ((r5 <>> 2) ^ (r5 <>> 13) ^ (r5 <>> 22)) +% ((r5 & r6) ^ (r5 & r7) ^ (r6 & r7));
    w12 := w12 +% ((w13 <>> 7) ^ (w13 <>> 18) ^ (w13 >> 3)) +% w5 +% ((w10 <>> 17) ^ (w10 <>> 19) ^ (w10 >> 10));
    t1 := r3 +% ((r0 <>> 6) ^ (r0 <>> 11) ^ (r0 <>> 25)) +% ((r0 & r1) ^ ((^r0) & r2)) +% 0xd192e819 +% w12;
    r7 +%= t1;
    r3 := t1 +% ((r4 <>> 2) ^ (r4 <>> 13) ^ (r4 <>> 22)) +% ((r4 & r5) ^ (r4 & r6) ^ (r5 & r6));
    w13 := w13 +% ((w14 <>> 7) ^ (w14 <>> 18) ^ (w14 >> 3)) +% w6 +% ((w11 <>> 17) ^ (w11 <>> 19) ^ (w11 >> 10));
    t1 := r2 +% ((r7 <>> 6) ^ (r7 <>> 11) ^ (r7 <>> 25)) +% ((r7 & r0) ^ ((^r7) & r1)) +% 0xd6990624 +% w13;
    r6 +%= t1;
    r2 := t1 +% ((r3 <>> 2) ^ (r3 <>> 13) ^ (r3 <>> 22)) +% ((r3 & r4) ^ (r3 & r5) ^ (r4 & r5));
    w14 := w14 +% ((w15 <>> 7) ^ (w15 <>> 18) ^ (w15 >> 3)) +% w7 +% ((w12 <>> 17) ^ (w12 <>> 19) ^ (w12 >> 10));
    t1 := r1 +% ((r6 <>> 6) ^ (r6 <>> 11) ^ (r6 <>> 25)) +% ((r6 & r7) ^ ((^r6) & r0)) +% 0xf40e3585 +% w14;
    r5 +%= t1;
    r1 := t1 +% ((r2 <>> 2) ^ (r2 <>> 13) ^ (r2 <>> 22)) +% ((r2 & r3) ^ (r2 & r4) ^ (r3 & r4));
    w15 := w15 +% ((w0 <>> 7) ^ (w0 <>> 18) ^ (w0 >> 3)) +% w8 +% ((w13 <>> 17) ^ (w13 <>> 19) ^ (w13 >> 10));
    t1 := r0 +% ((r5 <>> 6) ^ (r5 <>> 11) ^ (r5 <>> 25)) +% ((r5 & r6) ^ ((^r5) & r7)) +% 0x106aa070 +% w15;
    r4 +%= t1;
    r0 := t1 +% ((r1 <>> 2) ^ (r1 <>> 13) ^ (r1 <>> 22)) +% ((r1 & r2) ^ (r1 & r3) ^ (r2 & r3));
    w0 := w0 +% ((w1 <>> 7) ^ (w1 <>> 18) ^ (w1 >> 3)) +% w9 +% ((w14 <>> 17) ^ (w14 <>> 19) ^ (w14 >> 10));
    t1 := r7 +% ((r4 <>> 6) ^ (r4 <>> 11) ^ (r4 <>> 25)) +% ((r4 & r5) ^ ((^r4) & r6)) +% 0x19a4c116 +% w0;
    r3 +%= t1;
    r7 := t1 +% ((r0 <>> 2) ^ (r0 <>> 13) ^ (r0 <>> 22)) +% ((r0 & r1) ^ (r0 & r2) ^ (r1 & r2));
    w1 := w1 +% ((w2 <>> 7) ^ (w2 <>> 18) ^ (w2 >> 3)) +% w10 +% ((w15 <>> 17) ^ (w15 <>> 19) ^ (w15 >> 10));
    t1 := r6 +% ((r3 <>> 6) ^ (r3 <>> 11) ^ (r3 <>> 25)) +% ((r3 & r4) ^ ((^r3) & r5)) +% 0x1e376c08 +% w1;
    r2 +%= t1;
    r6 := t1 +% ((r7 <>> 2) ^ (r7 <>> 13) ^ (r7 <>> 22)) +% ((r7 & r0) ^ (r7 & r1) ^ (r0 & r1));
    w2 := w2 +% ((w3 <>> 7) ^ (w3 <>> 18) ^ (w3 >> 3)) +% w11 +% ((w0 <>> 17) ^ (w0 <>> 19) ^ (w0 >> 10));
    t1 := r5 +% ((r2 <>> 6) ^ (r2 <>> 11) ^ (r2 <>> 25)) +% ((r2 & r3) ^ ((^r2) & r4)) +% 0x2748774c +% w2;
    r1 +%= t1;
    r5 := t1 +% ((r6 <>> 2) ^ (r6 <>> 13) ^ (r6 <>> 22)) +% ((r6 & r7) ^ (r6 & r0) ^ (r7 & r0));
    w3 := w3 +% ((w4 <>> 7) ^ (w4 <>> 18) ^ (w4 >> 3)) +% w12 +% ((w1 <>> 17) ^ (w1 <>> 19) ^ (w1 >> 10));
    t1 := r4 +% ((r1 <>> 6) ^ (r1 <>> 11) ^ (r1 <>> 25)) +% ((r1 & r2) ^ ((^r1) & r3)) +% 0x34b0bcb5 +% w3;
    r0 +%= t1;
    r4 := t1 +% ((r5 <>> 2) ^ (r5 <>> 13) ^ (r5 <>> 22)) +% ((r5 & r6) ^ (r5 & r7) ^ (r6 & r7));
    w4 := w4 +% ((w5 <>> 7) ^ (w5 <>> 18) ^ (w5 >> 3)) +% w13 +% ((w2 <>> 17) ^ (w2 <>> 19) ^ (w2 >> 10));
    t1 := r3 +% ((r0 <>> 6) ^ (r0 <>> 11) ^ (r0 <>> 25)) +% ((r0 & r1) ^ ((^r0) & r2)) +% 0x391c0cb3 +% w4;
    r7 +%= t1;
    r3 := t1 +% ((r4 <>> 2) ^ (r4 <>> 13) ^ (r4 <>> 22)) +% ((r4 & r5) ^ (r4 & r6) ^ (r5 & r6));
    w5 := w5 +% ((w6 <>> 7) ^ (w6 <>> 18) ^ (w6 >> 3)) +% w14 +% ((w3 <>> 17) ^ (w3 <>> 19) ^ (w3 >> 10));
    t1 := r2 +% ((r7 <>> 6) ^ (r7 <>> 11) ^ (r7 <>> 25)) +% ((r7 & r0) ^ ((^r7) & r1)) +% 0x4ed8aa4a +% w5;
    r6 +%= t1;
    r2 := t1 +% ((r3 <>> 2) ^ (r3 <>> 13) ^ (r3 <>> 22)) +% ((r3 & r4) ^ (r3 & r5) ^ (r4 & r5));
    w6 := w6 +% ((w7 <>> 7) ^ (w7 <>> 18) ^ (w7 >> 3)) +% w15 +% ((w4 <>> 17) ^ (w4 <>> 19) ^ (w4 >> 10));
    t1 := r1 +% ((r6 <>> 6) ^ (r6 <>> 11) ^ (r6 <>> 25)) +% ((r6 & r7) ^ ((^r6) & r0)) +% 0x5b9cca4f +% w6;
    r5 +%= t1;
    r1 := t1 +% ((r2 <>> 2) ^ (r2 <>> 13) ^ (r2 <>> 22)) +% ((r2 & r3) ^ (r2 & r4) ^ (r3 & r4));
    w7 := w7 +% ((w8 <>> 7) ^ (w8 <>> 18) ^ (w8 >> 3)) +% w0 +% ((w5 <>> 17) ^ (w5 <>> 19) ^ (w5 >> 10));
    t1 := r0 +% ((r5 <>> 6) ^ (r5 <>> 11) ^ (r5 <>> 25)) +% ((r5 & r6) ^ ((^r5) & r7)) +% 0x682e6ff3 +% w7;
    r4 +%= t1;
    r0 := t1 +% ((r1 <>> 2) ^ (r1 <>> 13) ^ (r1 <>> 22)) +% ((r1 & r2) ^ (r1 & r3) ^ (r2 & r3));
    w8 := w8 +% ((w9 <>> 7) ^ (w9 <>> 18) ^ (w9 >> 3)) +% w1 +% ((w6 <>> 17) ^ (w6 <>> 19) ^ (w6 >> 10));
    t1 := r7 +% ((r4 <>> 6) ^ (r4 <>> 11) ^ (r4 <>> 25)) +% ((r4 & r5) ^ ((^r4) & r6)) +% 0x748f82ee +% w8;
    r3 +%= t1;
    r7 := t1 +% ((r0 <>> 2) ^ (r0 <>> 13) ^ (r0 <>> 22)) +% ((r0 & r1) ^ (r0 & r2) ^ (r1 & r2));
    w9 := w9 +% ((w10 <>> 7) ^ (w10 <>> 18) ^ (w10 >> 3)) +% w2 +% ((w7 <>> 17) ^ (w7 <>> 19) ^ (w7 >> 10));
    t1 := r6 +% ((r3 <>> 6) ^ (r3 <>> 11) ^ (r3 <>> 25)) +% ((r3 & r4) ^ ((^r3) & r5)) +% 0x78a5636f +% w9;
    r2 +%= t1;
    r6 := t1 +% ((r7 <>> 2) ^ (r7 <>> 13) ^ (r7 <>> 22)) +% ((r7 & r0) ^ (r7 & r1) ^ (r0 & r1));
    w10 := w10 +% ((w11 <>> 7) ^ (w11 <>> 18) ^ (w11 >> 3)) +% w3 +% ((w8 <>> 17) ^ (w8 <>> 19) ^ (w8 >> 10));
    t1 := r5 +% ((r2 <>> 6) ^ (r2 <>> 11) ^ (r2 <>> 25)) +% ((r2 & r3) ^ ((^r2) & r4)) +% 0x84c87814 +% w10;
    r1 +%= t1;
    r5 := t1 +% ((r6 <>> 2) ^ (r6 <>> 13) ^ (r6 <>> 22)) +% ((r6 & r7) ^ (r6 & r0) ^ (r7 & r0));
    w11 := w11 +% ((w12 <>> 7) ^ (w12 <>> 18) ^ (w12 >> 3)) +% w4 +% ((w9 <>> 17) ^ (w9 <>> 19) ^ (w9 >> 10));
    t1 := r4 +% ((r1 <>> 6) ^ (r1 <>> 11) ^ (r1 <>> 25)) +% ((r1 & r2) ^ ((^r1) & r3)) +% 0x8cc70208 +% w11;
    r0 +%= t1;
    r4 := t1 +% ((r5 <>> 2) ^ (r5 <>> 13) ^ (r5 <>> 22)) +% ((r5 & r6) ^ (r5 & r7) ^ (r6 & r7));
    w12 := w12 +% ((w13 <>> 7) ^ (w13 <>> 18) ^ (w13 >> 3)) +% w5 +% ((w10 <>> 17) ^ (w10 <>> 19) ^ (w10 >> 10));
    t1 := r3 +% ((r0 <>> 6) ^ (r0 <>> 11) ^ (r0 <>> 25)) +% ((r0 & r1) ^ ((^r0) & r2)) +% 0x90befffa +% w12;
    r7 +%= t1;
    r3 := t1 +% ((r4 <>> 2) ^ (r4 <>> 13) ^ (r4 <>> 22)) +% ((r4 & r5) ^ (r4 & r6) ^ (r5 & r6));
    w13 := w13 +% ((w14 <>> 7) ^ (w14 <>> 18) ^ (w14 >> 3)) +% w6 +% ((w11 <>> 17) ^ (w11 <>> 19) ^ (w11 >> 10));
    t1 := r2 +% ((r7 <>> 6) ^ (r7 <>> 11) ^ (r7 <>> 25)) +% ((r7 & r0) ^ ((^r7) & r1)) +% 0xa4506ceb +% w13;
    r6 +%= t1;
    r2 := t1 +% ((r3 <>> 2) ^ (r3 <>> 13) ^ (r3 <>> 22)) +% ((r3 & r4) ^ (r3 & r5) ^ (r4 & r5));
    w14 := w14 +% ((w15 <>> 7) ^ (w15 <>> 18) ^ (w15 >> 3)) +% w7 +% ((w12 <>> 17) ^ (w12 <>> 19) ^ (w12 >> 10));
    t1 := r1 +% ((r6 <>> 6) ^ (r6 <>> 11) ^ (r6 <>> 25)) +% ((r6 & r7) ^ ((^r6) & r0)) +% 0xbef9a3f7 +% w14;
    r5 +%= t1;
    r1 := t1 +% ((r2 <>> 2) ^ (r2 <>> 13) ^ (r2 <>> 22)) +% ((r2 & r3) ^ (r2 & r4) ^ (r3 & r4));
    w15 := w15 +% ((w0 <>> 7) ^ (w0 <>> 18) ^ (w0 >> 3)) +% w8 +% ((w13 <>> 17) ^ (w13 <>> 19) ^ (w13 >> 10));
    t1 := r0 +% ((r5 <>> 6) ^ (r5 <>> 11) ^ (r5 <>> 25)) +% ((r5 & r6) ^ ((^r5) & r7)) +% 0xc67178f2 +% w15;
    r4 +%= t1;
    r0 := t1 +% ((r1 <>> 2) ^ (r1 <>> 13) ^ (r1 <>> 22)) +% ((r1 & r2) ^ (r1 & r3) ^ (r2 & r3));
    (r0, r1, r2, r3, r4, r5, r6, r7);
  };
  // END GENERATED

};
