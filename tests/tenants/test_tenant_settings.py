"""The tenant settings, read without a database: migrator.toml's tenant keys and the shard variables. Each
bad value is one line naming what to change (ConfigError, exit 2); tests/tenants/test_tenants.py shows one of
them end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.config import Shard, shard
from migrator.errors import ConfigError
from migrator.repos import Tenants, load_repos
from tests.tenants.tenant_projects import write_project


@pytest.mark.parametrize(("config", "tenants"), [
    ('tenants = ["beta", "alpha"]\n', Tenants(names=("beta", "alpha"))),
    ('tenants_query = " SELECT name FROM tenants; "\n', Tenants(query="SELECT name FROM tenants")),
    ('tenant_kind = "database"\ntenants = ["Tenant-1"]\n', Tenants("database", names=("Tenant-1",))),
    ('tenants = []\ntenant_shared_schemas = ["public", "ext"]\n', Tenants(names=(), shared=("public", "ext"))),
    ('tenants = ["_a$1"]\n', Tenants(names=("_a$1",))),
])
def test_tenant_settings(tmp_path: Path, config: str, tenants: Tenants) -> None:
    [repo] = load_repos(write_project(tmp_path / "p", config))
    assert repo.tenants == tenants


def test_a_repo_without_tenant_keys_has_none(tmp_path: Path) -> None:
    [repo] = load_repos(write_project(tmp_path / "p", 'version_table = "v"\n'))
    assert repo.tenants is None


@pytest.mark.parametrize(("config", "message"), [
    ('tenants = ["a"]\ntenants_query = "SELECT 1"\n', "set one of tenants (a list) or tenants_query (a SELECT "
                                                      "returning one column of names), not both"),
    ('tenant_kind = "schema"\n', "set one of tenants (a list) or tenants_query (a SELECT returning one column of "
                                 "names), not neither"),
    ('tenants = ["a", "a"]\n', "tenants: 'a' is listed twice"),
    ('tenants = ["a b"]\n', "tenants: 'a b' is not a tenant name (letters, digits, _, $ or -, starting with a "
                            "letter or _, at most 63 characters)"),
    ('tenants = ["a\\"b"]\n', "tenants: 'a\"b' is not a tenant name"),
    ('tenants = ["1a"]\n', "tenants: '1a' is not a tenant name"),
    (f'tenants = ["{"a" * 64}"]\n', f"tenants: '{'a' * 64}' is not a tenant name"),
    ('tenants = [1]\n', "tenants: 1 is not a tenant name"),
    ('tenants = "acme"\n', "every value must be a string, except tenant_shared_schemas and tenants: a list of "
                           "strings"),
    ('tenants_query = ["SELECT 1"]\n', "every value must be a string, except tenant_shared_schemas and tenants"),
    ('tenants_query = " ; "\n', "tenants_query is empty"),
    ('tenants = ["a"]\ntenant_kind = "cluster"\n', "tenant_kind must be schema or database, not 'cluster'"),
    ('tenants = ["a"]\nversion_table_schema = "x"\n', "version_table_schema cannot be set with schema tenants"),
    ('tenants = ["a"]\nversion_table_schema_env = "X"\n', "version_table_schema cannot be set with schema tenants"),
    ('tenants = ["a"]\ntenant_kind = "database"\ntenant_shared_schemas = ["public"]\n',
     'tenant_shared_schemas is for schema tenants (tenant_kind = "schema")'),
    ('tenants = ["a"]\ntenant_shared_schemas = ["my schema"]\n',
     "tenant_shared_schemas must list plain SQL identifiers, not 'my schema'"),
])
def test_bad_tenant_settings_are_one_line(tmp_path: Path, config: str, message: str) -> None:
    project = write_project(tmp_path / "p", config)
    with pytest.raises(ConfigError) as raised:
        load_repos(project)
    assert raised.value.exit_code == 2
    text = str(raised.value)
    assert text.startswith(f"{project / 'migrator.toml'}: repo 'default': ") and message in text
    assert "\n" not in text


@pytest.mark.parametrize(("env", "expected"), [
    ({}, Shard(0, 1)),
    ({"JOB_COMPLETION_INDEX": "3"}, Shard(0, 1)),  # an Indexed Job that does not share tenants out
    ({"MIGRATOR_TENANT_SHARDS": "1"}, Shard(0, 1)),
    ({"MIGRATOR_TENANT_SHARDS": "4", "JOB_COMPLETION_INDEX": "3"}, Shard(3, 4)),
    ({"MIGRATOR_TENANT_SHARDS": "4", "MIGRATOR_TENANT_SHARD": "1", "JOB_COMPLETION_INDEX": "3"}, Shard(1, 4)),
])
def test_shard_settings(env: dict[str, str], expected: Shard) -> None:
    assert shard(env) == expected


@pytest.mark.parametrize(("env", "message"), [
    ({"MIGRATOR_TENANT_SHARDS": "2"}, "MIGRATOR_TENANT_SHARDS=2 needs this process's shard: set "
                                      "MIGRATOR_TENANT_SHARD (0 to 1), or run it in an Indexed Job "
                                      "(JOB_COMPLETION_INDEX)"),
    ({"MIGRATOR_TENANT_SHARDS": "2", "JOB_COMPLETION_INDEX": "2"},
     "JOB_COMPLETION_INDEX='2' is not a shard index from 0 to 1 (MIGRATOR_TENANT_SHARDS=2)"),
    ({"MIGRATOR_TENANT_SHARDS": "2", "MIGRATOR_TENANT_SHARD": "-1"},
     "MIGRATOR_TENANT_SHARD='-1' is not a shard index from 0 to 1 (MIGRATOR_TENANT_SHARDS=2)"),
    ({"MIGRATOR_TENANT_SHARDS": "0"}, "MIGRATOR_TENANT_SHARDS='0' is not a count from 1 to 100000: use a whole "
                                      "number (the Indexed Job's completions)"),
    ({"MIGRATOR_TENANT_SHARDS": "100001"}, "MIGRATOR_TENANT_SHARDS='100001' is not a count from 1 to 100000: use a "
                                           "whole number (the Indexed Job's completions)"),
    ({"MIGRATOR_TENANT_SHARDS": "two"}, "MIGRATOR_TENANT_SHARDS='two' is not a count from 1 to 100000: use a whole "
                                        "number (the Indexed Job's completions)"),
    ({"MIGRATOR_TENANT_SHARD": "1"}, "MIGRATOR_TENANT_SHARD is set without MIGRATOR_TENANT_SHARDS: set both, or "
                                     "neither"),
])
def test_bad_shard_settings_are_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        shard(env)
    assert raised.value.exit_code == 2
    assert str(raised.value) == message


def test_the_shards_cover_every_tenant_once_and_stay_put_when_others_come_and_go() -> None:
    names = [f"tenant_{i:04d}" for i in range(1000)]
    shards = [Shard(index, 4) for index in range(4)]
    taken = [{name for name in names if s.takes(name)} for s in shards]
    assert sum(len(t) for t in taken) == len(names) and set().union(*taken) == set(names)
    assert all(200 <= len(t) <= 300 for t in taken), [len(t) for t in taken]
    # The assignment is the name's alone: removing half of the tenants moves none of the others.
    assert [{n for n in names[::2] if s.takes(n)} for s in shards] == [t & set(names[::2]) for t in taken]
