"""Run folders that cannot lie: a damaged gradient store or bookkeeping file is refused with one line naming the
file and the fix (damaged rows can be recaptured), one process writes a folder at a time (a dead holder's lock
is taken over), and a full disk is an error that a rerun after freeing space resumes from. The discover-level
cases are in tests/quanta/test_discover_inputs.py."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from quanta_interp import capture
from quanta_interp.capture import GradientStore, capture_gradients
from quanta_interp.capture.store import DamagedRowsError, open_store
from quanta_interp.executors import map_runs
from quanta_interp.io import DamagedFileError, FolderBusyError, RunLock, Sweep, load_npy, read_json

KW = dict(projection_dim=4, batch_tokens=24, show_progress=False)


@pytest.fixture(scope="module")
def tiny():
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = TransformerBridgeConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=23, n_ctx=16,
                                  act_fn="gelu", seed=0)
    return TransformerBridge.boot_native(cfg)


DOCS = [np.random.default_rng(0).integers(0, 23, 80)]
TARGETS = np.array([[0, p - 8, p] for p in range(8, 80, 4)])  # 18 windows of 8 tokens


def _store(tiny, folder):
    return capture_gradients(tiny, DOCS, TARGETS, folder, **KW)


def _one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_damaged_rows_are_refused_naming_the_file_and_recaptured_on_request(tiny, tmp_path, monkeypatch):
    fresh = np.asarray(_store(tiny, tmp_path / "fresh").gradients).copy()
    store = tmp_path / "s"
    _store(tiny, store)
    path = store / "gradients.npy"
    raw = bytearray(path.read_bytes())
    header = len(raw) - fresh.nbytes
    raw[header + 5 * 16: header + 7 * 16] = np.random.default_rng(1).bytes(32)  # rows 5 and 6 (4 float32 each)
    path.write_bytes(bytes(raw))
    with pytest.raises(DamagedRowsError) as e:
        GradientStore(store)
    assert _one_line(e).startswith(f"{path} is damaged (2 of 18 captured rows differ from the checksums recorded "
                                   "when they were written (rows 5, 6; in gradients.npy)); rerun with --recapture")
    assert e.value.rows.tolist() == [5, 6]
    with pytest.raises(DamagedRowsError):  # a resume never builds on damaged rows
        _store(tiny, store)
    rows = []
    real = capture.store.per_token_gradients
    monkeypatch.setattr(capture.store, "per_token_gradients", lambda m, c, x, *a: rows.append(len(x)) or real(m, c, x, *a))
    repaired = capture_gradients(tiny, DOCS, TARGETS, store, recapture=True, **KW)
    assert rows == [2]  # only the damaged rows were captured again
    np.testing.assert_allclose(np.asarray(GradientStore(store).gradients), fresh, atol=1e-6)
    assert repaired.ok.all()

    losses = np.load(store / "losses.npy")
    losses[3] = 0.0  # a loss changed: the row no longer passes the threshold it passed
    np.save(store / "losses.npy", losses)
    with pytest.raises(DamagedRowsError, match=r"1 of 18 captured rows .*rows 3; in losses.npy"):
        GradientStore(store)


def _truncate(p):
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


@pytest.mark.parametrize("name, damage, problem", [
    ("capture.json", lambda p: p.write_text("[1, 2]"), "holds a list, not a JSON object"),
    ("capture.json", lambda p: p.write_bytes(b"\x00garbage"), "not valid JSON"),
    ("capture.json", lambda p: p.write_text(""), "empty"),
    ("capture.json", lambda p: p.unlink(), "missing, while the store's arrays are there"),
    ("capture.json", lambda p: p.write_text('{"n": 18}'), "lacks the store's n, dim or layers"),
    ("status.npy", _truncate, "not a readable .npy array"),
    ("status.npy", lambda p: np.save(p, np.ones(9, np.int8)), "has shape (9,), not (18)"),
    ("status.npy", lambda p: p.write_bytes(os.urandom(300)), "not a readable .npy array"),
    ("status.npy", lambda p: np.save(p, np.full(18, 7, np.int8)), "holds values other than -1, 0 and 1"),
    ("status.npy", lambda p: np.save(p, np.array([{"a": 1}] * 18)),
     "not a readable .npy array: it holds pickled Python objects, not numbers"),
    ("status.npy", lambda p: p.unlink(), "missing, while capture.json is there"),
    ("losses.npy", lambda p: np.save(p, np.zeros(18)), "holds float64, not float32"),
    ("losses.npy", lambda p: p.write_bytes(b""), "empty"),
    ("targets.npy", lambda p: np.save(p, np.zeros((18, 2), np.int64)), "has shape (18, 2), not (18, 3)"),
    ("gradients.npy", _truncate, "not a readable .npy array"),
    ("checksums.npy", lambda p: np.save(p, np.zeros((5, 4), np.uint32)), "has shape (5, 4), not (18, 4)"),
])
def test_every_damaged_store_file_is_one_line_naming_it(tiny, tmp_path, name, damage, problem):
    store = tmp_path / "s"
    _store(tiny, store)
    damage(store / name)
    with pytest.raises(DamagedFileError) as e:
        open_store(store)  # what a resume opens: never a silent restart of a store with captured rows
    text = _one_line(e)
    assert text.startswith(f"{store / name} is damaged ({problem}")
    assert text.endswith("rerun into a new --out folder (or restore the file)")
    with pytest.raises(DamagedFileError):
        _store(tiny, store)  # and a capture into it is refused the same way


def test_a_store_whose_allocation_a_kill_interrupted_starts_afresh(tiny, tmp_path):
    store = tmp_path / "s"
    _store(tiny, store)
    np.save(store / "status.npy", np.zeros(18, np.int8))  # what _create leaves before its last write
    (store / "capture.json").unlink()
    assert open_store(store) is None
    assert _store(tiny, store).ok.all()


def test_a_store_written_before_checksums_is_sealed_on_first_open(tiny, tmp_path):
    store = tmp_path / "s"
    _store(tiny, store)
    (store / "checksums.npy").unlink()
    meta = read_json(store / "capture.json")
    with pytest.raises(DamagedFileError, match=r"checksums.npy is damaged \(missing"):  # a store that had them keeps them
        GradientStore(store)
    del meta["checksums"]
    (store / "capture.json").write_text(json.dumps(meta))
    assert GradientStore(store).checksums.shape == (18, 4) and (store / "checksums.npy").exists()


def test_row_checksums_are_the_crc32_of_each_rows_bytes_in_each_file():
    import zlib

    from quanta_interp.capture.store import row_checksums

    rng = np.random.default_rng(0)
    grads, losses = rng.standard_normal((5, 7), dtype=np.float32), rng.random(5).astype(np.float32)
    status, targets = np.array([1, -1, 1, 0, 1], np.int8), rng.integers(0, 99, (5, 3))
    sums = row_checksums(grads, status, losses, targets, np.array([4, 1]))
    assert sums.dtype == np.uint32 and sums.tolist() == [
        [zlib.crc32(grads[r].tobytes()), zlib.crc32(status[r].tobytes()), zlib.crc32(losses[r].tobytes()),
         zlib.crc32(targets[r].tobytes())] for r in (4, 1)]
    flipped = grads.copy()
    flipped.view(np.uint32)[4, 3] ^= 1  # one bit of one number
    assert row_checksums(flipped, status, losses, targets, np.array([4]))[0, 0] != sums[0, 0]


def _holder(folder, seconds):
    code = textwrap.dedent(f"""
        import sys, time
        from quanta_interp.io import RunLock
        RunLock({str(folder)!r}).acquire()
        print("locked", flush=True)
        time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_one_writer_per_folder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    proc = _holder(folder, 60)
    try:
        with pytest.raises(FolderBusyError) as e:
            RunLock(folder).acquire()
        assert _one_line(e).startswith(f"{folder} is being written by another process (pid {proc.pid}, started 20")
        assert str(e.value).endswith("wait for it to finish, or use another --out")
        with pytest.raises(FolderBusyError, match=f"pid {proc.pid}"):  # a sweep folder is locked the same way
            Sweep(folder, [{"i": 1}])
    finally:
        proc.kill()
        proc.wait()
    lock = RunLock(folder).acquire()  # SIGKILL released the lock; its file still names the dead holder
    assert lock.note.startswith(f"{folder} was left locked by a process that is no longer running (pid {proc.pid}")
    with RunLock(folder) as again:  # re-entrant within a process
        assert again.note is None
    lock.release()
    assert (folder / ".lock").read_text() == ""  # released cleanly: nobody is named
    assert RunLock(folder).acquire().note is None


def test_a_refused_run_leaves_no_lock_or_folder_behind(tmp_path):
    with pytest.raises(ValueError, match="bad input"):
        with RunLock(tmp_path / "new"):
            raise ValueError("bad input")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("x")
    with pytest.raises(ValueError):
        with RunLock(tmp_path / "old"):
            raise ValueError("bad input")
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["keep.txt"]


def test_free_space_is_checked_before_the_store_grows(tiny, tmp_path, monkeypatch):
    store = tmp_path / "s"
    capture_gradients(tiny, DOCS, TARGETS[:6], store, **KW)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(OSError, match=r"the gradient store \(18 rows × 4 numbers\) needs 1\.1 MB free in .*, only "
                                      r"0\.0 MB is: free space and rerun") as e:
        capture_gradients(tiny, DOCS, TARGETS, store, **KW)
    assert e.value.errno == 28
    assert GradientStore(store).ok.sum() == 6 and not (store / ".gradients.npy.tmp").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (root only; skipped elsewhere), remounted larger by calling the returned function."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    yield mnt, lambda: subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
    subprocess.run(["umount", str(mnt)], check=True)


def test_a_full_disk_is_an_error_not_sigbus_and_a_rerun_resumes(tiny, small_disk, monkeypatch):
    """Exact gradients of the tiny model are 8.6 kB a row: 18 rows fit in 3 MB, 600 do not. Refused by the
    free-space check, and without it by posix_fallocate: never the SIGBUS (exit 135) of a sparse memmap."""
    mnt, grow = small_disk
    docs = [np.random.default_rng(0).integers(0, 23, 2500)]
    targets = np.array([[0, p - 8, p] for p in range(8, 2408, 4)])  # 600 windows
    kw = {**KW, "projection_dim": 0}
    capture_gradients(tiny, docs, targets[:18], mnt / "s", **kw)
    code = textwrap.dedent(f"""
        import numpy as np, sys
        from quanta_interp.capture import capture_gradients, store
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge import TransformerBridge
        if sys.argv[1] == "no-check":
            store.check_free_space = lambda *a, **k: None
        cfg = TransformerBridgeConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=23, n_ctx=16,
                                      act_fn="gelu", seed=0)
        docs = [np.random.default_rng(0).integers(0, 23, 2500)]
        targets = np.array([[0, p - 8, p] for p in range(8, 2408, 4)])
        try:
            capture_gradients(TransformerBridge.boot_native(cfg), docs, targets, {str(mnt / 's')!r},
                              projection_dim=0, batch_tokens=24, show_progress=False)
        except OSError as e:
            print(e.strerror); sys.exit(2)
    """)
    for how, need in (("check", "6.3"), ("no-check", "5.2")):
        run = subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True)
        assert run.returncode == 2, run.stderr[-500:]  # not 135 (SIGBUS)
        assert run.stdout.startswith(f"the gradient store (600 rows × 2160 numbers) needs {need} MB free in {mnt}")
        assert "free space and rerun" in run.stdout
    assert GradientStore(mnt / "s").ok.sum() == 18 and not (mnt / "s" / ".gradients.npy.tmp").exists()
    grow()
    rows = []
    real = capture.store.per_token_gradients
    monkeypatch.setattr(capture.store, "per_token_gradients", lambda m, c, x, *a: rows.append(len(x)) or real(m, c, x, *a))
    done = capture_gradients(tiny, docs, targets, mnt / "s", **kw)
    assert done.ok.all() and len(done.targets) == 600 and sum(rows) == 582  # the 18 rows on disk were kept


def test_a_damaged_sweep_file_is_named_and_deleting_a_result_redoes_only_that_run(tmp_path):
    root = tmp_path / "sweep"
    configs = [{"x": x} for x in range(3)]
    assert [r["y"] for r in map_runs(_square, configs, root=root)] == [0, 1, 4]
    result = root / "runs" / Sweep.open(root).keys[1] / "result.json"
    result.write_text('{"y": ')
    with pytest.raises(DamagedFileError) as e:
        map_runs(_square, configs, root=root)
    assert _one_line(e) == (f"{result} is damaged (not valid JSON: Expecting value at character 6); delete it and "
                            "rerun the sweep: that run is redone")
    result.unlink()
    assert [r["y"] for r in map_runs(_square, configs, root=root)] == [0, 1, 4]
    assert json.loads(result.read_text()) == {"y": 1}
    manifest = root / "manifest.json"
    for text, problem in [('{"name": "sweep"}', "not a sweep manifest"), ("[]", "holds a list, not a JSON object"),
                          ("", "empty")]:
        manifest.write_text(text)
        with pytest.raises(DamagedFileError) as e:
            Sweep.open(root)
        assert _one_line(e).startswith(f"{manifest} is damaged ({problem}")
    config = result.parent / "config.json"
    config.write_text("[")
    with pytest.raises(DamagedFileError, match=f"{config} is damaged .*; delete the folder {result.parent} and rerun"):
        from quanta_interp.io import RunDir

        assert RunDir(result.parent).config


def _square(config, run_dir):
    return {"y": config["x"] ** 2}


def test_load_npy_names_the_file_and_what_it_should_hold(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(4))
    assert load_npy(path, dtype=np.int64, shape=(None,)).tolist() == [0, 1, 2, 3]
    with pytest.raises(DamagedFileError, match=r"a.npy is damaged \(has shape \(4,\), not \(any, 3\)\); fix it"):
        load_npy(path, shape=(None, 3), fix="fix it")
    with pytest.raises(FileNotFoundError):
        load_npy(tmp_path / "missing.npy")
