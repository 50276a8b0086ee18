/// What a key range holds, for planning and checking a split: where its
/// bytes are (`icrp_key_distribution`) and a digest of its records that two
/// canisters can compare (`icrp_range_digest`).
///
/// Both walk the range in key order in pages bounded by an instruction
/// budget (a query's limit is 5 B), so they work on ranges of any size.
///
/// Range digest: the sum modulo 2^256 of SHA-256(be32(key length) ‖ key ‖
/// value) over the records. A sum does not depend on where pages end, so
/// the digest of a range is the sum of its pages' digests however each
/// canister paged it. (A sum of hashes is a fine check that two replicas
/// hold the same records; it is not meant to resist an adversary who
/// chooses the records.)

import Blob "mo:core/Blob";
import List "mo:core/List";
import Nat8 "mo:core/Nat8";
import Nat32 "mo:core/Nat32";
import Nat64 "mo:core/Nat64";
import VarArray "mo:core/VarArray";
import KeyRange "KeyRange";
import Sha256 "Sha256";
import Types "Types";

module {

  /// A page of buckets ends after about this many bytes of bucket keys
  /// (the answer must fit a 3 MiB query response).
  let MAX_BUCKET_KEY_BYTES = 1_000_000;

  /// Encoded size of a bucket besides its key.
  let BUCKET_OVERHEAD = 24;

  type Bucket = { first : Blob; var records : Nat64; var bytes : Nat64 };

  /// Buckets of about `bucketBytes` from `cursor` on, while `more()` holds.
  public func distribution(store : Types.Store, range : Types.KeyRange, cursor : ?Blob, bucketBytes : Nat64, more : () -> Bool) : {
    buckets : [Types.KeyBucket];
    next : ?Blob;
  } {
    let out = List.empty<Types.KeyBucket>();
    var open : ?Bucket = null;
    var keyBytes = 0;
    func close() {
      switch open {
        case (?b) List.add(out, { first_key = b.first; records = b.records; bytes = b.bytes });
        case null {};
      };
      open := null;
    };
    for ((key, value) in store.entriesFrom(KeyRange.startKey(range, cursor))) {
      if (not KeyRange.contains(range, key)) { close(); return { buckets = List.toArray(out); next = null } };
      if (not more() or keyBytes >= MAX_BUCKET_KEY_BYTES) {
        close();
        return { buckets = List.toArray(out); next = ?key };
      };
      let b = switch open {
        case (?b) b;
        case null {
          keyBytes += key.size() + BUCKET_OVERHEAD;
          let fresh : Bucket = { first = key; var records = 0; var bytes = 0 };
          open := ?fresh;
          fresh;
        };
      };
      b.records += 1;
      b.bytes += Nat64.fromNat(key.size() + value.size());
      if (b.bytes >= bucketBytes) close();
    };
    close();
    { buckets = List.toArray(out); next = null };
  };

  /// Count, bytes and digest of the records from `cursor` on, while
  /// `more()` holds.
  public func digest(store : Types.Store, range : Types.KeyRange, cursor : ?Blob, more : () -> Bool) : {
    records : Nat64;
    bytes : Nat64;
    digest : Blob;
    next : ?Blob;
  } {
    let sum = VarArray.repeat<Nat64>(0, 4); // big-endian limbs of the running sum
    var records : Nat64 = 0;
    var bytes : Nat64 = 0;
    var next : ?Blob = null;
    label scan for ((key, value) in store.entriesFrom(KeyRange.startKey(range, cursor))) {
      if (not KeyRange.contains(range, key)) break scan;
      if (not more()) { next := ?key; break scan };
      add(sum, recordDigest(key, value));
      records += 1;
      bytes += Nat64.fromNat(key.size() + value.size());
    };
    { records; bytes; digest = toBlob(sum); next };
  };

  /// SHA-256(be32(key length) ‖ key ‖ value).
  public func recordDigest(key : Blob, value : Blob) : Blob {
    let h = Sha256.new();
    let n = Nat32.fromNat(key.size());
    Sha256.writeBlob(h, Blob.fromArray([Nat8.fromNat32(n >> 24), Nat8.fromNat32((n >> 16) & 0xff), Nat8.fromNat32((n >> 8) & 0xff), Nat8.fromNat32(n & 0xff)]));
    Sha256.writeBlob(h, key);
    Sha256.writeBlob(h, value);
    Sha256.sum(h);
  };

  /// sum += d (mod 2^256), d a 32-byte big-endian number.
  func add(sum : [var Nat64], d : Blob) {
    var carry : Nat64 = 0;
    var limb = 4;
    while (limb > 0) {
      limb -= 1;
      let x = word(d, limb * 8);
      let s1 = sum[limb] +% x;
      let s2 = s1 +% carry;
      carry := if (s1 < x or s2 < s1) 1 else 0;
      sum[limb] := s2;
    };
  };

  func word(d : Blob, at : Nat) : Nat64 {
    var x : Nat64 = 0;
    var i = at;
    while (i < at + 8) {
      x := (x << 8) | Nat64.fromNat(Nat8.toNat(d[i]));
      i += 1;
    };
    x;
  };

  func toBlob(sum : [var Nat64]) : Blob {
    let bytes = VarArray.repeat<Nat8>(0, 32);
    var i = 0;
    while (i < 32) {
      bytes[i] := Nat8.fromNat(Nat64.toNat((sum[i / 8] >> Nat64.fromNat(56 - 8 * (i % 8))) & 0xff));
      i += 1;
    };
    Blob.fromVarArray(bytes);
  };

};
