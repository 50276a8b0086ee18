/// Test canister for localnet's crash consistency (--state-dir): every
/// `add` changes the heap (a count, a sum, the list of values), stable
/// memory (the value appended to a region) and the certified data (the
/// count, big-endian), so after a kill -9 and a restart all three must
/// agree and hold every acknowledged value
/// (tests/integration/test_localnet_crash.py). `ballast` grows the heap for
/// the cost measurement (benchmarks/persist_bench.py).

import CertifiedData "mo:core/CertifiedData";
import List "mo:core/List";
import Nat64 "mo:core/Nat64";
import Nat8 "mo:core/Nat8";
import Region "mo:core/Region";
import Blob "mo:core/Blob";

persistent actor {

  let log = Region.new(); // the values, 8 bytes each
  let zeros = Region.new(); // source of ballast blobs
  var count : Nat64 = 0;
  var sum : Nat64 = 0;
  let values = List.empty<Nat64>();
  let ballastBlobs = List.empty<Blob>();

  func bigEndian(x : Nat64) : Blob {
    Blob.fromArray([
      Nat8.fromNat64(x >> 56), Nat8.fromNat64((x >> 48) & 0xff), Nat8.fromNat64((x >> 40) & 0xff), Nat8.fromNat64((x >> 32) & 0xff),
      Nat8.fromNat64((x >> 24) & 0xff), Nat8.fromNat64((x >> 16) & 0xff), Nat8.fromNat64((x >> 8) & 0xff), Nat8.fromNat64(x & 0xff),
    ]);
  };

  /// Records `x`; returns how many values are recorded.
  public func add(x : Nat64) : async Nat64 {
    let offset = count * 8;
    if (offset + 8 > Region.size(log) * 65_536) assert Region.grow(log, 1) != 0xFFFF_FFFF_FFFF_FFFF;
    Region.storeNat64(log, offset, x);
    List.add(values, x);
    count += 1;
    sum +%= x;
    CertifiedData.set(bigEndian(count));
    count;
  };

  /// Adds `mib` MiB of heap (1 MiB blobs), written once.
  public func ballast(mib : Nat) : async Nat {
    if (Region.size(zeros) < 16) assert Region.grow(zeros, 16) != 0xFFFF_FFFF_FFFF_FFFF;
    var i = 0;
    while (i < mib) {
      Region.storeNat64(zeros, 0, Nat64.fromNat(List.size(ballastBlobs)));
      List.add(ballastBlobs, Region.loadBlob(zeros, 0, 1_048_576));
      i += 1;
    };
    List.size(ballastBlobs);
  };

  /// The certificate of the certified data (queries only).
  public query func certificate() : async ?Blob { CertifiedData.getCertificate() };

  public type State = {
    count : Nat64;
    sum : Nat64;
    heapValues : [Nat64];
    stableValues : [Nat64];
  };

  /// Everything a consistency check needs: the heap's and the stable
  /// memory's view of the same values.
  public query func state() : async State {
    let stableValues = List.empty<Nat64>();
    var i : Nat64 = 0;
    while (i < count) {
      List.add(stableValues, Region.loadNat64(log, i * 8));
      i += 1;
    };
    { count; sum; heapValues = List.toArray(values); stableValues = List.toArray(stableValues) };
  };

};
