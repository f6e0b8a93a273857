"""deid-submit's argument handling, messages and exit codes, without a running broker."""

from __future__ import annotations

import io
import os
import sys

import pytest

from deid_workers import cli
from deid_workers.synth import write_study_tree

pytestmark = pytest.mark.usefixtures("cluster_key")

DEAD_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("DEID_BROKER_URL", "DEID_BATCH_SIZE", "MESSAGELEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def test_help_names_flags_defaults_env_and_exit_codes(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--action", "--input", "--outfolder", "--overwrite", "--deid", "--ids",
                 "--print", "--quiet", "--format", "--version", "--broker", "--workers",
                 "--batch", "--no-wait", "--status", "--resume"):
        assert flag in out
    for env in ("DEID_BROKER_URL", "DEID_BATCH_SIZE", "DEID_WORKERS", "MESSAGELEVEL"):
        assert env in out
    assert "exit codes" in out and "130" in out and "examples" in out


def test_every_flag_the_readme_names_for_deid_submit_exists():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", section))
    taken = set(cli.build_parser()._option_string_actions)
    assert len(named) > 20 and named <= taken, sorted(named - taken)


def test_version(capsys):
    assert cli.main(["--version"]) == cli.EXIT_OK
    assert capsys.readouterr().out.strip()


def test_exit_codes_are_distinct_constants():
    assert (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_INTERRUPTED) == (0, 1, 2, 130)


def test_unknown_action_is_usage_error(capsys):
    assert cli.main(["--action", "nope"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_action_required(capsys):
    assert cli.main([]) == 2
    assert "deid-submit: error: --action is required" in capsys.readouterr().err


def test_put_without_ids_says_so_like_deid(capsys):
    assert cli.main(["--action", "put"]) == 2
    err = capsys.readouterr().err
    assert "To PUT without GET you must provide a json or pkl file with ids" in err
    assert err.startswith("deid-submit: error: ")


@pytest.mark.parametrize("flag", [["--status", "abc"], ["--resume", "abc"], ["--purge", "x"],
                                  ["--action", "all", "--no-wait"]])
def test_broker_only_flags_need_a_broker(capsys, flag):
    assert cli.main(flag) == 2
    assert "needs --broker" in capsys.readouterr().err


def test_bad_env_is_config_error(monkeypatch, capsys):
    monkeypatch.setenv("DEID_BATCH_SIZE", "many")
    assert cli.main(["--action", "get"]) == 2
    err = capsys.readouterr().err
    assert err == "deid-submit: error: DEID_BATCH_SIZE: expected an integer\n"


def test_missing_recipe_stops_before_anything_starts(tmp_path, capsys):
    write_study_tree(tmp_path / "in", patients=1, images=1)
    code = cli.main(["--action", "all", "--input", str(tmp_path / "in"), "--outfolder",
                     str(tmp_path / "out"), "--deid", str(tmp_path / "nope.dicom"),
                     "--broker", DEAD_BROKER, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "recipe file not found" in err


def test_missing_input_is_usage_error(tmp_path, capsys):
    assert cli.main(["--action", "get", "--input", str(tmp_path / "none"),
                     "--broker", DEAD_BROKER]) == 2
    assert "input not found (--input takes a folder or one DICOM file)" in capsys.readouterr().err


def test_unreachable_broker_is_one_line_and_exit_1(tmp_path, capsys):
    write_study_tree(tmp_path / "in", patients=1, images=1)
    code = cli.main(["--action", "get", "--input", str(tmp_path / "in"), "--outfolder",
                     str(tmp_path / "out"), "--broker", "redis://:hunter2@127.0.0.1:1/0"])
    err = capsys.readouterr().err
    assert code == 1
    line = [x for x in err.splitlines() if x.startswith("deid-submit: error:")]
    assert len(line) == 1 and "cannot reach Redis" in line[0] and "hunter2" not in err


def test_print_only_with_get(capsys):
    assert cli.main(["--action", "all", "--print"]) == 2


@pytest.mark.parametrize("argv, says", [
    (["--action", "get", "--clean-pixels"], "apply to --action put or all"),
    (["--action", "inspect", "--quarantine-groups", "a"], "apply to --action put or all"),
    (["--action", "all", "--quarantine-groups", "blacklist"], "needs --clean-pixels"),
    (["--action", "get", "--layout", "uid"], "--layout applies to --action put or all"),
    (["--action", "get", "--ocr"], "--ocr applies to --action put, all or inspect"),
    (["--action", "all", "--ocr", "some"], "invalid choice: 'some'"),
    (["--action", "all", "--ocr-allowlist", "x.txt"], "--ocr-allowlist needs --ocr"),
    (["--action", "inspect", "--ocr", "--quarantine", "/q"], "--quarantine needs --clean-pixels or --ocr"),
])
def test_pixel_flags_only_where_they_mean_something(capsys, argv, says):
    assert cli.main(argv) == 2
    assert says in capsys.readouterr().err


def test_ocr_without_its_engine_stops_embedded_mode_before_anything_starts(tmp_path, capsys,
                                                                          monkeypatch):
    import deid_workers.ocr as ocr_pkg
    from deid_workers.errors import OcrEngineError

    def missing(name: str = "rapidocr") -> None:
        raise OcrEngineError(name, "cannot import (ModuleNotFoundError); install the extra: "
                                   "pip install '.[ocr]'")

    monkeypatch.setattr(ocr_pkg, "load_engine", missing)
    monkeypatch.delenv("DEID_BROKER_URL", raising=False)
    write_study_tree(tmp_path / "in", patients=1, images=1)
    code = cli.main(["--action", "all", "--ocr", "--input", str(tmp_path / "in"),
                     "--outfolder", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == ("deid-submit: error: --ocr: OCR engine 'rapidocr': cannot import "
                   "(ModuleNotFoundError); install the extra: pip install '.[ocr]'\n")
    assert not (tmp_path / "out").exists()


def test_a_bad_ocr_allowlist_names_its_line_before_anything_starts(tmp_path, capsys):
    write_study_tree(tmp_path / "in", patients=1, images=1)
    allow = tmp_path / "allow.txt"
    allow.write_text("[*]\nL\nre:(unclosed\n")
    code = cli.main(["--action", "all", "--ocr", "--ocr-allowlist", str(allow), "--input",
                     str(tmp_path / "in"), "--outfolder", str(tmp_path / "out"),
                     "--broker", DEAD_BROKER, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("deid-submit: error: --ocr-allowlist: allow.txt:3: bad "
                                        "regular expression")


def test_recipe_declaring_an_unknown_code_stops_before_anything_starts(tmp_path, capsys):
    write_study_tree(tmp_path / "in", patients=1, images=1)
    recipe = tmp_path / "deid.codes"
    recipe.write_text("FORMAT dicom\n%header\nKEEP Modality\n%labels\n"
                      "ADD DeidentificationMethodCode 999\n")
    code = cli.main(["--action", "all", "--clean-pixels", "--input", str(tmp_path / "in"),
                     "--outfolder", str(tmp_path / "out"), "--deid", str(recipe),
                     "--broker", DEAD_BROKER, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "deid.codes:5:" in err and "CID 7050" in err


def test_contradicting_profile_stops_before_anything_starts(tmp_path, capsys):
    write_study_tree(tmp_path / "in", patients=1, images=1)
    code = cli.main(["--action", "all", "--input", str(tmp_path / "in"), "--outfolder",
                     str(tmp_path / "out"), "--broker", DEAD_BROKER, "--quiet", "--profile",
                     "basic,retain-longitudinal-full-dates,retain-longitudinal-modified-dates"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "options contradict" in err and "Acquisition Date (0008,0022)" in err
    assert not (tmp_path / "out").exists()


def test_check_recipe_needs_no_broker_and_exits_1_on_gaps(tmp_path, capsys):
    import json

    recipe = tmp_path / "deid.dicom"
    recipe.write_text("FORMAT dicom\n%header\nREMOVE PatientName\nKEEP PatientBirthDate\n")
    write_study_tree(tmp_path / "in", patients=1, images=2)
    (tmp_path / "in" / "junk.txt").write_text("not dicom")
    assert cli.main(["--check-recipe", str(recipe), "--broker", DEAD_BROKER]) == 1
    table = capsys.readouterr().out
    assert "KEEP deid.dicom:4" in table and "(0010,0030)" in table
    assert cli.main(["--check-recipe", str(recipe), "--input", str(tmp_path / "in"), "--json",
                     "--profile", "basic,retain-uids"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["files"] == 2 and data["unreadable"] == 1 and data["profile"] == "basic,retain-uids"
    gaps = {g["tag"]: g for g in data["gaps"]}
    assert gaps["(0010,0030)"]["files"] == 2 and "(0010,0010)" not in gaps
    assert "(0008,0018)" not in gaps  # SOP Instance UID: retain-uids keeps it


def test_check_recipe_of_the_default_recipe_finds_no_gap(capsys):
    from deid_workers.recipe import default_recipe_path

    assert cli.main(["--check-recipe", str(default_recipe_path())]) == 0
    assert "0 attribute(s) left in place" in capsys.readouterr().out


def test_check_recipe_runs_alone(capsys):
    assert cli.main(["--check-recipe", "x", "--action", "all"]) == 2
    assert "--check-recipe takes the recipe" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--status"], ["--action", "get"]])
def test_a_broker_mode_producer_without_the_cluster_key_refuses_to_start(args, monkeypatch,
                                                                         capsys, tmp_path):
    monkeypatch.delenv("DEID_SECRET")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert cli.main(["--broker", DEAD_BROKER, *args]) == 2
    assert capsys.readouterr().err == (
        "deid-submit: error: DEID_SECRET_FILE: no cluster key configured; every process of a "
        "cluster needs the same key (a file, or DEID_SECRET)\n")
    assert not list(tmp_path.iterdir())  # and none was made


# --- checked before anything starts (issue 18) ------------------------------------------------

GOOD_RECIPE = "FORMAT dicom\n%header\nREMOVE PatientName\n"


@pytest.fixture
def nothing_starts(monkeypatch, tmp_path):
    """Embedded mode whose cluster must not start, with temp folders made under tmp/."""
    import tempfile

    from deid_workers import embedded

    def start(self):
        raise AssertionError("a process was started")

    monkeypatch.setattr(embedded.EmbeddedCluster, "start", start)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    write_study_tree(tmp_path / "in", patients=1, images=1)
    (tmp_path / "deid.good").write_text(GOOD_RECIPE)
    (tmp_path / "deid.bad").write_text("FORMAT dicom\n%header\nREMOV PatientName\n")
    (tmp_path / "ids.txt").write_text("not json")
    (tmp_path / "ids.json").write_text("[1, 2]")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "deid-ids.pkl").write_bytes(b"edited")
    return tmp


@pytest.mark.parametrize("argv, says", [
    (["--action", "all", "--deid", "{t}/deid.bad"], "deid.bad:3: unknown action 'REMOV'"),
    (["--action", "all", "--deid", "{t}/nope"], "recipe file not found"),
    (["--action", "inspect", "--deid", "{t}/deid.bad"], "deid.bad:3:"),
    (["--action", "get", "--print", "--deid", "{t}/deid.bad"], "deid.bad:3:"),
    (["--action", "put", "--ids", "{t}/nope.json"], "nope.json: ids file not found (--ids names"),
    (["--action", "put", "--ids", "{t}/ids.txt"], "ids.txt: not valid JSON"),
    (["--action", "put", "--ids", "{t}/ids.json"], "ids.json:"),
    (["--action", "all", "--profile", "basic,nonsense"], "nonsense"),
    (["--action", "all", "--input", "{t}/in", "--outfolder", "{t}/in/out"], "overlap"),
    (["--action", "all", "--outfolder", "{t}/o", "--records", "{t}/o/r"], "overlap"),
    (["--action", "all", "--outfolder", "{t}/o", "--records", "{t}/afile/r"],
     "records folder cannot be created"),
    (["--action", "all", "--outfolder", "{t}/afile/o"], "output folder is not writable"),
    (["--action", "all", "--clean-pixels", "--quarantine", "{t}/in/q"], "quarantine folder overlap"),
    (["--action", "get", "--records", "{t}/kept"], "identifiers of an earlier run are there"),
])
def test_whatever_can_be_checked_is_checked_before_anything_starts(nothing_starts, tmp_path,
                                                                   capsys, argv, says):
    argv = [a.format(t=tmp_path) for a in argv]
    if "--input" not in argv:
        argv += ["--input", str(tmp_path / "in")]
    assert cli.main([*argv, "--quiet"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("deid-submit: error: ") and says in err
    assert not list(nothing_starts.iterdir())  # no temp folder left behind
    assert not (tmp_path / "o").exists() and not (tmp_path / "o-records").exists()


def test_a_run_that_cannot_start_its_cluster_leaves_no_folder(nothing_starts, tmp_path, capsys,
                                                              monkeypatch):
    from deid_workers import embedded
    from deid_workers.errors import StoreError

    def start(self):
        raise StoreError("no redis-server found")

    monkeypatch.setattr(embedded.EmbeddedCluster, "start", start)
    assert cli.main(["--action", "all", "--input", str(tmp_path / "in"), "--quiet"]) == 1
    assert "no redis-server found" in capsys.readouterr().err
    assert not list(nothing_starts.iterdir())


@pytest.mark.parametrize("level, bar", [("QUIET", False), ("ERROR", False), ("WARNING", False),
                                        ("INFO", True), ("DEBUG", True)])
def test_the_progress_bar_is_drawn_at_info_and_below_only(level, bar):
    from deid_workers.config import Settings

    args = cli.build_parser().parse_args(["--action", "all"])
    assert (cli._progress(args, Settings(message_level=level)) is not None) == bar
    args.quiet = True
    assert cli._progress(args, Settings(message_level="INFO")) is None


def test_stdout_closed_early_ends_without_a_traceback(monkeypatch, capsys):
    from deid_workers.recipe import default_recipe_path

    class Gone(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Gone())
    assert cli._out("summary") is False
    assert cli.main(["--check-recipe", str(default_recipe_path()), "--json"]) == cli.EXIT_FAILED
    assert "Traceback" not in capsys.readouterr().err


def test_status_of_an_embedded_run_points_at_its_run_log(capsys):
    assert cli.main(["--status", "abc"]) == 2
    assert "deid-run.<run id>.jsonl" in capsys.readouterr().err


def test_input_may_be_one_file_as_in_deid(tmp_path):
    from deid_workers.config import Settings
    from deid_workers.errors import ConfigError
    from deid_workers.prepare import Submission, prepare

    paths = write_study_tree(tmp_path / "in", patients=1, images=2, nested_dirs=False)
    args = cli.build_parser().parse_args(["--action", "all", "--input",
                                          str(tmp_path / "in" / paths[1])])
    cli._resolve_input(args)
    assert (args.input, args.input_file) == (str(tmp_path / "in"), paths[1])
    # only the file is read: an output beside it is fine, one holding it is not
    sub = Submission(action="all", input=args.input, input_file=paths[1],
                     outfolder=str(tmp_path / "in" / "out"))
    assert prepare(Settings(), sub).sub.input_file == paths[1]
    with pytest.raises(ConfigError, match="overlap"):
        prepare(Settings(), Submission(action="all", input=args.input, input_file=paths[1],
                                       outfolder=str(tmp_path / "in"), overwrite=True))


def test_the_demo_study_is_kept_where_outputs_can_be_compared_with_it(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = cli._demo_input()
    assert folder == str(tmp_path / "cache" / "deid-workers" / "dicom-cookies")
    names = sorted(os.listdir(folder))
    assert names == [f"image{i}.dcm" for i in range(1, 8)]
    (tmp_path / "cache" / "deid-workers" / "dicom-cookies" / "image1.dcm").write_bytes(b"mine")
    os.unlink(os.path.join(folder, "image2.dcm"))
    assert cli._demo_input() == folder
    assert sorted(os.listdir(folder)) == names  # a missing one is written again
    with open(os.path.join(folder, "image1.dcm"), "rb") as fh:
        assert fh.read() == b"mine"  # never replaced
    assert [n for n in os.listdir(tmp_path / "cache" / "deid-workers") if n != "dicom-cookies"] == []


@pytest.mark.parametrize("action, lasting", [("inspect", False), ("get", False), ("all", True)])
def test_only_a_run_that_pseudonymizes_creates_the_lasting_key_and_says_so(
        monkeypatch, tmp_path, action, lasting):
    from deid_workers import embedded
    from deid_workers.config import Settings

    monkeypatch.delenv("DEID_SECRET")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    seen = {}

    def start(self):
        seen["secret"] = self.secret
        self.tmp = str(tmp_path)

    monkeypatch.setattr(embedded.EmbeddedCluster, "start", start)
    monkeypatch.setattr(embedded.EmbeddedCluster, "stop", lambda self: None)
    monkeypatch.setattr(cli, "_submit_and_follow",
                        lambda args, settings, prepared, **kw: seen.update(
                            sub=prepared.sub, settings=settings) or 0)
    write_study_tree(tmp_path / "in", patients=1, images=1)
    assert cli.main(["--action", action, "--input", str(tmp_path / "in"),
                     "--outfolder", str(tmp_path / "out")]) == 0
    key = tmp_path / "xdg" / "deid-workers" / "secret.key"
    assert key.exists() == lasting
    sub, settings = seen["sub"], seen["settings"]
    assert sub.embedded and sub.key_created == lasting
    assert sub.key_location == (str(key) if lasting else None)
    # the private cluster's key: the producer signs with the one its workers get
    assert (seen["secret"] is None) == lasting
    assert lasting or settings.resolve_secret()[0] == seen["secret"]
    assert Settings.from_env().secret is None  # nothing set in the user's environment


def test_with_log_json_an_error_is_a_json_line_too(tmp_path, capsys):
    import json

    assert cli.main(["--action", "get", "--input", str(tmp_path / "none"), "--log-json",
                     "--broker", DEAD_BROKER]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and "input not found" in record["message"]
    assert cli.main(["--action", "get", "--input", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("deid-submit: error: ")  # and plain again after
