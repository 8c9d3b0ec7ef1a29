import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from replication.cli import main
from replication.errors import ParameterError
from replication.params import dump_params, render_profile


def test_committed_params_yaml_is_the_rendered_default_profile():
    assert (REPO / "params.yaml").read_text() == dump_params(render_profile("default", REPO)), \
        "params.yaml is out of date with profiles/default.yaml: run `replication profile default`"


def test_paper_profile_changes_only_what_it_lists():
    default, paper = render_profile("default", REPO), render_profile("paper", REPO)
    assert paper["image_size"] == 224 and paper["data"]["iu"]["source"] == "iu_xray"
    assert paper["data"]["iu"]["text_sections"] == default["data"]["iu"]["text_sections"]  # inherited
    assert paper["splits"]["count"] == 10 and paper["splits"]["fractions"] == default["splits"]["fractions"]
    with pytest.raises(ParameterError, match="profile='nope'"):
        render_profile("nope", REPO)


def test_profile_command_writes_params(tmp_path, monkeypatch):
    (tmp_path / "profiles").mkdir()
    for p in (REPO / "profiles").glob("*.yaml"):
        (tmp_path / "profiles" / p.name).write_text(p.read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["profile", "paper"]) == 0
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["profile"] == "paper"


def test_help_reads_well_and_needs_no_tensorflow():
    out = subprocess.run([sys.executable, "-m", "replication", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("synth", "fetch", "prepare", "profile", "show"):
        assert command in out
    probe = "import sys, replication.cli; replication.cli.build_parser(); print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_ig_help_states_the_library_defaults_without_importing_them():
    from replication.explain.attribution import DEFAULT_RULE, DEFAULT_STEPS, RULES

    probe = "import sys, replication.cli; replication.cli.build_parser(); print('replication.explain' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"
    for command in ("explain", "boxes"):
        out = subprocess.run([sys.executable, "-m", "replication", command, "--help"], capture_output=True, text=True, check=True).stdout
        text = " ".join(out.split())
        assert f"(default: {DEFAULT_STEPS}, the library's)" in text and f"(default: {DEFAULT_RULE}, the library's)" in text
        assert all(rule in text for rule in RULES)


def test_data_errors_are_one_line_not_a_traceback(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "not a cohort directory" in err and "Traceback" not in err


def test_every_profile_loads_as_typed_frozen_sections():
    import dataclasses

    from replication.params import PretrainParams, available_profiles, profile_params

    for name in available_profiles(REPO):
        params = profile_params(name, REPO)
        assert params.profile == name and isinstance(params.pretrain, PretrainParams)
        assert isinstance(params.localisation.sight_sensitivities, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.pretrain.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize("change, message", [
    ({"pretrain": {"epochz": 3}}, r"pretrain.epochz=3: expected no such key; pretrain has \['architecture'"),
    ({"pretrain": {"epochs": "3"}}, r"pretrain.epochs='3': expected an integer \(profile 'default'"),
    ({"transfer": {"learning_rate": True}}, r"transfer.learning_rate=True: expected a number"),
    ({"localisation": {"sight_sensitivities": 0.5}}, r"localisation.sight_sensitivities=0.5: expected a list"),
    ({"synthetic": {"iu": {"cases": -1}}}, r"synthetic.iu=.*expected generator knobs it accepts"),
])
def test_a_bad_value_names_its_key_and_the_profile(change, message):
    from replication.params import deep_merge, parse_params

    with pytest.raises(ParameterError, match=message):
        parse_params(deep_merge(render_profile("default", REPO), change), REPO)


def test_a_missing_key_names_where_defaults_live():
    from replication.params import parse_params

    raw = render_profile("default", REPO)
    del raw["curves"]["batch_sizes"]
    with pytest.raises(ParameterError, match=r"curves.batch_sizes=None: expected a value: the key is missing \(profiles/default.yaml"):
        parse_params(raw, REPO)


def test_switching_the_profile_with_dvc_exp_set_is_refused_but_one_off_changes_are_not():
    from replication.params import deep_merge, parse_params

    raw = {**render_profile("default", REPO), "profile": "paper"}  # what `dvc exp run -S profile=paper` writes
    with pytest.raises(ParameterError, match=r"values are profile 'default''s .*replication profile paper"):
        parse_params(raw, REPO)
    paper = deep_merge(render_profile("paper", REPO), {"transfer": {"learning_rate": 0.01, "epochs": 10}})
    assert parse_params(paper, REPO).transfer.epochs == 10  # the README's one-off change on the paper profile
