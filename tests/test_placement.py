"""Runs that share a machine (issue 14): each launch on its own GPU or share of the cores, the queue in the run
directories, cancel, runs started by hand counted. GPUs are faked at the one place that reads them
(GANCORE_FAKE_GPUS, read by placement.machine, inherited by the dispatcher); the runs really train, on the CPU."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from streamlit.testing.v1 import AppTest

import gancore
from gancore import launch, placement, runs, views
from gancore.errors import ConfigError, RunError
from conftest import ROOT, subprocess_env, tiny, wait_for

RING = dict(dataset="ring", steps=30, log_every=10, sample_every=30, ckpt_every=30, eval_every=0, device="auto")
LONG = dict(RING, steps=10 ** 6, log_every=50, sample_every=10 ** 6, ckpt_every=10 ** 6)


def status(path):
    return runs.read_status(path)


def gpus_of(path):
    return (status(path).get("placement") or {}).get("gpus")


def kill(pid):
    """SIGKILL a process that must be alive (a crash the test makes): a dead or missing pid fails the test."""
    os.kill(int(pid), signal.SIGKILL)


@pytest.fixture
def root(runs_root):
    """The runs root; afterwards the queue is emptied, the dispatcher and every run still training are killed."""
    yield runs_root
    if runs_root.is_dir():
        for w in placement.waiting_runs(runs_root):
            launch.cancel(w["path"])
    for proc in list(launch._children):
        if "dispatch" in proc.args:
            proc.kill()
            proc.wait()
    if runs_root.is_dir():
        for path in runs_root.iterdir():
            pid = runs.read_status(path).get("pid") if path.is_dir() else None
            if pid and pid != os.getpid() and runs.is_active(runs.read_status(path)):
                with contextlib.suppress(ProcessLookupError):  # teardown: it may end between the check and the kill
                    os.kill(int(pid), signal.SIGKILL)
    launch.reap()


def fake_gpus(monkeypatch, n):
    monkeypatch.setenv("GANCORE_FAKE_GPUS", str(n))


def running(path):
    return status(path).get("state") == "running" and status(path).get("step", 0) > 0


# ---------------------------------------------------------------- the decision, on its own
M2 = {"gpus": [], "cores": 2}
M4 = {"gpus": [0, 1, 2, 3], "cores": 16}


def ask(processes=1, gpu=False, **more):
    return {"request": {"processes": processes, "gpu": gpu, **more}}


def held(gpus=(), processes=1, sweep=None):
    return {"gpus": list(gpus), "processes": processes, "sweep": sweep}


def test_the_cores_are_divided_among_the_runs_training_at_once():
    [(alone, _)] = placement.place([ask()], [], M2)
    assert alone == {"gpus": [], "processes": 1, "threads": 2, "cores": 2}  # alone: every core
    [(beside, _)] = placement.place([ask()], [held()], M2)
    assert beside["threads"] == 1  # beside one run (started by hand or not): its half
    sweep = placement.place([ask(sweep="s", max_parallel=2) for _ in range(4)], [], M2)
    assert [p and p["threads"] for p, _ in sweep] == [1, 1, None, None]  # both started now share the cores
    assert [why for _, why in sweep] == [None, None, "sweep", "sweep"]
    [(four, _)] = placement.place([ask(processes=2)], [held(), held()], {"gpus": [], "cores": 16})
    assert four["threads"] == 4 and four["processes"] == 2  # 16 cores over 4 processes
    [(crowded, _)] = placement.place([ask()], [held() for _ in range(5)], M2)
    assert crowded["threads"] == 1  # never 0


@pytest.fixture
def torch_threads():
    import torch

    before = torch.get_num_threads()
    yield torch
    torch.set_num_threads(before)


def test_a_placed_cpu_run_takes_its_share_again_when_a_run_starts_or_ends_beside_it(root, monkeypatch, torch_threads):
    from gancore.config import TrainConfig
    from gancore.setup import load_and_resolve
    from gancore.trainer import Trainer

    monkeypatch.setattr(placement, "machine", lambda: {"gpus": [], "cores": 4})
    cfg, data = load_and_resolve(TrainConfig.from_dict(tiny(name="placed", runs_root=str(root))))
    (root / "placed").mkdir(parents=True)
    trainer = Trainer(root / "placed", cfg, data)
    rec = trainer.recorder
    rec.log_file = open(root / "placed" / "train.log", "a")  # as Trainer.run opens it
    trainer.clock0 = time.monotonic()  # and starts its clock (finish writes trained_s)
    rec.begin(trainer)  # running, with this process's pid
    runs.update_status(root / "placed", placement={"gpus": [], "processes": 1, "threads": 4, "cores": 4})
    torch_threads.set_num_threads(4)
    (root / "beside").mkdir()
    runs.update_status(root / "beside", state="running", pid=os.getpid(), host=runs.read_status(root / "placed")["host"])
    rec.share_cores(trainer.device)  # two processes train: half the cores each
    assert torch_threads.get_num_threads() == 2 and status(root / "placed")["threads"] == 2
    assert placement.describe(status(root / "placed")) == "2 of 4 cores"
    runs.update_status(root / "beside", state="done")
    rec.share_cores(trainer.device)  # alone again: every core
    assert torch_threads.get_num_threads() == 4 and status(root / "placed")["threads"] == 4
    assert status(root / "placed")["placement"]["threads"] == 4  # the launcher's decision, kept
    runs.update_status(root / "placed", placement=None)  # started by hand: no placement, never changed
    runs.update_status(root / "beside", state="running")
    rec.share_cores(trainer.device)
    assert torch_threads.get_num_threads() == 4
    rec.finish(trainer, "stopped", "test over")
    rec.log_file.close()
    assert "threads: now 2 of 4 cores" in (root / "placed" / "train.log").read_text()


def test_each_gpu_run_gets_gpus_no_live_run_holds_and_the_rest_wait_in_order():
    six = placement.place([ask(gpu=True) for _ in range(6)], [], M4)
    assert [p and p["gpus"] for p, _ in six] == [[0], [1], [2], [3], None, None]
    assert [why for _, why in six] == [None] * 4 + ["gpu", "gpu"]
    placed = placement.place([ask(gpu=True), ask(processes=2, gpu=True)], [held([1])], M4)
    assert [p["gpus"] for p, _ in placed] == [[0], [2, 3]]  # a torchrun group: GPUs of its own
    blocked = placement.place([ask(processes=3, gpu=True), ask(gpu=True)], [held([0, 1])], M4)
    assert [why for _, why in blocked] == ["gpu", "gpu"]  # the older 3-GPU run is not starved by a later one
    [(cpu_run, _)] = placement.place([ask(gpu=False)], [held([0, 1, 2, 3])], M4)
    assert cpu_run["gpus"] == []  # device cpu: no GPU needed


def test_machine_is_the_one_place_that_reads_the_devices(monkeypatch, tmp_path):
    import torch

    fake_gpus(monkeypatch, 4)
    assert placement.machine()["gpus"] == [0, 1, 2, 3] and placement.default_parallel() == 4
    assert launch.default_processes() == 4
    monkeypatch.setenv("GANCORE_FAKE_GPUS", "four")
    with pytest.raises(ConfigError, match="GANCORE_FAKE_GPUS"):
        placement.machine()
    monkeypatch.delenv("GANCORE_FAKE_GPUS")
    cores = len(os.sched_getaffinity(0))
    assert placement.machine()["cores"] == cores
    assert len(placement.machine()["gpus"]) == torch.cuda.device_count()  # this machine, whatever it holds

    # without a GPU driver's device files torch is not asked (loading it takes a second): no GPUs
    monkeypatch.setattr(placement, "GPU_DRIVER_FILES", (str(tmp_path / "no-nvidiactl"),))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1 / 0)
    placement._visible_gpus.cache_clear()
    assert placement.machine()["gpus"] == []
    # with them, torch's devices under their CUDA_VISIBLE_DEVICES ids (a machine with two GPUs, patched in)
    (tmp_path / "nvidiactl").touch()
    monkeypatch.setattr(placement, "GPU_DRIVER_FILES", (str(tmp_path / "no-nvidiactl"), str(tmp_path / "nvidiactl")))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for visible, gpus in ((None, [0, 1]), ("3,5", [3, 5]), ("GPU-1a2b,GPU-3c4d", ["GPU-1a2b", "GPU-3c4d"])):
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        placement._visible_gpus.cache_clear()
        try:
            assert placement.machine() == {"gpus": gpus, "cores": cores}
        finally:
            placement._visible_gpus.cache_clear()  # read again for this machine by the next caller

    # one run per GPU, else CPU_RUNS_PER_CORE per core
    assert placement.default_parallel({"gpus": [3, 5], "cores": 16}) == 2
    assert placement.default_parallel({"gpus": [], "cores": 8}) == 8 * placement.CPU_RUNS_PER_CORE


def test_a_launch_asking_for_more_gpus_than_the_machine_has_is_refused(root, monkeypatch):
    fake_gpus(monkeypatch, 2)
    with pytest.raises(ConfigError, match="processes: 4 processes need 4 GPUs; this machine has 2"):
        launch.launch(tiny(batch_size=16, device="auto"), root, processes=4)
    assert not root.exists() or not [p for p in root.iterdir() if not p.name.startswith(".")]


def test_describe_says_where_a_run_trains_or_what_it_waits_for():
    waiting = {"state": "queued", "pid": None, "waiting": "gpu", "request": {"processes": 1}}
    assert placement.describe(waiting) == "queued: waiting for a GPU"
    assert placement.describe(dict(waiting, request={"processes": 2})) == "queued: waiting for 2 GPUs"
    assert placement.describe(dict(waiting, waiting="sweep", request={"max_parallel": 2})) == \
        "queued: waiting for its turn in the sweep (2 at once)"
    assert placement.describe({"placement": {"gpus": [2], "processes": 1, "threads": 8, "cores": 16}}) == "GPU 2"
    assert placement.describe({"placement": {"gpus": [], "processes": 1, "threads": 1, "cores": 2}}) == \
        "1 of 2 cores"
    assert placement.describe({"state": "running", "pid": 1}) == ""  # started by hand: no placement


# ---------------------------------------------------------------- real runs, fake GPUs
def record_started_environments(monkeypatch) -> dict:
    """{pid: (CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS)} of each training process launch.spawn starts in this process,
    read from /proc the moment it has started (it takes seconds to import torch: it is alive then)."""
    started, spawn = {}, launch.spawn

    def recording_spawn(args, *more, **kwargs):
        proc = spawn(args, *more, **kwargs)
        if args[0] == "train":  # not the dispatcher
            started[proc.pid] = process_environment(proc.pid)
        return proc

    monkeypatch.setattr(launch, "spawn", recording_spawn)
    return started


def process_environment(pid) -> tuple[str, str]:
    """(CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS) of a live process: what it was started with."""
    raw = b""
    for _ in range(100):  # empty for a moment while exec sets the new program up
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
        if raw:
            break
        time.sleep(0.01)
    env = dict(kv.split(b"=", 1) for kv in raw.split(b"\0") if b"=" in kv)
    return env.get(b"CUDA_VISIBLE_DEVICES", b"").decode(), env.get(b"OMP_NUM_THREADS", b"").decode()


def test_a_sweep_of_six_on_four_gpus_runs_four_on_distinct_gpus_and_queues_two(root, monkeypatch):
    fake_gpus(monkeypatch, 4)
    started = record_started_environments(monkeypatch)
    paths = launch.launch_sweep(tiny(**RING, name="six"), {"seed": [0, 1, 2, 3, 4, 5]}, root)
    first, queued = paths[:4], paths[4:]
    assert sorted(gpus_of(p)[0] for p in first) == [0, 1, 2, 3]
    threads = max(1, placement.machine()["cores"] // 4)  # four processes share the cores
    for p in first:  # each process was started with its own GPU, and with its share of the cores
        assert status(p)["placement"]["threads"] == threads
        assert started[status(p)["pid"]] == (str(gpus_of(p)[0]), str(threads))
    assert len(started) == 4
    for p in queued:
        assert placement.is_waiting(status(p)) and status(p)["waiting"] == "gpu"
    rows = {r["run"]: r for r in views.run_rows(root)}
    assert rows[queued[0].name]["placement"] == "queued: waiting for a GPU" and rows[queued[0].name]["waiting"]
    assert rows[queued[0].name]["state"] == "queued"

    wait_for(lambda: all(status(p).get("state") == "done" for p in paths), 300, what="the sweep of six")
    assert all(gpus_of(p)[0] in (0, 1, 2, 3) for p in queued)
    first_end = min(status(p)["finished"] for p in first)
    assert all(status(p)["started"] >= first_end for p in queued)  # they started as the first ones finished
    by_gpu = {}
    for p in paths:
        by_gpu.setdefault(gpus_of(p)[0], []).append((status(p)["started"], status(p)["finished"]))
    for spans in by_gpu.values():  # never two runs on one GPU at once
        spans.sort()
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
    assert views.run_rows(root)[0]["placement"].startswith("GPU ")


def test_a_stopped_or_crashed_run_frees_its_gpu(root, monkeypatch):
    fake_gpus(monkeypatch, 2)
    a = launch.launch(tiny(**LONG, name="a"), root)
    b = launch.launch(tiny(**LONG, name="b"), root)
    c = launch.launch(tiny(**LONG, name="c"), root)
    assert {gpus_of(a)[0], gpus_of(b)[0]} == {0, 1} and status(c)["waiting"] == "gpu"
    wait_for(lambda: running(a), 120, what="a to train")
    launch.stop(a)  # checkpoints and stops: its GPU goes to the oldest waiting run
    wait_for(lambda: status(a).get("state") == "stopped" and gpus_of(c) == gpus_of(a), 120, what="c to get a's GPU")
    d = launch.launch(tiny(**LONG, name="d"), root)
    assert status(d)["waiting"] == "gpu"
    wait_for(lambda: running(b), 120, what="b to train")
    kill(status(b)["pid"])  # a crash: status still says running, its pid is dead
    wait_for(lambda: gpus_of(d) == gpus_of(b), 120, what="d to get the crashed b's GPU")
    launch.reap()
    assert views.state_of(status(b)) == "crashed"


def test_the_queue_survives_a_restart_and_a_queued_run_can_be_cancelled(root, monkeypatch):
    fake_gpus(monkeypatch, 1)
    a = launch.launch(tiny(**LONG, name="a"), root)
    b = launch.launch(tiny(**LONG, name="b"), root)
    c = launch.launch(tiny(**LONG, name="c"), root)
    assert gpus_of(a) == [0] and status(b)["waiting"] == status(c)["waiting"] == "gpu"
    dispatchers = [p for p in launch._children if "dispatch" in p.args]
    assert dispatchers  # started when b had to wait
    for proc in dispatchers:  # the dashboard and its dispatcher go away; the queue is on disk
        proc.kill()
        proc.wait()
    launch.cancel(c)  # cancelling a launch that never started removes its reservation, nothing else
    assert not c.exists() and status(a)["pid"] and gpus_of(a) == [0]
    with pytest.raises(RunError, match="a: not waiting in the queue"):
        launch.cancel(a)
    wait_for(lambda: running(a), 120, what="a to train")
    launch.stop(a)
    wait_for(lambda: status(a).get("state") == "stopped", 120, what="a to stop")
    assert placement.is_waiting(status(b))  # no dispatcher: nothing started it
    launch.kick(root)  # what a restarted dashboard does on its first refresh, from the run directories only
    wait_for(lambda: gpus_of(b) == [0] and runs.pid_alive(status(b).get("pid")), 60, what="b to start")


def test_a_queued_resume_waits_for_a_gpu_and_cancel_puts_the_run_back(root, monkeypatch):
    done = gancore.train(tiny(name="finished", runs_root=str(root)))
    config = runs.read_json(f"{done}/config.json")
    runs.write_json_atomic(f"{done}/config.json", dict(config, device="auto"))  # as if trained on a GPU machine
    fake_gpus(monkeypatch, 1)
    busy = launch.launch(tiny(**LONG, name="busy"), root)
    assert gpus_of(busy) == [0]
    assert launch.resume(done, steps=12) is None  # every GPU busy: it waits
    st = status(done)
    assert placement.is_waiting(st) and views.state_of(st) == "queued" and st["request"]["resume"]
    assert placement.describe(st) == "queued: waiting for a GPU"
    launch.cancel(done)
    st = status(done)
    assert st["state"] == "done" and not placement.is_waiting(st) and st["step"] == 6
    assert status(busy)["placement"]["gpus"] == [0]


def test_runs_started_by_hand_are_counted_but_never_moved(root, monkeypatch):
    # a CLI run on the CPU: a launch on the CPU beside it gets half the cores (on a GPU host too)
    hand = subprocess.Popen([sys.executable, "-m", "gancore", "train", *sum(
        ([f"--{k}", str(v)] for k, v in tiny(**dict(LONG, device="cpu"), name="by-hand", runs_root=str(root)).items()),
        [])], env=subprocess_env(root), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: running(root / "by-hand"), 120, what="the CLI run to train")
        placed = launch.launch(tiny(**dict(RING, device="cpu"), name="beside"), root)
        cores = placement.machine()["cores"]
        assert status(placed)["placement"] == {"gpus": [], "processes": 1, "threads": max(1, cores // 2),
                                               "cores": cores}
        before = status(root / "by-hand")
        assert "placement" not in before and before["pid"] == hand.pid  # counted, not moved
    finally:
        hand.kill()
        hand.wait()

    # a run by hand on GPU 1 (its process's CUDA_VISIBLE_DEVICES): launches get GPU 0, then wait
    fake_gpus(monkeypatch, 2)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                               env=dict(os.environ, CUDA_VISIBLE_DEVICES="1"))
    try:
        other = root / "other-by-hand"
        other.mkdir()
        runs.write_json_atomic(other / "config.json", {"device": "cuda"})
        runs.update_status(other, state="running", pid=sleeper.pid, step=1, steps=100)
        first = launch.launch(tiny(**LONG, name="first"), root)
        second = launch.launch(tiny(**LONG, name="second"), root)
        assert gpus_of(first) == [0] and status(second)["waiting"] == "gpu"
    finally:
        sleeper.kill()
        sleeper.wait()
    wait_for(lambda: gpus_of(second) == [1], 60, what="the hand run's GPU to go to the waiting run")


DISPATCH_ON_CUE = """
import json, subprocess, sys, time
from pathlib import Path
from gancore import launch

root, ready, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])


def slow_spawn(args, log_path, detach=True, processes=1, env=None):
    # a stand-in for the training process that only sleeps, started 0.3 s late (a busy machine): the time between
    # reading which GPUs are free and recording the started run, which the runs root's lock covers, grows wide
    time.sleep(0.3)
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=launch.child_env() | (env or {}),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


launch.spawn = slow_spawn
ready.touch()
while not go.exists():
    time.sleep(0.001)
started = launch.dispatch(root)
print(json.dumps({str(path): proc.pid for path, proc in started.items()}))
"""


def test_two_dispatchers_at_once_never_hand_one_gpu_out_twice(root, monkeypatch, tmp_path):
    """Two processes (two dashboards, a launch beside the dispatcher) dispatch the same queue at the same moment."""
    fake_gpus(monkeypatch, 2)  # inherited by both dispatchers
    paths = [launch.reserve(root, tiny(**LONG, name=f"q{i}"), request=launch.queue_request(tiny(**LONG)))
             for i in range(4)]
    script = tmp_path / "dispatch_on_cue.py"
    script.write_text(DISPATCH_ON_CUE)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), str(root), str(tmp_path / f"ready-{k}"), str(go)],
                              env=subprocess_env(root), stdout=subprocess.PIPE, text=True) for k in (0, 1)]
    starts = []  # (run dir, pid) of every process either dispatcher started
    try:
        wait_for(lambda: all((tmp_path / f"ready-{k}").exists() for k in (0, 1)), 60, what="both dispatchers")
        go.touch()  # both at once
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            starts += [(path, pid) for path, pid in json.loads(out).items()]
        environments = [process_environment(pid) for _, pid in starts]  # each a live process (sleeping 60 s)
        assert len(starts) == 2 and len({path for path, _ in starts}) == 2  # two GPUs: two runs, each started once
        assert sorted(gpus for gpus, _ in environments) == ["0", "1"]  # no GPU handed to two processes
        assert sorted(g for path, _ in starts for g in gpus_of(path)) == [0, 1]
        held = [g for a in placement.alive_runs(root, placement.machine()) for g in a["gpus"]]
        assert sorted(held) == [0, 1]  # what the run directories say is alive agrees
        assert sorted(status(p).get("waiting") or "started" for p in paths) == ["gpu", "gpu", "started", "started"]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for _, pid in starts:
            with contextlib.suppress(ProcessLookupError):  # cleanup: never hide the failure that brought us here
                os.kill(int(pid), signal.SIGKILL)


# ---------------------------------------------------------------- the dashboard
def test_runs_and_monitor_show_the_placement_and_the_queue_and_cancel_it(root, monkeypatch):
    fake_gpus(monkeypatch, 1)
    root.mkdir(parents=True)
    on_gpu = root / "on-gpu"  # trains (this process stands in for its trainer) on GPU 0
    on_gpu.mkdir()
    runs.write_json_atomic(on_gpu / "config.json", dict(tiny(**RING), name="on-gpu"))
    runs.update_status(on_gpu, state="running", pid=os.getpid(), step=10, steps=30,
                       placement={"gpus": [0], "processes": 1, "threads": 2, "cores": 2})
    waiting = launch.reserve(root, tiny(**RING, name="waiting"),
                             request=launch.queue_request(tiny(**RING)))
    launch.dispatch(root)
    assert status(waiting)["waiting"] == "gpu"

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.session_state["run"] = "waiting"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    where = dict(zip(table["run"], table["placement"]))
    assert where == {"waiting": "queued: waiting for a GPU", "on-gpu": "GPU 0"}
    assert any("queued: waiting for a GPU" in m.value for m in at.markdown)
    at.switch_page("pages/monitor.py").run()
    assert any("queued: waiting for a GPU" in i.value for i in at.info)
    at.session_state["run"] = at.session_state["monitor_pick"] = "on-gpu"
    at.switch_page("pages/monitor.py").run()
    assert not at.exception and any("GPU 0" in m.value for m in at.markdown)

    at.session_state["run"] = at.session_state["runs_pick"] = "waiting"
    at.switch_page("pages/runs.py").run()
    [cancel] = [b for b in at.button if b.label == "Cancel"]
    assert not cancel.disabled
    cancel.click().run()
    assert not waiting.exists() and on_gpu.exists()
    at.session_state["run"] = at.session_state["runs_pick"] = "on-gpu"
    at.run()
    assert [b for b in at.button if b.label == "Cancel"][0].disabled  # a running run is stopped, not cancelled


def test_launch_form_defaults_to_the_measured_sweep_parallelism(root):
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/launch.py").run()
    assert at.number_input(key="max_parallel").value == placement.default_parallel()
    from gancore import cli

    assert cli.build_parser().parse_args(["sweep", "x"]).max_parallel is None  # then default_parallel(), as here


def test_cli_sweep_queues_reserved_directories_and_waits_for_them(root):
    paths = [launch.reserve(root, tiny(**dict(RING, device="cpu"), name=f"cli-{s}", seed=s)) for s in (0, 1)]
    from gancore import cli

    assert cli.main(["sweep", *map(str, paths)]) == 0
    # started together when the machine's default allows two at once (2 cores or more): they share the cores
    at_once = min(2, placement.default_parallel())
    threads = max(1, placement.machine()["cores"] // at_once)
    assert all(status(p)["state"] == "done" and status(p)["placement"]["threads"] == threads for p in paths)
    assert json.loads((paths[0] / "launch.json").read_text())["seed"] == 0
