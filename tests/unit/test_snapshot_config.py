"""``[jobs.NAME]`` of the snapshot kinds: what the config asks for, and a clear error otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

import replicator.flows.builtin  # noqa: F401  (registers the kinds)
from replicator import kinds
from replicator.config import load_config
from replicator.errors import ConfigError
from replicator.job import ArchiveRef, CanisterRef

APP = "kipf3-nqaaa-fake3-aaaaa-cai"
OTHER = "xmf3k-3iaaa-fake5-aaaaa-cai"


def _config(tmp_path: Path, jobs: str) -> Path:
    path = tmp_path / "replicator.toml"
    path.write_text(
        f"""network = "ic"

[canisters]
app = "{APP}"
other = "{OTHER}"
{jobs}"""
    )
    return path


def test_the_three_kinds_from_the_config(tmp_path: Path) -> None:
    config = load_config(
        _config(
            tmp_path,
            """
[jobs.nightly]
kind = "snapshot-backup"
source = "app"
target = "file:snapshots"
schedule = "0 3 * * *"
options = { stop = false, tags = "nightly,ops" }

[jobs.back]
kind = "snapshot-restore"
source = "file:snapshots"
target = "other"
options = { of = "app" }

[jobs.staging]
kind = "snapshot-copy"
source = "app"
target = "other"
options = { via = "relay" }
""",
        )
    )
    backup = kinds.configured(config, "nightly")
    assert backup.source == CanisterRef(APP, "ic")
    # a relative repository is relative to the config file, like every path
    assert backup.target == ArchiveRef(str(tmp_path / "snapshots"))
    assert backup.options == {"stop": False, "tags": "nightly,ops"}
    restore = kinds.configured(config, "back")
    assert restore.source == ArchiveRef(str(tmp_path / "snapshots"))
    assert restore.target == CanisterRef(OTHER, "ic")
    copy = kinds.configured(config, "staging")
    assert (copy.kind, copy.options) == ("snapshot-copy", {"via": "relay"})


@pytest.mark.parametrize(
    ("job", "complaint"),
    [
        ('kind = "snapshot-backup"\nsource = "app"\ntarget = "other"', r"jobs\.bad: expected"),
        ('kind = "snapshot-restore"\nsource = "app"\ntarget = "other"', r"jobs\.bad: expected"),
        ('kind = "snapshot-copy"\nsource = "app"\ntarget = "file:x"', r"jobs\.bad: expected"),
        ('kind = "snapshot"\nsource = "app"', r"jobs\.bad\.kind: expected one of .*snapshot-"),
    ],
)
def test_a_job_of_the_wrong_shape_is_a_config_error_naming_it(
    tmp_path: Path, job: str, complaint: str
) -> None:
    config = load_config(_config(tmp_path, f"\n[jobs.bad]\n{job}\n"))
    with pytest.raises(ConfigError, match=complaint) as info:
        kinds.configured(config, "bad")
    assert info.value.exit_code == 2
