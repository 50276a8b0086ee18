"""The IC's certified hash trees (interface spec, section "Certification").

A hash tree is ``Empty | Fork | Labeled | Leaf | Pruned``; its root hash is
what the subnet signs.  This module builds well-formed trees from nested
mappings (labels sorted, forks balanced), prunes them down to the paths a
``read_state`` asked for while keeping absent paths *provably* absent, looks
paths up with the spec's Found / Absent / Unknown / Error semantics, and
converts trees to and from the spec's CBOR array form::

    [0]  [1, left, right]  [2, label, subtree]  [3, value]  [4, digest]
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Union


def domain_sep(name: str) -> bytes:
    """``byte(|s|) · s``, the spec's domain separator."""
    raw = name.encode("ascii")
    return bytes([len(raw)]) + raw


_EMPTY_HASH = hashlib.sha256(domain_sep("ic-hashtree-empty")).digest()
_FORK = domain_sep("ic-hashtree-fork")
_LABELED = domain_sep("ic-hashtree-labeled")
_LEAF = domain_sep("ic-hashtree-leaf")


@dataclass(frozen=True, slots=True)
class Empty:
    pass


@dataclass(frozen=True, slots=True)
class Fork:
    left: HashTree
    right: HashTree


@dataclass(frozen=True, slots=True)
class Labeled:
    label: bytes
    subtree: HashTree


@dataclass(frozen=True, slots=True)
class Leaf:
    value: bytes


@dataclass(frozen=True, slots=True)
class Pruned:
    digest: bytes

    def __post_init__(self) -> None:
        if len(self.digest) != 32:
            raise ValueError(f"a pruned subtree carries a 32-byte digest, got {len(self.digest)}")


HashTree = Union[Empty, Fork, Labeled, Leaf, Pruned]  # noqa: UP007 - runtime alias, 3.11
EMPTY = Empty()


def reconstruct(tree: HashTree) -> bytes:
    """The root hash of ``tree`` (spec ``reconstruct``)."""
    match tree:
        case Empty():
            return _EMPTY_HASH
        case Fork(left, right):
            return hashlib.sha256(_FORK + reconstruct(left) + reconstruct(right)).digest()
        case Labeled(label, subtree):
            return hashlib.sha256(_LABELED + label + reconstruct(subtree)).digest()
        case Leaf(value):
            return hashlib.sha256(_LEAF + value).digest()
        case Pruned(digest):
            return digest
    raise TypeError(f"not a hash tree node: {tree!r}")


# --------------------------------------------------------------------- building

Label = bytes | str
LabeledValue = Union[bytes, Mapping[Label, "LabeledValue"]]  # noqa: UP007


def _label_bytes(label: Label) -> bytes:
    return label.encode("utf-8") if isinstance(label, str) else bytes(label)


def fork_all(trees: Sequence[HashTree]) -> HashTree:
    """A balanced fork over ``trees`` in order (``Empty`` for none).

    Balanced, so that a pruned tree proves a path with O(log n) digests.
    """
    if not trees:
        return EMPTY
    if len(trees) == 1:
        return trees[0]
    mid = (len(trees) + 1) // 2
    return Fork(fork_all(trees[:mid]), fork_all(trees[mid:]))


def build(data: LabeledValue) -> HashTree:
    """A well-formed hash tree from nested ``{label: bytes | mapping}``.

    ``str`` labels are UTF-8 encoded; children are sorted by label bytes as the
    spec requires, and an empty mapping is ``Empty``.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        return Leaf(bytes(data))
    children: dict[bytes, HashTree] = {}
    for label, value in data.items():
        raw = _label_bytes(label)
        if raw in children:
            raise ValueError(f"label {raw!r} appears twice (as str and as bytes?)")
        children[raw] = build(value)
    return fork_all([Labeled(label, children[label]) for label in sorted(children)])


def flatten_forks(tree: HashTree) -> list[HashTree]:
    """The spec's ``flatten_forks``: the children of a node, forks dissolved."""
    out: list[HashTree] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, Fork):
            stack.append(node.right)
            stack.append(node.left)
        elif not isinstance(node, Empty):
            out.append(node)
    return out


# ---------------------------------------------------------------------- pruning

# A set of requested paths as a trie: label -> sub-trie; ``None`` means "this
# whole subtree" (a requested path ends here).
_Trie = dict[bytes, "_Trie | None"]
# Marker for a label kept only as the neighbour that proves another label absent.
_NEIGHBOUR: _Trie = {}


def _trie(paths: Iterable[Sequence[Label]]) -> _Trie | None:
    root: _Trie = {}
    for path in paths:
        if not path:
            return None  # the empty path requests everything
        node = root
        for label in path[:-1]:
            child = node.setdefault(_label_bytes(label), {})
            if child is None:
                break  # an ancestor is already requested whole
            node = child
        else:
            node[_label_bytes(path[-1])] = None
    return root


def prune(tree: HashTree, paths: Iterable[Sequence[Label]]) -> HashTree:
    """Keep only ``paths`` (and everything below them); prune the rest.

    For a requested label that is not in the tree, its neighbouring labels are
    kept (with pruned subtrees) so that ``lookup`` proves it ``Absent`` rather
    than ``Unknown``, exactly as the spec's example does.  A path that runs
    past a leaf keeps the leaf, which proves the rest absent.
    """
    return _prune(tree, _trie(paths))


def _prune(tree: HashTree, trie: _Trie | None) -> HashTree:
    if trie is None or isinstance(tree, Leaf | Pruned | Empty):
        return tree
    labels = sorted(node.label for node in flatten_forks(tree) if isinstance(node, Labeled))
    present = set(labels)
    keep: dict[bytes, _Trie | None] = {}
    for label, sub in trie.items():
        if label in present:
            keep[label] = sub  # a requested label wins over a neighbour marker
        else:
            for neighbour in _neighbours(labels, label):
                keep.setdefault(neighbour, _NEIGHBOUR)
    return _prune_forest(tree, keep)[0]


def _neighbours(labels: list[bytes], missing: bytes) -> list[bytes]:
    """The labels just below and just above ``missing`` in sorted ``labels``."""
    at = bisect.bisect_left(labels, missing)
    return labels[max(at - 1, 0) : at + 1]


def _prune_forest(node: HashTree, keep: dict[bytes, _Trie | None]) -> tuple[HashTree, bool]:
    """Prune one level; returns the new node and whether it holds anything kept."""
    if isinstance(node, Fork):
        left, left_kept = _prune_forest(node.left, keep)
        right, right_kept = _prune_forest(node.right, keep)
        if left_kept or right_kept:
            return Fork(left, right), True
        if isinstance(left, Empty) and isinstance(right, Empty):
            return node, False  # only Empty inside: never hides a label, keep as is
        # Both sides are already pruned: hash them once more instead of re-hashing
        # the whole subtree at every level (which made pruning O(n log n)).
        return Pruned(reconstruct(Fork(left, right))), False
    if isinstance(node, Labeled) and node.label in keep:
        sub = keep[node.label]
        if sub is _NEIGHBOUR:
            return Labeled(node.label, _pruned(node.subtree)), True
        return Labeled(node.label, _prune(node.subtree, sub)), True
    if isinstance(node, Empty):
        return node, False
    return _pruned(node), False


def _pruned(node: HashTree) -> HashTree:
    return node if isinstance(node, Pruned | Empty) else Pruned(reconstruct(node))


# ----------------------------------------------------------------------- lookup


class LookupStatus(Enum):
    FOUND = "found"
    ABSENT = "absent"
    UNKNOWN = "unknown"  # pruned away: cannot tell
    ERROR = "error"  # the path ends at an inner node, not at a leaf


@dataclass(frozen=True, slots=True)
class LookupResult:
    status: LookupStatus
    value: bytes | None = None  # set when FOUND


ABSENT = LookupResult(LookupStatus.ABSENT)
UNKNOWN = LookupResult(LookupStatus.UNKNOWN)
ERROR = LookupResult(LookupStatus.ERROR)


def lookup(tree: HashTree, path: Sequence[Label]) -> LookupResult:
    """The spec's ``lookup_path``."""
    node = tree
    for label in path:
        found = find_label(_label_bytes(label), flatten_forks(node))
        if not isinstance(found, Empty | Fork | Labeled | Leaf | Pruned):
            return found
        node = found
    match node:
        case Leaf(value):
            return LookupResult(LookupStatus.FOUND, value)
        case Empty():
            return ABSENT
        case Pruned():
            return UNKNOWN
    return ERROR


def find_label(label: bytes, forest: list[HashTree]) -> HashTree | LookupResult:
    """The subtree under ``label`` in a flattened forest, or why there is none."""
    if not forest or (len(forest) == 1 and isinstance(forest[0], Leaf)):
        return ABSENT
    for index, node in enumerate(forest):
        if not isinstance(node, Labeled):
            continue
        if node.label == label:
            return node.subtree
        if node.label > label:
            # Absent only if the label just before is a smaller Labeled node (or none).
            if index == 0:
                return ABSENT
            before = forest[index - 1]
            return ABSENT if isinstance(before, Labeled) and before.label < label else UNKNOWN
    last = forest[-1]
    return ABSENT if isinstance(last, Labeled) and last.label < label else UNKNOWN


# ------------------------------------------------------------------------- CBOR


def to_cbor_value(tree: HashTree) -> list[Any]:
    """The spec's array encoding, ready for ``cbor2.dumps``."""
    match tree:
        case Empty():
            return [0]
        case Fork(left, right):
            return [1, to_cbor_value(left), to_cbor_value(right)]
        case Labeled(label, subtree):
            return [2, label, to_cbor_value(subtree)]
        case Leaf(value):
            return [3, value]
        case Pruned(digest):
            return [4, digest]
    raise TypeError(f"not a hash tree node: {tree!r}")


def from_cbor_value(value: Any) -> HashTree:
    """Parse the array encoding; raises ``ValueError`` saying what is malformed."""
    if not isinstance(value, list | tuple) or not value or not isinstance(value[0], int):
        raise ValueError(f"hash tree node must be a non-empty array with a tag, got {value!r:.80}")
    tag, args = value[0], value[1:]
    shapes = {0: 0, 1: 2, 2: 2, 3: 1, 4: 1}
    if shapes.get(tag) != len(args):
        raise ValueError(f"hash tree node with tag {tag} has {len(args)} fields")
    if tag == 0:
        return EMPTY
    if tag == 1:
        return Fork(from_cbor_value(args[0]), from_cbor_value(args[1]))
    if not isinstance(args[0], bytes):
        raise ValueError(f"hash tree node with tag {tag} needs a blob, got {args[0]!r:.80}")
    if tag == 2:
        return Labeled(args[0], from_cbor_value(args[1]))
    return Leaf(args[0]) if tag == 3 else Pruned(args[0])
