"""`python -m gancore train | sample | runs`: outputs, and one-line errors with exit code 2."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import gancore
from gancore.cli import main
from conftest import subprocess_env, tiny


def cli(capsys, *args):
    capsys.readouterr()  # drop what fixtures printed
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def flags(cfg: dict) -> list[str]:
    return [x for k, v in cfg.items() for x in (f"--{k}", str(v))]


@pytest.fixture
def cond_run(runs_root):
    return gancore.train(tiny(name="cond", conditioning="concat"))


def test_train_prints_run_dir_last_and_accepts_dashed_flags(runs_root, capsys):
    code, out, err = cli(capsys, "train", *flags(tiny(name="t1")), "--lr-g", "1e-4")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == str(runs_root / "t1")
    assert gancore.load_run(runs_root / "t1").config["lr_g"] == 1e-4


def test_train_from_config_file_with_flag_override(runs_root, tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(tiny(name="from-file", loss="lsgan")))
    code, out, err = cli(capsys, "train", "--config", path, "--steps", "4")
    assert code == 0, err
    run = gancore.load_run(out.strip().splitlines()[-1])
    assert run.config["loss"] == "lsgan" and run.config["steps"] == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--loss", "wassersteinish"], "--loss: unknown value 'wassersteinish'"),
        (["--lr_g", "-1"], "--lr_g: must be a positive number"),
        (["--lr_d", "abc"], "--lr_d: expected float"),
        (["--steps", "2.5"], "--steps: expected int"),
        (["--batch_size", "5000"], "--batch_size: 5000 is larger than the dataset (1797 samples)"),
        (["--dataset", "ring", "--model", "dcgan"], "--model: dcgan needs images"),
        (["--dataset", "folder"], "--data_path: dataset 'folder' needs a path"),
        (["--dataset", "imagenet"], "--dataset: unknown value 'imagenet'"),
        (["--name", "../escape"], "--name: '../escape' may only hold"),
        (["--precision", "fp16", "--device", "cpu"], "--precision: fp16 autocast needs a CUDA device"),
        (["--image_size", "18"], "--image_size: dcgan needs an even size"),
        (["--bogus", "1"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_train_input_is_one_line_exit_2(runs_root, capsys, args, message):
    code, out, err = cli(capsys, "train", *flags(tiny()), *args)
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert not runs_root.exists() or not any(runs_root.iterdir())  # nothing was created


def test_conditioning_on_unlabelled_data_is_refused(runs_root, tmp_path, capsys):
    np.savez(tmp_path / "x.npz", x=np.zeros((20, 8, 8), np.uint8))
    code, _, err = cli(capsys, "train", *flags(tiny(dataset="npz", data_path=tmp_path / "x.npz", conditioning="concat")))
    assert code == 2 and "--conditioning: concat needs class labels" in err


def test_missing_data_file_is_named(runs_root, tmp_path, capsys):
    code, _, err = cli(capsys, "train", *flags(tiny(dataset="npz", data_path=tmp_path / "nope.npz")))
    assert code == 2 and "nope.npz" in err and err.count("\n") == 1


def test_config_file_errors(runs_root, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"lossy": "x"}')
    code, _, err = cli(capsys, "train", "--config", bad)
    assert code == 2 and "unknown field 'lossy'" in err
    bad.write_text("{not json")
    code, _, err = cli(capsys, "train", "--config", bad)
    assert code == 2 and "is not valid JSON" in err
    code, _, err = cli(capsys, "train", "--config", tmp_path / "missing.json")
    assert code == 2 and "missing.json" in err


def test_real_process_exit_code_is_2(runs_root):
    out = subprocess.run([sys.executable, "-m", "gancore", "train", "--loss", "nope"], env=subprocess_env(runs_root),
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "gancore: error: --loss: unknown value 'nope'; choose one of minimax, nonsaturating, lsgan, wgan, wgan-gp, hinge"


def test_sample_npz_conditional_label(cond_run, tmp_path, capsys):
    out = tmp_path / "s.npz"
    code, _, err = cli(capsys, "sample", cond_run, "--n", 12, "--label", 3, "--seed", 1, "--out", out)
    assert code == 0, err
    z = np.load(out)
    assert z["images"].shape == (12, 16, 16, 1) and z["images"].dtype == np.uint8
    assert z["labels"].dtype == np.int64 and (z["labels"] == 3).all()
    again = tmp_path / "again.npz"
    cli(capsys, "sample", cond_run, "--n", 12, "--label", 3, "--seed", 1, "--out", again)
    assert (np.load(again)["images"] == z["images"]).all()  # same seed, same samples


def test_sample_png_has_a_row_per_class(cond_run, tmp_path, capsys):
    out = tmp_path / "grid.png"
    code, _, err = cli(capsys, "sample", cond_run, "--n", 30, "--truncation", 0.5, "--out", out)
    assert code == 0, err
    img = Image.open(out)
    assert img.height > 3 * img.width  # 10 rows (classes) of 3


def test_sample_points_and_step(runs_root, tmp_path, capsys):
    run = gancore.train(tiny(dataset="ring", name="ring"))  # checkpoints at steps 3 and 6
    points = {}
    for step in (3, 6, None):  # None: the default, the newest checkpoint
        out = tmp_path / f"p{step}.npz"
        code, _, err = cli(capsys, "sample", run, "--n", 50, "--seed", 0, *(["--step", step] if step else []),
                           "--out", out)
        assert code == 0, err
        z = np.load(out)
        assert z["points"].shape == (50, 2) and z["points"].dtype == np.float32 and (z["labels"] == -1).all()
        points[step] = z["points"]
    assert np.array_equal(points[6], points[None])  # same noise, same G
    assert not np.allclose(points[3], points[6])  # same noise, the G of step 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--label", "2"], "--label: this run is unconditional"),
        (["--step", "5"], "--step: "),
        (["--n", "0"], "--n: must be > 0"),
        (["--truncation", "-1"], "--truncation: must be > 0"),
    ],
)
def test_bad_sample_input(runs_root, tmp_path, capsys, args, message):
    run = gancore.train(tiny(name="u"))
    base = ["--n", "4"] if "--n" not in args else []
    code, _, err = cli(capsys, "sample", run, *base, *args, "--out", tmp_path / "x.npz")
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.npz").exists()


def test_sample_label_out_of_range_and_bad_run_dir(cond_run, tmp_path, capsys):
    code, _, err = cli(capsys, "sample", cond_run, "--n", 4, "--label", 10, "--out", tmp_path / "x.npz")
    assert code == 2 and "--label: classes are 0..9" in err
    code, _, err = cli(capsys, "sample", tmp_path, "--n", 4, "--out", tmp_path / "x.npz")
    assert code == 2 and "not a gancore run directory" in err
    code, _, err = cli(capsys, "sample", cond_run, "--n", 4, "--out", tmp_path / "x.jpg")
    assert code == 2 and "--out:" in err


def test_runs_table(runs_root, capsys):
    gancore.train(tiny(name="first", loss="lsgan"))
    gancore.train(tiny(name="second", conditioning="concat"))
    code, out, _ = cli(capsys, "runs")
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].split() == ["run", "status", "dataset", "model", "loss", "conditioning", "steps"]
    assert lines[1].split() == ["first", "done", "digits", "dcgan", "lsgan", "none", "6/6"]
    assert lines[2].split() == ["second", "done", "digits", "dcgan", "nonsaturating", "concat", "6/6"]


def test_load_run_api(cond_run):
    run = gancore.load_run(cond_run)
    assert run.config["conditioning"] == "concat" and run.status["state"] == "done"
    assert list(run.metrics.columns[:3]) == ["step", "images_seen", "time"]
    images, labels = run.sample(20, labels=[0] * 10 + [9] * 10, seed=0)
    assert images.shape == (20, 16, 16, 1) and list(labels) == [0] * 10 + [9] * 10


def test_train_preset_with_flags_on_top(runs_root, capsys):
    code, out, err = cli(capsys, "train", "--preset", "pacgan-ring", "--steps", "4", "--log_every", "2",
                         "--ckpt_every", "2", "--sample_every", "2", "--eval_every", "2", "--name", "p")
    assert code == 0, err
    run = gancore.load_run(out.strip().splitlines()[-1])
    assert run.config["pack"] == 2 and run.config["dataset"] == "ring" and run.config["steps"] == 4
    assert run.config["preset"] == "pacgan-ring"
