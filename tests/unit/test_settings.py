import config


def test_readme_documents_every_setting():
    from pathlib import Path

    readme = Path("README.md").read_text(encoding="utf-8")
    assert config.markdown_table() in readme, "run `flask settings` and paste the table into README"


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    import pytest

    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        config.load({"TASKFORCE_ENV": "production"}, instance_path=tmp_path)


def test_development_keeps_its_secret_key_between_starts(tmp_path):
    first = config.load({}, instance_path=tmp_path)["SECRET_KEY"]
    assert len(first) >= 64
    assert config.load({}, instance_path=tmp_path)["SECRET_KEY"] == first


def test_unknown_environment_is_refused(tmp_path):
    import pytest

    with pytest.raises(RuntimeError, match="TASKFORCE_ENV"):
        config.load({"TASKFORCE_ENV": "staging"}, instance_path=tmp_path)
