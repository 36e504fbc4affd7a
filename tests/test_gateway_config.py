"""chatd.toml's gateway tables and [serve] options: what starts, and the one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chatd.cli import build_parser, file_defaults, settings_from_args
from chatd.gateway_config import ConfigError, RouteSpec, parse_gateway

SECRET = "sk-never-shown"
OPENAI = {"name": "openai", "kind": "openai", "base_url": "https://api.openai.com/v1/"}


def test_upstreams_and_routes_are_parsed() -> None:
    config = {
        "upstreams": [
            {
                **OPENAI,
                "api_key_env": "OPENAI_KEY",
                "models": ["gpt-4o"],
                "timeout_s": 30,
                "max_retries": 1,
                "headers": {"x-team": "blue"},
                "forward_store": True,
                "relay_responses": False,
            },
            {"name": "vllm", "kind": "openai", "base_url": "http://10.0.0.2:8000/v1"},
        ],
        "routes": [{"model": "fast", "targets": ["openai/gpt-4o", "local/smollm2"]}],
    }
    gateway = parse_gateway(config, {"OPENAI_KEY": SECRET})
    first, second = gateway.upstreams
    assert first.api_key == SECRET and first.base_url == "https://api.openai.com/v1"
    assert (first.timeout_s, first.max_retries, first.forward_store) == (30, 1, True)
    assert first.headers == {"x-team": "blue"}
    assert not first.relay_responses and second.relay_responses
    assert second.models is None and second.api_key is None and second.max_retries == 2
    assert gateway.routes == [RouteSpec("fast", ("openai/gpt-4o", "local/smollm2"), "fallback")]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"upstreams": [{**OPENAI, "kind": "grpc"}]}, "unknown kind 'grpc'"),
        ({"upstreams": [{**OPENAI, "api_key_env": "NOT_SET_X"}]}, "NOT_SET_X (api_key_env)"),
        ({"upstreams": [OPENAI, OPENAI]}, 'two entries are named "openai"'),
        ({"upstreams": [{**OPENAI, "name": "local"}]}, "local model's prefix"),
        ({"upstreams": [{**OPENAI, "timeout": 3}]}, "unknown key 'timeout'"),
        ({"upstreams": [{**OPENAI, "max_retries": -1}]}, "max_retries must be"),
        ({"upstreams": [{**OPENAI, "relay_responses": "no"}]}, "relay_responses must be"),
        ({"upstreams": [{**OPENAI, "base_url": "api.openai.com"}]}, "base_url must start"),
        (
            {"upstreams": [OPENAI], "routes": [{"model": "r", "targets": ["azure/gpt-4o"]}]},
            "names no upstream 'azure'",
        ),
        (
            {
                "upstreams": [{**OPENAI, "models": ["gpt-4o"]}],
                "routes": [{"model": "r", "targets": ["openai/gpt-5"]}],
            },
            "has no model 'gpt-5'",
        ),
        ({"routes": [{"model": "r", "targets": ["x"]}]}, "is not written vendor/model"),
        (
            {"routes": [{"model": "r", "targets": ["local/a"], "strategy": "random"}]},
            "unknown strategy 'random'",
        ),
    ],
)
def test_bad_config_is_one_clear_line(config: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_gateway(config, {"KEY": SECRET})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_key_never_appears_in_an_error() -> None:
    config = {"upstreams": [{**OPENAI, "api_key_env": "KEY", "models": "gpt-4o"}]}
    with pytest.raises(ConfigError) as caught:
        parse_gateway(config, {"KEY": SECRET})
    assert SECRET not in str(caught.value)


def run_cli(tmp_path: Path, toml: str, *flags: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "chatd.toml").write_text(toml)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "chatd.cli",
            "serve",
            "--config",
            str(tmp_path / "chatd.toml"),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_a_bad_config_in_one_line(tmp_path: Path) -> None:
    toml = '[[upstreams]]\nname = "a"\nkind = "soap"\nbase_url = "http://x"\n'
    done = run_cli(tmp_path, toml)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"chatd: --config {tmp_path / 'chatd.toml'}: upstreams[0] \"a\": unknown kind 'soap' "
        "(expected one of openai, anthropic)"
    ]
    done = run_cli(tmp_path, "[serve]\nport = 9000\n", "--no-local-model")
    assert done.stderr.strip() == "chatd: --no-local-model needs [[upstreams]] in --config"


def settings(tmp_path: Path, toml: str, *flags: str, env: dict[str, str] | None = None):
    path = tmp_path / "chatd.toml"
    path.write_text(toml)
    argv = ["serve", "--config", str(path), *flags]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in (env or {}).items():
            patch.setenv(key, value)
        from chatd.config import load_config

        args = build_parser(file_defaults(load_config(path))).parse_args(argv)
        return settings_from_args(args)


def test_serve_options_in_the_file_lose_to_flags_and_env(tmp_path: Path) -> None:
    toml = '[serve]\nport = 9000\nhost = "0.0.0.0"\nparallel = 4\nmodel_names = ["a", "b"]\n'
    assert (settings(tmp_path, toml).port, settings(tmp_path, toml).parallel) == (9000, 4)
    assert settings(tmp_path, toml).model_names == ["a", "b"]
    assert settings(tmp_path, toml, "--port", "9100").port == 9100
    assert settings(tmp_path, toml, env={"CHATD_PORT": "9200"}).port == 9200
    assert settings(tmp_path, toml, "--model-name", "c").model_names == ["c"]
    assert settings(tmp_path, toml).host == "0.0.0.0"
    assert (
        settings(tmp_path, toml + "local_model = false\n[[upstreams]]\n" + UP).local_model is False
    )


UP = 'name = "u"\nkind = "openai"\nbase_url = "http://127.0.0.1:1/v1"\nmodels = ["m"]\n'


def test_unknown_serve_option_is_refused(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "[serve]\nprot = 9000\n")
    assert done.stderr.strip() == "chatd: --config: [serve] has an unknown key 'prot'"


def test_the_documented_example_config_is_valid() -> None:
    import tomllib

    example = Path(__file__).parent.parent / "docs" / "chatd.example.toml"
    config = tomllib.loads(example.read_text())
    gateway = parse_gateway(config, {"OPENAI_API_KEY": "a", "ANTHROPIC_API_KEY": "b"})
    assert [u.name for u in gateway.upstreams] == ["openai", "anthropic", "gpu-a", "gpu-b"]
    assert [r.strategy for r in gateway.routes] == ["fallback", "balance"]
    assert file_defaults(config) == {"host": "0.0.0.0", "port": 8000}
